"""Crash experiments: cut a writer at a random moment, recover its log, and count the
acknowledged entries that are gone.

One cut, through the power-cut harness (``fsyncstudy.cuts``, shared with the real databases):

1. fork a writer that runs the strategy through the engine (``fsyncstudy.engine``) on a
   fresh log and reports every acknowledgement to us over a pipe the moment it makes it;
2. at a random moment (seeded, recorded) cut it:
   - ``process``: SIGKILL the writer; the page cache survives, so nothing acknowledged
     should be lost by any strategy;
   - ``power``: cut the power of the lab's power-cut filesystem (every unsynced byte is
     dropped and the mount freezes), then SIGKILL the writer;
3. read the surviving log with ``fsyncstudy.log.scan`` (a torn tail is detected and
   dropped) and compare it with the acknowledgements.

What is acknowledged when is the strategy table's definition; the report happens at
exactly that point (``always``/``group``: after the covering sync returns; ``batch``/
``none``: after ``write()`` returns).  A cut costs a fork, not a new interpreter, and a
power cut costs a reset of the mount, not a new mount.

A cut may run a write path (docs/strategies.md#write-paths; ``CutPath``), each with the ack point it
really has: a write that syncs itself (``rwf_dsync``, ``direct_dsync``) acknowledges when it returns
(``always``) or when the group's commit write returns (``group``); ``buffered`` writes acknowledge when the
entry is appended to the user-space buffer, before any write() (so a process kill can lose it);
``bytes_per_sync`` changes nothing in the ack point (sync_file_range syncs nothing); a segmented log is
read back segment after segment (``writepaths.scan_segments``).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from . import dataset, engine, runner, writepaths
from .cuts import ACK, CutError, PowerCut, ProcessCut, durable_lost, moment_ms, now_ns, ready, run_cut
from .log import Framer, remove_stale, scan
from .strategies import check_sync_method, parse
from .places import pick_directory
from .targets import describe
from .trial import PathOptions, check_write_path, engine_options, open_log, path_label, payload_for, write_function

#: Cut moments are drawn uniformly from this window after the writer is ready (ms).
CUT_WINDOW_MS = (30.0, 400.0)


#: The payload of a crash writer's entries (bytes).
PAYLOAD_BYTES = 128


#: The write path a cut's writer runs (``trial.PathOptions``; the default: the plain path every crash
#: dataset before the paths ran).
CutPath = PathOptions


PLAIN = CutPath()


def check_cell(strategy: str, path: CutPath, writers: int = 1) -> None:
    """Refuse, in one line, a strategy and path a crash writer cannot run."""
    st = parse(strategy)
    check_sync_method(path.sync_method)
    check_write_path(st, path.sync_method, writers, path.write_mode, path.bytes_per_sync, path.segment_bytes,
                     path.recycle)
    if path.sync_method.startswith("open_") and st.kind != "always":
        raise ValueError(f"{path.sync_method} makes every write synchronous, so it only goes with always, not {st.name}")
    if writers > 1 and path.sync_method in ("rwf_dsync", "direct_dsync", "open_dsync", "open_sync"):
        raise ValueError(f"{path.sync_method} with several crash writers: their acknowledgements are not in log "
                         "order; cut one writer")
    rec = Framer(payload_for(PAYLOAD_BYTES)).record_bytes
    if path.segment_bytes and path.segment_bytes < max(writepaths.MIN_SEGMENT_BYTES, rec):
        raise ValueError(f"segment_bytes must be at least {max(writepaths.MIN_SEGMENT_BYTES, rec):,}, "
                         f"got {path.segment_bytes:,}")


@dataclass(frozen=True)
class CrashProfile:
    name: str
    power: tuple[tuple[str, ...], int]    # strategies, cuts each
    process: tuple[tuple[str, ...], int]
    #: Cuts of either kind for a strategy that acknowledges before its entries are durable (None: as
    #: many as the others).  One that promises no loss needs many cuts for its zero-loss upper bound
    #: (3.0% of cuts from 100 that lose none); one that may lose is measured for its loss window against
    #: its nominal one, which fewer cuts show.
    lossy_cuts: int | None = None
    #: The write paths' cells, cut beside the plain ones: (kind, strategy, ``CutPath``, cuts).
    paths: tuple[tuple[str, str, CutPath, int], ...] = ()

    def cuts_for(self, kind: str, strategy: str) -> int:
        n = getattr(self, kind)[1]
        return n if self.lossy_cuts is None or parse(strategy).acks_durable else min(n, self.lossy_cuts)


@dataclass
class CutResult:
    """One cut: what was acknowledged, what survived, and what was lost."""

    kind: str
    strategy: str
    cut: int
    seed: int
    cut_after_ms: float              # when the cut came, after the writer was ready
    acked: int                       # entries acknowledged before the cut
    recovered: int                   # valid entries read back (consecutive from seq 0)
    lost_acked: int                  # acknowledged but not recovered
    oldest_lost_age_ms: float | None  # how long before the cut the first lost entry was acknowledged
    newest_ack_age_ms: float | None   # how long before the cut the last acknowledgement came
    unacked_recovered: int           # recovered but never acknowledged (harmless: in flight at the cut)
    log_end: str                     # how the reader stopped: clean, zeros, torn, corrupt, sequence
    torn: bool
    corrupt: bool                    # a bad record inside the log, or out-of-sequence data
    log_detail: str
    nominal_loss_window_ms: float | None
    target: str
    error: str = ""
    # the write path (``CutPath``); a dataset written before these columns ran the plain path (its values)
    sync_method: str = "fdatasync"
    write_mode: str = "per-entry"
    bytes_per_sync: int = 0
    segment_bytes: int = 0
    recycle: int = 0


class _Reporter:
    """Wraps the engine's write and sync so that each acknowledgement is reported as it is made."""

    def __init__(self, fd: int):
        self.fd, self.written = fd, 0

    def ack(self, n: int) -> None:
        os.write(self.fd, ACK.pack(n, now_ns()))

    def counting(self, write, ack: bool):
        """``write`` (None: os.write), counting the entries written; with ``ack``, each acknowledged as its
        write returns."""
        inner = write or os.write

        def counted(fd: int, rec) -> int:
            n = inner(fd, rec)
            self.written += 1
            if ack:
                os.write(self.fd, ACK.pack(self.written, now_ns()))
            return n
        return counted

    def covering(self, sync):
        def synced(fd: int) -> None:
            hi = self.written  # every entry whose write() returned before the sync began
            sync(fd)
            os.write(self.fd, ACK.pack(hi, now_ns()))
        return synced


