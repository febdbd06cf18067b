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
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from . import dataset, engine, runner
from .cuts import ACK, CutError, PowerCut, ProcessCut, durable_lost, moment_ms, now_ns, ready, run_cut
from .log import Framer, LogFile, remove_stale, scan
from .strategies import parse
from .places import pick_directory
from .targets import describe
from .trial import payload_for

#: Cut moments are drawn uniformly from this window after the writer is ready (ms).
CUT_WINDOW_MS = (30.0, 400.0)


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


class _Reporter:
    """Wraps the engine's write and sync so that each acknowledgement is reported as it is made."""

    def __init__(self, fd: int, ack_on_write: bool):
        self.fd, self.ack_on_write, self.written = fd, ack_on_write, 0

    def write(self, fd: int, rec) -> int:
        n = os.write(fd, rec)
        self.written += 1
        if self.ack_on_write:
            os.write(self.fd, ACK.pack(self.written, now_ns()))
        return n

    def covering(self, sync):
        def synced(fd: int) -> None:
            hi = self.written  # every entry whose write() returned before the sync began
            sync(fd)
            os.write(self.fd, ACK.pack(hi, now_ns()))
        return synced


def _writer(ack_fd: int, directory: str, name: str, strategy: str, sync_method: str, writers: int) -> None:
    """The forked writer (``cuts.run_cut``'s child): runs until it is killed, or its target fails."""
    st = parse(strategy)
    framer = Framer(payload_for(128))
    log = LogFile(directory, sync_method, "append", 0, name=name)
    # the ack point is the strategy table's: after a covering sync, or when write() returns
    rep = _Reporter(ack_fd, ack_on_write=not st.acks_durable)
    raw_sync = log.sync_function()
    sync = rep.covering(raw_sync) if st.acks_durable else raw_sync
    first = framer.frame_range(0, engine.CHUNK)
    stop = engine.Stop(0, 10**15)
    ready(ack_fd)
    engine.run(st, log.fd, sync, framer, first, stop, writers=writers, write=rep.write)


def cut_moment_ms(seed: int, kind: str, strategy: str, k: int) -> float:
    return moment_ms(seed, CUT_WINDOW_MS, kind, strategy, k)


def one_cut(cutter, strategy: str, k: int, seed: int, sync_method: str = "fdatasync", writers: int = 1) -> CutResult:
    """Run one writer, cut it at its seeded moment (``cutter``: a ``cuts.ProcessCut`` or
    ``cuts.PowerCut``), recover its log, compare."""
    st = parse(strategy)
    after_ms = cut_moment_ms(seed, cutter.kind, strategy, k)
    name = f".fsyncstudy-{os.getpid()}-crash-{k}.log"
    try:
        seen = run_cut(lambda fd: _writer(fd, str(cutter.directory), name, strategy, sync_method, writers),
                            after_ms, cutter)
        # a process cut leaves the writer's own failure as its own: nothing stopped it but itself
        error = f"the writer failed before the cut: {seen.failure}" if seen.failure and \
            cutter.kind == "process" else ""
        try:
            data = cutter.recover_path(name).read_bytes()
        except FileNotFoundError:
            # never "recovered 0": the log was there when the writer said it was ready
            raise CutError(f"the writer's log {cutter.recover_path(name)} vanished before it could be read "
                                "(removed by another process?)") from None
    finally:
        cutter.restore()
        for p in {Path(cutter.directory) / name, cutter.recover_path(name)}:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
    found = scan(data)
    recovered = found.entries
    return CutResult(kind=cutter.kind, strategy=strategy, cut=k, seed=seed, cut_after_ms=after_ms,
                     recovered=recovered, **seen.tally(recovered), unacked_recovered=max(0, recovered - seen.acked),
                     log_end=found.end, torn=found.end == "torn",
                     corrupt=found.end in ("corrupt", "sequence") or found.first_seq not in (None, 0),
                     log_detail=found.detail, nominal_loss_window_ms=st.nominal_loss_window_ms,
                     target=cutter.label, error=error)


# -- an experiment --------------------------------------------------------------------------------

#: The dataset kind, its table and the table's columns.
KIND, TABLE = "crash", "cuts.csv"
SCHEMA = dataset.columns_of(CutResult)
COLUMNS = [name for name, _ in SCHEMA]


def plan(profile: CrashProfile, kinds: tuple[str, ...], strategies: dict[str, tuple[str, ...]] | None = None,
         cuts: int | None = None) -> list[tuple[str, str, int]]:
    """(kind, strategy, cut index) in an interleaved order: cut k of every strategy before cut k + 1."""
    out = []
    for kind in kinds:
        names = getattr(profile, kind)[0]
        names = strategies.get(kind, names) if strategies else names
        n = {s: cuts or profile.cuts_for(kind, s) for s in names}
        out += [(kind, s, k) for k in range(max(n.values(), default=0)) for s in names if k < n[s]]
    return out