def _writer(ack_fd: int, directory: str, name: str, strategy: str, path: CutPath, writers: int) -> None:
    """The forked writer (``cuts.run_cut``'s child): runs until it is killed, or its target fails."""
    st = parse(strategy)
    framer = Framer(payload_for(PAYLOAD_BYTES))
    wp = path.write_path()
    log = open_log(directory, path.sync_method, "append", 0, False, None, wp, name=name)
    rep = _Reporter(ack_fd)
    sync = log.sync_function(own_writes=True)     # None: every write syncs itself
    write = write_function(log, path.sync_method, framer, wp)
    opts = engine_options(st, path.sync_method, writers, wp)
    ack = None
    if opts["write_mode"] == "buffered" or opts["deferred"]:
        ack = rep.ack     # the engine reports: as an entry is appended, or as the group's commit write returns
    elif st.acks_durable and sync is not None:
        sync, write = rep.covering(sync), rep.counting(write, ack=False)   # after the covering sync
    else:
        write = rep.counting(write, ack=True)   # when write() returns: batch, none, or a write that syncs itself
    first = framer.frame_range(0, engine.CHUNK)
    stop = engine.Stop(0, 10**15)
    if st.kind == "none":
        # drawn on first use, tens of ms on a busy machine: before READY, so that the cut's moment counts
        # from the first write, not from inside the writer's preparation (cuts that acknowledged nothing)
        engine._sample_gaps()
    ready(ack_fd)
    engine.run(st, log.fd, sync, framer, first, stop, writers=writers, write=write, ack=ack, **opts)


def cut_moment_ms(seed: int, kind: str, strategy: str, k: int, path: CutPath = PLAIN) -> float:
    # the plain path's moments are the ones every earlier dataset drew
    return moment_ms(seed, CUT_WINDOW_MS, kind, strategy, *([path.label] if path.label else []), k)


def _log_name(k: int, path: CutPath) -> str:
    """The writer's log file, or its segments' stem (``writepaths.segment_files`` finds them)."""
    return f".fsyncstudy-{os.getpid()}-crash-{k}" + ("" if path.segment_bytes else ".log")


def _remove_log(directories, name: str, path: CutPath) -> None:
    for d in directories:
        files = [p for _, p in writepaths.segment_files(d, name)] if path.segment_bytes else [Path(d) / name]
        for p in files:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def _recover(cutter, name: str, path: CutPath):
    """What survived: (``LogScan`` of the log, or of its segments' chain; entries recovered, counted from
    seq 0 (entries a recycled segment retired count as kept); whether anything inside is bad)."""
    where = cutter.recover_path(name)
    if path.segment_bytes:
        images = [(k, Path(p).read_bytes()) for k, p in writepaths.segment_files(where.parent, name)]
        if not images:
            raise FileNotFoundError(where)
        found = writepaths.scan_segments(images)
        recovered = found.last_seq + 1 if found.entries else 0
        return found, recovered, found.end in ("corrupt", "sequence")
    found = scan(where.read_bytes())
    return found, found.entries, found.end in ("corrupt", "sequence") or found.first_seq not in (None, 0)


def one_cut(cutter, strategy: str, k: int, seed: int, sync_method: str = "fdatasync", writers: int = 1,
            path: CutPath | None = None) -> CutResult:
    """Run one writer, cut it at its seeded moment (``cutter``: a ``cuts.ProcessCut`` or
    ``cuts.PowerCut``), recover its log, compare.  ``path``: the write path (default: the plain one
    with ``sync_method``)."""
    st = parse(strategy)
    path = path or CutPath(sync_method=sync_method)
    check_cell(strategy, path, writers)
    after_ms = cut_moment_ms(seed, cutter.kind, strategy, k, path)
    name = _log_name(k, path)
    try:
        seen = run_cut(lambda fd: _writer(fd, str(cutter.directory), name, strategy, path, writers),
                       after_ms, cutter)
        # a process cut leaves the writer's own failure as its own: nothing stopped it but itself
        error = f"the writer failed before the cut: {seen.failure}" if seen.failure and \
            cutter.kind == "process" else ""
        try:
            found, recovered, corrupt = _recover(cutter, name, path)
        except FileNotFoundError:
            # never "recovered 0": the log was there when the writer said it was ready
            raise CutError(f"the writer's log {cutter.recover_path(name)} vanished before it could be read "
                           "(removed by another process?)") from None
    finally:
        cutter.restore()
        _remove_log({Path(cutter.directory), cutter.recover_path(name).parent}, name, path)
    return CutResult(kind=cutter.kind, strategy=strategy, cut=k, seed=seed, cut_after_ms=after_ms,
                     recovered=recovered, **seen.tally(recovered), unacked_recovered=max(0, recovered - seen.acked),
                     log_end=found.end, torn=found.end == "torn", corrupt=corrupt,
                     log_detail=found.detail, nominal_loss_window_ms=st.nominal_loss_window_ms,
                     target=cutter.label, error=error, **path._asdict())


# -- an experiment --------------------------------------------------------------------------------

#: The dataset kind, its table and the table's columns.
KIND, TABLE = "crash", "cuts.csv"
SCHEMA = dataset.columns_of(CutResult)
COLUMNS = [name for name, _ in SCHEMA]