def _ok(row: dict) -> bool:
    return row["error"] == ""


def _key(row: dict) -> tuple[str, str, int]:
    return (row["kind"], row["strategy"], int(row["cut"]))


def run_crash(out: str | os.PathLike, profile: CrashProfile, kinds=("power", "process"),
              strategies: list[str] | None = None, cuts: int | None = None, seed: int = 0,
              directory: str | os.PathLike | None = None, power_target: str = "lab:powercut", lab_dir=None,
              progress: bool = True, note: dict | None = None) -> runner.Summary:
    """Run (or resume) a crash experiment into the dataset ``out`` (its table: ``cuts.csv``).

    ``profile`` is a ``CrashProfile`` (the named ones: ``fsyncstudy.profiles.PROFILES[name].crash``).
    A cut recorded with an error is cut again on resume; its row stays as history.
    """
    if not isinstance(profile, CrashProfile):
        raise TypeError(f"profile must be a crash.CrashProfile, got {profile!r}")
    if cuts is not None and (not isinstance(cuts, int) or isinstance(cuts, bool) or not 1 <= cuts <= 100_000):
        raise ValueError(f"cuts must be an integer in 1..100,000 (or left out for the profile's), got {cuts!r}")
    unknown = [k for k in kinds if k not in ("power", "process")]
    if unknown or not kinds:
        raise ValueError(f"kinds must be power and/or process, got {list(kinds)!r}")
    for s in strategies or []:
        parse(s)
    kinds = tuple(kinds)
    chosen = {k: tuple(strategies) for k in kinds} if strategies else None
    cutters = {}
    if "process" in kinds:
        d = pick_directory(directory)
        cutters["process"] = ProcessCut(d)
    if "power" in kinds:
        cutters["power"] = PowerCut(power_target, lab_dir)
    todo_all = plan(profile, kinds, chosen, cuts)
    plan_ = {"profile": profile.name, "kinds": list(kinds), "seed": seed, "cut_window_ms": list(CUT_WINDOW_MS),
             "strategies": {k: sorted({s for kk, s, _ in todo_all if kk == k}) for k in kinds},
             "cuts_per_strategy": {k: cuts or getattr(profile, k)[1] for k in kinds}}
    if cuts is None and profile.lossy_cuts is not None:
        plan_["cuts_by_strategy"] = {k: {s: profile.cuts_for(k, s) for s in plan_["strategies"][k]} for k in kinds}
    notes = {"targets": {k: c.label for k, c in cutters.items()}, "skipped": note or {}}
    ds = dataset.open_or_resume(out, KIND, plan_, SCHEMA, TABLE, notes=notes,
                                targets={c.label: describe(c.directory).as_dict() for c in cutters.values()})
    for c in cutters.values():
        remove_stale(c.directory)
    done = ds.done(_key, _ok)
    todo = [p for p in todo_all if p not in done]
    summary = runner.Summary(out=ds.path, planned=len(todo_all), skipped=len(done))

    def run_one(item, _) -> dict:
        kind, strategy, k = item
        try:
            res = one_cut(cutters[kind], strategy, k, seed)
        except (OSError, RuntimeError) as e:
            st = parse(strategy)
            res = CutResult(kind=kind, strategy=strategy, cut=k, seed=seed,
                            cut_after_ms=cut_moment_ms(seed, kind, strategy, k), acked=0, recovered=0,
                            lost_acked=0, oldest_lost_age_ms=None, newest_ack_age_ms=None, unacked_recovered=0,
                            log_end="", torn=False, corrupt=False, log_detail="",
                            nominal_loss_window_ms=st.nominal_loss_window_ms, target=cutters[kind].label,
                            error=f"{type(e).__name__}: {e}")
        return asdict(res)

    def lost(item, row, summary) -> None:
        kind, strategy, k = item
        if durable_lost(row, parse(strategy).acks_durable):
            summary.lost_by_durable.append(f"{kind} cut {k} of {strategy}: {row['lost_acked']} acknowledged "
                                           f"entries lost (acked {row['acked']}, recovered {row['recovered']})")
    return runner.fill(ds, summary, todo, run_one, label="crash cuts", unit="cut", progress=progress, ok=_ok,
                       postfix=lambda item: f"{item[0]} {item[1]}", after=lost)


def load(path: str | os.PathLike):
    """A crash dataset as (cuts DataFrame, meta dict); every row, errors included (``error`` says so),
    with each strategy's kind (``skind``) and interval beside it."""
    df, meta = dataset.load(path, KIND, SCHEMA)
    df["interval_ms"] = [parse(s).interval_ms for s in df["strategy"]]
    df["skind"] = [parse(s).kind for s in df["strategy"]]
    return df, meta