def _cells(profile: CrashProfile, kind: str, strategies: dict[str, tuple[str, ...]] | None, cuts: int | None,
           path: CutPath) -> list[tuple[str, CutPath, int]]:
    """(strategy, path, cuts) of one kind: the chosen strategies on ``path``, or the profile's plain cells
    and then its write-path cells."""
    names = strategies.get(kind, getattr(profile, kind)[0]) if strategies else getattr(profile, kind)[0]
    out = [(s, path, cuts or profile.cuts_for(kind, s)) for s in names]
    if not strategies and path == PLAIN:
        out += [(s, CutPath(*p), cuts or n) for k, s, p, n in profile.paths if k == kind]
    return out


def plan(profile: CrashProfile, kinds: tuple[str, ...], strategies: dict[str, tuple[str, ...]] | None = None,
         cuts: int | None = None, path: CutPath = PLAIN) -> list[tuple[str, str, CutPath, int]]:
    """(kind, strategy, path, cut index) in an interleaved order: cut k of every cell before cut k + 1."""
    out = []
    for kind in kinds:
        cells = _cells(profile, kind, strategies, cuts, path)
        out += [(kind, s, p, k) for k in range(max((n for _, _, n in cells), default=0)) for s, p, n in cells if k < n]
    return out


def _ok(row: dict) -> bool:
    return row["error"] == ""


def _key(row: dict) -> tuple[str, str, CutPath, int]:
    return (row["kind"], row["strategy"], CutPath.of_row(row), int(row["cut"]))


def _plan_meta(profile: CrashProfile, kinds, seed: int, cuts: int | None, todo: list) -> dict:
    """What the dataset's plan records: as before the write paths for the plain cells, and ``path_cuts``
    ({kind: {strategy: {path label: cuts}}}) when there are others."""
    plain = [(k, s) for k, s, p, _ in todo if p == PLAIN]
    out = {"profile": profile.name, "kinds": list(kinds), "seed": seed, "cut_window_ms": list(CUT_WINDOW_MS),
           "strategies": {k: sorted({s for kk, s in plain if kk == k}) for k in kinds},
           "cuts_per_strategy": {k: cuts or getattr(profile, k)[1] for k in kinds}}
    if cuts is None and profile.lossy_cuts is not None:
        out["cuts_by_strategy"] = {k: {s: profile.cuts_for(k, s) for s in out["strategies"][k]} for k in kinds}
    counts: dict = {}
    for k, s, p, _ in todo:
        if p != PLAIN:
            cell = counts.setdefault(k, {}).setdefault(s, {})
            cell[p.label] = cell.get(p.label, 0) + 1
    if counts:
        out["path_cuts"] = counts
    return out


def _failed(kind: str, strategy: str, path: CutPath, k: int, seed: int, target: str, why: str) -> CutResult:
    st = parse(strategy)
    return CutResult(kind=kind, strategy=strategy, cut=k, seed=seed,
                     cut_after_ms=cut_moment_ms(seed, kind, strategy, k, path), acked=0, recovered=0,
                     lost_acked=0, oldest_lost_age_ms=None, newest_ack_age_ms=None, unacked_recovered=0,
                     log_end="", torn=False, corrupt=False, log_detail="",
                     nominal_loss_window_ms=st.nominal_loss_window_ms, target=target, error=why, **path._asdict())


def run_crash(out: str | os.PathLike, profile: CrashProfile, kinds=("power", "process"),
              strategies: list[str] | None = None, cuts: int | None = None, seed: int = 0,
              directory: str | os.PathLike | None = None, power_target: str = "lab:powercut", lab_dir=None,
              progress: bool = True, note: dict | None = None, path: CutPath | None = None) -> runner.Summary:
    """Run (or resume) a crash experiment into the dataset ``out`` (its table: ``cuts.csv``).

    ``profile`` is a ``CrashProfile`` (the named ones: ``fsyncstudy.profiles.PROFILES[name].crash``).
    Without ``strategies`` and ``path``, the profile's cells, its write paths' included; with
    ``strategies``, those on ``path`` (default: the plain one); a ``path`` needs ``strategies``.
    A cut recorded with an error is cut again on resume; its row stays as history.
    """
    if not isinstance(profile, CrashProfile):
        raise TypeError(f"profile must be a crash.CrashProfile, got {profile!r}")
    if cuts is not None and (not isinstance(cuts, int) or isinstance(cuts, bool) or not 1 <= cuts <= 100_000):
        raise ValueError(f"cuts must be an integer in 1..100,000 (or left out for the profile's), got {cuts!r}")
    unknown = [k for k in kinds if k not in ("power", "process")]
    if unknown or not kinds:
        raise ValueError(f"kinds must be power and/or process, got {list(kinds)!r}")
    path = CutPath(*path) if path is not None else PLAIN
    if path != PLAIN and not strategies:
        raise ValueError(f"a write path ({path.label}) needs the strategies to cut on it: give --strategy")
    for s in strategies or []:
        parse(s)
    kinds = tuple(kinds)
    chosen = {k: tuple(strategies) for k in kinds} if strategies else None
    todo_all = plan(profile, kinds, chosen, cuts, path)
    for cell in dict.fromkeys((s, p) for _, s, p, _ in todo_all):
        check_cell(*cell)      # before any lab is touched: a path that cannot run is one line
    cutters = {}
    if "process" in kinds:
        d = pick_directory(directory)
        cutters["process"] = ProcessCut(d)
    if "power" in kinds:
        cutters["power"] = PowerCut(power_target, lab_dir)
    notes = {"targets": {k: c.label for k, c in cutters.items()}, "skipped": note or {}}
    ds = dataset.open_or_resume(out, KIND, _plan_meta(profile, kinds, seed, cuts, todo_all), SCHEMA, TABLE,
                                notes=notes, targets={c.label: describe(c.directory).as_dict() for c in cutters.values()})
    for c in cutters.values():
        remove_stale(c.directory)
    done = ds.done(_key, _ok)
    todo = [p for p in todo_all if p not in done]
    summary = runner.Summary(out=ds.path, planned=len(todo_all), skipped=len(done))

    def run_one(item, _) -> dict:
        kind, strategy, p, k = item
        try:
            res = one_cut(cutters[kind], strategy, k, seed, path=p)
        except (OSError, RuntimeError) as e:
            res = _failed(kind, strategy, p, k, seed, cutters[kind].label, f"{type(e).__name__}: {e}")
        return asdict(res)

    def lost(item, row, summary) -> None:
        kind, strategy, p, k = item
        if durable_lost(row, parse(strategy).acks_durable):
            on = f" ({p.label})" if p.label else ""
            summary.lost_by_durable.append(f"{kind} cut {k} of {strategy}{on}: {row['lost_acked']} acknowledged "
                                           f"entries lost (acked {row['acked']}, recovered {row['recovered']})")
    return runner.fill(ds, summary, todo, run_one, label="crash cuts", unit="cut", progress=progress, ok=_ok,
                       postfix=lambda item: f"{item[0]} {item[1]}" + (f" {item[2].label}" if item[2].label else ""),
                       after=lost)


def load(path: str | os.PathLike):
    """A crash dataset as (cuts DataFrame, meta dict); every row, errors included (``error`` says so),
    with each strategy's kind (``skind``) and interval beside it, and its write path's name (``path``)."""
    df, meta = dataset.load(path, KIND, SCHEMA)
    df["interval_ms"] = [parse(s).interval_ms for s in df["strategy"]]
    df["skind"] = [parse(s).kind for s in df["strategy"]]
    # the write path's one name ("" for the plain path, which every dataset before the paths ran)
    df["path"] = [path_label(*p) for p in zip(df["sync_method"], df["write_mode"], df["bytes_per_sync"].astype(int),
                                                df["segment_bytes"].astype(int), df["recycle"].astype(int))]
    return df, meta
