"""Side by side with fio and pg_test_fsync: the same workload, the same target, alternating rounds.

``compare(target_dir, rounds=K)`` runs each peer and our engine on the same directory,
peer first in even rounds and ours first in odd ones (drift on a shared machine then hits
both sides alike), and returns one ``PairResult`` per pair with every round's raw values:

=================  ===========================================================  ==========================================
pair               peer                                                         ours
=================  ===========================================================  ==========================================
fio-fdatasync      ``fio --rw=write --ioengine=sync --fdatasync=1``             ``always``, fdatasync
fio-nosync         ``fio --rw=write --ioengine=sync``                           ``none``
fio-dsync          ``fio --rw=write --ioengine=sync --sync=dsync`` (O_DSYNC)    ``always``, rwf_dsync (pwritev2 RWF_DSYNC)
fio-direct-dsync   ``fio ... --direct=1 --sync=dsync --bs=4096 --overwrite=1``  ``always``, direct_dsync (the tail block
                                                                                rewritten in place), zero-filled file
pg-<method>        pg_test_fsync, "one 8kB write", <method>                     ``always``, <method>, 8 kB records written
                                                                                at offset 0 of a zero-filled 16 MiB file
=================  ===========================================================  ==========================================

fio pairs use the same block size (our record: 16-byte header + payload), the same number
of writes and the same preallocation (``peertools.PREALLOC_TO_FIO``); ``fio-direct-dsync`` writes
4096-byte blocks on fio's side, one per entry, as ours writes its tail block per entry (``PairResult.notes``
says exactly what each side writes).  ``pairs`` picks them (``select_pairs``): the write paths' two
(issue 25) run when asked.  pg_test_fsync runs its whole suite each round (it has no option to run one
section); we read its first section.

Statistics are ``fsyncstudy.intervals`` (standard library): a 95% t interval over rounds;
the ratio is the geometric mean of the per-round ratios ours/peer, its interval the t interval
of the log ratios, exponentiated: rounds are paired, so drift cancels.

``run_comparison`` runs ``compare`` on several targets into a dataset (``rounds.csv``).
The command line and its formatting are in ``fsyncstudy.cli``.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field

from . import dataset, runner
from .intervals import Interval, against_aim, equivalence, mean_interval, none_if_nan, paired_ratio_ci
from .log import DIRECT_BLOCK, HEADER
from .peertools import PREALLOC_TO_FIO, FioRun, PeerFailed, PeerMissing, find_peers, fio_command, fio_version, \
    peer_versions, run_fio, run_pg_test_fsync
from .places import default_targets, pick_directory, resolve_all
from .strategies import SELF_SYNCING_METHODS
from .targets import describe, strip_verdict, table_label
from .trial import run_trial

#: pg_test_fsync's names for the sync methods of its first section, and ours.
PG_METHODS = {"open_datasync": "open_dsync", "fdatasync": "fdatasync", "fsync": "fsync", "open_sync": "open_sync"}
PG_BLOCK_BYTES = 8192
PG_FILE_BYTES = 16 << 20
#: Our side of a pg_test_fsync test: 8 kB records at offset 0 of a zero-filled 16 MiB file.
PG_TRIAL = dict(prealloc="zero-fill", prealloc_bytes=PG_FILE_BYTES, payload_bytes=PG_BLOCK_BYTES - HEADER.size,
                overwrite_offset0=True)
#: Time-bound trials frame records inside the timed window (about 1.5 us per 8 kB record here), so
#: pg pairs run a calibrated count instead, all framed before timing, up to this many bytes of records.
PG_MAX_FRAMED_BYTES = 256 << 20
#: Seconds each side of a sync pair / the no-sync pair should take when entries are calibrated.
SYNC_PAIR_S = 0.5
NOSYNC_PAIR_S = 0.2
#: fio-direct-dsync writes a 4096-byte block per entry on fio's side: at most this many bytes a run
#: (tmpfs takes O_DIRECT and syncs in no time, and its file is memory).
DIRECT_MAX_BYTES = 128 << 20

#: Every pair, by peer, in the order a round runs them.
PAIRS = {"fio": ("fio-fdatasync", "fio-nosync", "fio-dsync", "fio-direct-dsync"),
         "pg_test_fsync": tuple(f"pg-{m}" for m in PG_METHODS)}
#: Names for sets of pairs (``select_pairs``): "default" is the comparison as it was before the write
#: paths (issue 25), which are "write-paths".
WRITE_PATH_PAIRS = ("fio-dsync", "fio-direct-dsync")
PAIR_GROUPS = {"default": tuple(p for ps in PAIRS.values() for p in ps if p not in WRITE_PATH_PAIRS),
               "write-paths": WRITE_PATH_PAIRS, "all": tuple(p for ps in PAIRS.values() for p in ps)}
DEFAULT_PAIRS = ("default",)
#: What our side of each fio pair runs, and how fio makes its writes durable (``peertools.fio_command``).
FIO_PAIRS = {
    "fio-fdatasync": dict(strategy="always", sync_method="fdatasync", fio_sync="fdatasync", latency="sync"),
    "fio-nosync": dict(strategy="none", sync_method=None, fio_sync=False, latency="write"),
    "fio-dsync": dict(strategy="always", sync_method="rwf_dsync", fio_sync="dsync", latency="sync"),
    "fio-direct-dsync": dict(strategy="always", sync_method="direct_dsync", fio_sync="direct_dsync", latency="sync"),
}
#: A pair that cannot run on a target (no O_DIRECT, no RWF_DSYNC) has this note, then the reason.
UNAVAILABLE = "unavailable: "


def select_pairs(peers, pairs=DEFAULT_PAIRS) -> list[str]:
    """The pairs ``pairs`` names (pair names or ``PAIR_GROUPS``' names) among those of ``peers``, in
    ``PAIRS`` order.  A group takes only the requested peers' pairs; a pair named on its own whose
    peer is not requested, or an unknown name, is a ValueError."""
    peers = list(peers)
    unknown = [p for p in peers if p not in PAIRS]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(unknown)}: use fio and/or pg_test_fsync")
    ours = {p for peer in peers for p in PAIRS[peer]}
    wanted = set()
    for name in pairs:
        if name in PAIR_GROUPS:
            wanted |= set(PAIR_GROUPS[name]) & ours
        elif name in PAIR_GROUPS["all"]:
            if name not in ours:
                peer = next(k for k, v in PAIRS.items() if name in v)
                raise ValueError(f"pair {name} is {peer}'s, which is not among the peers ({', '.join(peers)})")
            wanted.add(name)
        else:
            raise ValueError(f"unknown pair {name!r}: use one of {', '.join(PAIR_GROUPS['all'])}, "
                             f"or {', '.join(PAIR_GROUPS)}")
    return [p for peer in PAIRS for p in PAIRS[peer] if p in wanted]
# -- the comparison ------------------------------------------------------------------------------

@dataclass
class PairResult:
    """One pair (peer test vs our configuration) over all rounds, with every round's raw values.

    Lists are per round, in round order.  ``latency`` says what the p50/p99 lists time:
    ``sync`` (one sync; for open_* methods the synchronous write) or ``write`` (one write()).
    pg_test_fsync reports only a mean, so its p50/p99 are None.
    """

    pair: str
    peer: str
    peer_test: str
    ours: str
    strategy: str
    sync_method: str | None
    prealloc: str
    overwrite_offset0: bool
    block_bytes: int
    entries: int                   # our writes per round (fio: the same count; pg_test_fsync: time-bound)
    seconds: float | None          # pg_test_fsync's seconds per test; our count is calibrated to about that
    latency: str
    aim: str
    peer_command: list[str]
    peer_version: str
    target_path: str
    target_fstype: str
    target_durability: str
    order: list[str] = field(default_factory=list)           # per round: "peer first" / "ours first"
    ours_ops_per_sec: list[float] = field(default_factory=list)
    peer_ops_per_sec: list[float | None] = field(default_factory=list)
    ours_p50_us: list[float | None] = field(default_factory=list)
    ours_p99_us: list[float | None] = field(default_factory=list)
    peer_p50_us: list[float | None] = field(default_factory=list)
    peer_p99_us: list[float | None] = field(default_factory=list)
    ours_syncs: list[int] = field(default_factory=list)
    peer_syncs: list[int | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: why the pair could not run on this target ('' when it ran): its rounds then hold no values
    unavailable: str = ""

    @property
    def rounds(self) -> int:
        return len(self.ours_ops_per_sec)

    def ratio(self) -> Interval:
        return paired_ratio_ci(self.ours_ops_per_sec, self.peer_ops_per_sec)

    def ratio_median(self) -> float:
        return median_ratio(self.ours_ops_per_sec, self.peer_ops_per_sec)

    def ours_ops(self) -> Interval:
        return mean_interval(self.ours_ops_per_sec)

    def peer_ops(self) -> Interval:
        return mean_interval(self.peer_ops_per_sec)

    def verdict(self) -> str:
        return pair_verdict(self.pair, self.peer, self.ours_ops_per_sec, self.peer_ops_per_sec, self.unavailable)

    def summary(self) -> dict:
        """One flat row: the pair, ratio with CI, both sides' ops/sec with CI, mean p50/p99 over rounds
        (None where there is no value or no interval: the row goes out as JSON)."""
        r, o, p, n = self.ratio(), self.ours_ops(), self.peer_ops(), none_if_nan

        def avg(xs):
            return n(mean_interval(xs).estimate)
        return {
            "pair": self.pair, "peer": self.peer, "peer_test": self.peer_test, "ours": self.ours,
            "block_bytes": self.block_bytes, "prealloc": self.prealloc, "rounds": self.rounds,
            "ratio": n(r.estimate), "ratio_ci_low": n(r.low), "ratio_ci_high": n(r.high),
            "ratio_median": n(self.ratio_median()),
            "ours_ops_per_sec": n(o.estimate), "ours_ops_ci_low": n(o.low), "ours_ops_ci_high": n(o.high),
            "peer_ops_per_sec": n(p.estimate), "peer_ops_ci_low": n(p.low), "peer_ops_ci_high": n(p.high),
            "latency": self.latency,
            "ours_p50_us": avg(self.ours_p50_us), "ours_p99_us": avg(self.ours_p99_us),
            "peer_p50_us": avg(self.peer_p50_us), "peer_p99_us": avg(self.peer_p99_us),
            "aim": self.aim, "verdict": self.verdict(), "unavailable": self.unavailable,
            "target_path": self.target_path, "target_fstype": self.target_fstype,
            "target_durability": self.target_durability,
        }

    def as_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary()}


#: The aim of ours against fio doing the same (fdatasync after each write, O_DSYNC writes, O_DIRECT|O_DSYNC
#: writes): at least this fraction of its ops/sec.
FIO_AIM = 0.95
#: The pairs judged against ``FIO_AIM``.
FIO_AIM_PAIRS = ("fio-fdatasync", *WRITE_PATH_PAIRS)


def median_ratio(ours_values, peer_values) -> float:
    """The median of the per-round ratios ours/peer (rounds where either side has no value left out);
    NaN with none.  The write paths' aim (issue 25) is stated on it, beside the interval's verdict."""
    import statistics
    r = [o / p for o, p in zip(ours_values, peer_values) if o and p and o == o and p == p]
    return statistics.median(r) if r else float("nan")


#: pg_test_fsync pairs: ours and pg_test_fsync count as equivalent when the paired ratio's 90%
#: interval lies within [1 - margin, 1 / (1 - margin)] (two one-sided tests at 5%).  5% is the
#: smallest difference that would change a choice of sync method here (the methods pg_test_fsync
#: compares differ by 5-15% on this disk) and about the round-to-round spread of pg_test_fsync itself.
PG_EQUIVALENCE_MARGIN = 0.05


def pair_verdict(pair: str, peer: str, ours_values, peer_values, unavailable: str = "") -> str:
    """A pair against its aim, from the per-round ops/sec of both sides (paired by round).
    fio-fdatasync, fio-dsync, fio-direct-dsync (ours/fio >= ``FIO_AIM``): 'meets', 'short' or 'unclear'
    as the ratio's 95% interval lies (``intervals.against_aim``).  pg-*: an equivalence test
    (``intervals.equivalence``, margin ``PG_EQUIVALENCE_MARGIN``): 'equivalent', 'below', 'above' or
    'unclear'.  'unavailable' where the pair could not run on the target (``unavailable``: why); ''
    where no aim is set or there is too little data."""
    if unavailable:
        return "unavailable"
    ours_values, peer_values = list(ours_values), list(peer_values)
    k = min(len(ours_values), len(peer_values))
    if pair in FIO_AIM_PAIRS:
        return against_aim(paired_ratio_ci(ours_values[:k], peer_values[:k]), FIO_AIM)
    if peer == "pg_test_fsync":
        return equivalence(ours_values[:k], peer_values[:k], PG_EQUIVALENCE_MARGIN, pairs=True)[0]
    return ""


def to_rows(results: list[PairResult]) -> list[dict]:
    """Tidy rows, one per (pair, round, side): ready for ``pandas.DataFrame(to_rows(results))``."""
    rows = []
    for pr in results:
        for i in range(pr.rounds):
            for side in ("ours", "peer"):
                ops = getattr(pr, f"{side}_ops_per_sec")[i]
                rows.append({
                    "pair": pr.pair, "peer": pr.peer, "round": i, "order": pr.order[i], "side": side,
                    "tool": "fsyncstudy" if side == "ours" else pr.peer,
                    "config": pr.ours if side == "ours" else pr.peer_test,
                    "ops_per_sec": ops, "us_per_op": 1e6 / ops if ops else None,
                    "latency": pr.latency,
                    "p50_us": getattr(pr, f"{side}_p50_us")[i], "p99_us": getattr(pr, f"{side}_p99_us")[i],
                    "syncs": getattr(pr, f"{side}_syncs")[i],
                    "block_bytes": pr.block_bytes, "prealloc": pr.prealloc, "entries": pr.entries,
                    "seconds": pr.seconds, "target_path": pr.target_path, "target_fstype": pr.target_fstype,
                })
    return rows


def summary_rows(results: list[PairResult]) -> list[dict]:
    return [pr.summary() for pr in results]


def _clamp(x: float, lo: int, hi: int) -> int:
    return int(max(lo, min(hi, x)))


def calibrated_entries(probe, seconds: float, lo: int, hi: int) -> int:
    """Entries that take about ``seconds`` at the rate a short probe trial (a TrialResult) reached."""
    return _clamp(probe.ops_per_sec * seconds, lo, hi)


def compare(target_dir=None, rounds: int = 5, peers=("fio", "pg_test_fsync"), prealloc: str = "fallocate",
            payload_bytes: int = 128, entries: int | None = None, nosync_entries: int | None = None,
            secs_per_test: int = 1, log=None, pairs=DEFAULT_PAIRS) -> list[PairResult]:
    """Run the peers and our engine side by side on ``target_dir`` in ``rounds`` alternating rounds.

    ``pairs``: which pairs (``select_pairs``: names, or "default", "write-paths", "all"); a peer with
    none of them does not run.  fio pairs: ``entries`` writes of ``payload_bytes`` + 16 bytes per side
    and round with a sync after each (fdatasync, an O_DSYNC write, our RWF_DSYNC write), and
    ``nosync_entries`` without (both calibrated to about ``SYNC_PAIR_S`` / ``NOSYNC_PAIR_S`` seconds
    when None), preallocated by ``prealloc`` on both sides; fio-direct-dsync writes 4096-byte blocks
    on fio's side and zero-fills on both.  A pair the target cannot run (no O_DIRECT, no RWF_DSYNC) is
    recorded as unavailable with the reason (``PairResult.unavailable``), never run another way.
    pg_test_fsync pairs: its suite at ``secs_per_test``, against our ``always`` with each matching
    method for ``secs_per_test`` seconds, 8 kB records at offset 0 of a zero-filled 16 MiB file.
    ``log`` (a callable) hears progress.  Raises PeerMissing before running anything if a needed peer
    is not installed.
    """
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if prealloc not in PREALLOC_TO_FIO:
        raise ValueError(f"unknown preallocation {prealloc!r}: use one of {', '.join(PREALLOC_TO_FIO)}")
    peers = list(dict.fromkeys(peers))
    wanted = select_pairs(peers, pairs)
    if not wanted:
        raise ValueError(f"no pair among {', '.join(pairs)} is one of {', '.join(peers)}'s: "
                         f"its pairs are {', '.join(p for peer in peers for p in PAIRS[peer])}")
    peers = [p for p in peers if set(PAIRS[p]) & set(wanted)]
    paths = find_peers(peers)
    say = log or (lambda m: None)
    directory = os.fspath(pick_directory(target_dir))
    target = describe(directory)
    block = HEADER.size + payload_bytes
    base = dict(peer_version="", target_path=target.path, target_fstype=target.fstype,
                target_durability=target.durability)
    results: list[PairResult] = []

    def trial(*a, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return run_trial(*a, directory=directory, target=target, **kw)

    fio_pairs: list[PairResult] = []
    if "fio" in paths:
        version = fio_version(paths["fio"])
        for name in (p for p in PAIRS["fio"] if p in wanted):
            pr = _fio_pair(name, paths["fio"], directory, block, payload_bytes, prealloc, entries, nosync_entries,
                           trial, base)
            pr.peer_version = version
            fio_pairs.append(pr)
        results += fio_pairs

    pg_pairs: dict[str, PairResult] = {}
    if "pg_test_fsync" in paths:
        if not isinstance(secs_per_test, int) or secs_per_test < 1:
            raise ValueError(f"secs_per_test must be a whole number of seconds >= 1, got {secs_per_test!r}")
        # pg_test_fsync opens its open_* files with O_DIRECT where the filesystem has it: so do we
        has_direct = direct_io_works(directory)
        direct = {m: m.startswith("open_") and has_direct for m in PG_METHODS.values()}
        methods = {name: m for name, m in PG_METHODS.items() if f"pg-{name}" in wanted}
        pg_entries = {m: calibrated_entries(trial("always", duration_s=0.2, sync_method=m, direct=direct[m],
                                                  **PG_TRIAL),
                                            secs_per_test, 500, PG_MAX_FRAMED_BYTES // PG_BLOCK_BYTES)
                      for m in methods.values()}
        for pg_name, ours_method in methods.items():
            pr = PairResult(
                pair=f"pg-{pg_name}", peer="pg_test_fsync", peer_test=f"pg_test_fsync one 8kB write, {pg_name}",
                ours=f"always, {ours_method}, 8 kB at offset 0, zero-filled 16 MiB",
                strategy="always", sync_method=ours_method, prealloc="zero-fill", overwrite_offset0=True,
                block_bytes=PG_BLOCK_BYTES, entries=pg_entries[ours_method], seconds=float(secs_per_test),
                latency="sync",
                aim=f"ours equivalent to pg_test_fsync within {PG_EQUIVALENCE_MARGIN:.0%} (TOST)", peer_command=[paths["pg_test_fsync"], "-s",
                                                                         str(secs_per_test), "-f", "<file>"],
                **base)
            if direct[ours_method]:
                pr.notes.append("O_DIRECT on both sides, as pg_test_fsync opens its open_* files (ours from "
                                "page-aligned memory, framed before timing)")
            elif pg_name.startswith("open_"):
                pr.notes.append("no O_DIRECT on this filesystem: we write through the page cache")
            pr.notes.append("pg_test_fsync reports a mean per test: no percentiles on its side")
            pr.notes.append(f"pg_test_fsync runs {secs_per_test} s per test; ours a count calibrated to about that "
                            "(records framed before timing)")
            pg_pairs[pg_name] = pr
        results += list(pg_pairs.values())

    for r in range(rounds):
        peer_first = r % 2 == 0
        order = "peer first" if peer_first else "ours first"
        say(f"round {r + 1}/{rounds} ({order})")
        for pr in fio_pairs:
            if pr.unavailable:
                _record_unavailable(pr, order)
                continue

            def ours(pr=pr):
                return trial(pr.strategy, entries=pr.entries, payload_bytes=payload_bytes, prealloc=pr.prealloc,
                             sync_method=pr.sync_method or "fdatasync")

            def peer(pr=pr):
                return run_fio(directory, pr.block_bytes, pr.entries, sync=FIO_PAIRS[pr.pair]["fio_sync"],
                               prealloc=pr.prealloc, fio=paths["fio"])
            if peer_first:
                got_peer, got_ours = peer(), ours()
            else:
                got_ours, got_peer = ours(), peer()
            _record_fio(pr, order, got_ours, got_peer)
        if pg_pairs:
            def ours_pg():
                return {name: trial("always", entries=pg_pairs[name].entries, sync_method=m, direct=direct[m],
                                    **PG_TRIAL)
                        for name, m in methods.items()}

            def peer_pg():
                return run_pg_test_fsync(directory, secs_per_test, paths["pg_test_fsync"])
            if peer_first:
                pg, mine = peer_pg(), ours_pg()
            else:
                mine, pg = ours_pg(), peer_pg()
            for name, pr in pg_pairs.items():
                pr.peer_version = pg.version
                line = pg.get(1, name)
                o = mine[name]
                pr.order.append(order)
                pr.ours_ops_per_sec.append(o.ops_per_sec)
                pr.ours_p50_us.append(o.sync_latency_us_p50)
                pr.ours_p99_us.append(o.sync_latency_us_p99)
                pr.ours_syncs.append(o.syncs)
                pr.peer_ops_per_sec.append(line.ops_per_sec if line else None)
                pr.peer_p50_us.append(None)
                pr.peer_p99_us.append(None)
                pr.peer_syncs.append(None)
                if line is not None and line.na and not any(line.na in n for n in pr.notes):
                    pr.notes.append(f"pg_test_fsync printed {line.na} for {name} in some rounds"
                                    + (" (no direct I/O on this filesystem)" if line.na == "n/a*" else ""))
    return results


def _fio_pair(name: str, fio: str, directory: str, record_bytes: int, payload_bytes: int, prealloc: str,
              entries: int | None, nosync_entries: int | None, trial, base: dict) -> PairResult:
    """One fio pair, defined and sized (not yet run): its unavailability on this target is decided here,
    by a probe, before any round."""
    spec = FIO_PAIRS[name]
    sync, method = spec["fio_sync"], spec["sync_method"]
    direct = sync == "direct_dsync"
    # direct: both sides lay the file out written (zero-fill; see the note below)
    pre = "zero-fill" if direct else prealloc
    block = DIRECT_BLOCK if direct else record_bytes
    unavailable = unavailable_reason(name, directory)
    count = entries if sync else nosync_entries
    if count is None and unavailable:
        count = 1                        # nothing runs: no probe to size it
    elif count is None and sync:         # a short probe of ours sizes the runs, and warms the target up
        # (a zero-fill of the default 64 MiB would outlast the probe: 1 MiB, appending past it if need be)
        probe = trial("always", duration_s=0.2, payload_bytes=payload_bytes, prealloc=pre, sync_method=method,
                      **({"prealloc_bytes": 1 << 20} if pre == "zero-fill" else {}))
        count = calibrated_entries(probe, SYNC_PAIR_S, 200, DIRECT_MAX_BYTES // block if direct else 200_000)
    elif count is None:
        count = calibrated_entries(trial("none", duration_s=0.05, payload_bytes=payload_bytes),
                                   NOSYNC_PAIR_S, 5_000, 250_000)
    # the options after --size (how it syncs, the layout), and the block size where it is not our record's
    fio_opts = " ".join(fio_command("fio", "<file>", block, count, sync, pre)[7:-2]
                        + ([f"--bs={block}"] if direct else []))
    ours = {"fdatasync": f"always, fdatasync, prealloc {pre}", None: f"none, prealloc {pre}",
            "rwf_dsync": f"always, rwf_dsync (pwritev2 RWF_DSYNC), prealloc {pre}",
            "direct_dsync": f"always, direct_dsync (O_DIRECT|O_DSYNC, tail block rewritten), prealloc {pre}"}[method]
    pr = PairResult(
        pair=name, peer="fio", peer_test=f"fio --rw=write --ioengine=sync {fio_opts}", ours=ours,
        strategy=spec["strategy"], sync_method=method, prealloc=pre, overwrite_offset0=False, block_bytes=block,
        entries=count, seconds=None, latency=spec["latency"], aim=f"ours/fio >= {FIO_AIM}" if name in FIO_AIM_PAIRS else "",
        peer_command=fio_command(fio, "<file>", block, count, sync, pre), unavailable=unavailable, **base)
    pr.notes += fio_pair_notes(name, record_bytes, count)
    if unavailable:
        pr.notes.insert(0, UNAVAILABLE + unavailable)
    return pr


def fio_pair_notes(name: str, record_bytes: int, entries: int) -> list[str]:
    """What each side of a fio pair does per op, and what differs (docs/peers.md)."""
    if name == "fio-fdatasync":
        return ["fio's iops counts writes; with --fdatasync=1 each write is followed by its sync, "
                "so one op is write + sync on both sides",
                "fio syncs after every write but the last when the size is a multiple of the "
                "block size (n writes, n - 1 syncs): a 1/n advantage to fio"]
    if name == "fio-nosync":
        return ["one op is one write() on both sides"]
    if name == "fio-dsync":
        return [f"one op is one synchronous write of {record_bytes} bytes appended at the file's offset on both "
                "sides: fio opens the file O_DSYNC (its pvsync2 engine has no per-write RWF_DSYNC), ours writes "
                "each record with pwritev2(RWF_DSYNC); the kernel makes both durable the same way (the written "
                "range and the metadata it needs, as fdatasync would)",
                "latency: the synchronous write on both sides (fio's write clat)"]
    big = tail_block_writes(record_bytes, entries)
    return [f"fio writes one new {DIRECT_BLOCK}-byte block per op, each at the next offset ({entries:,} blocks, "
            f"{entries * DIRECT_BLOCK:,} bytes); ours appends a {record_bytes}-byte record into the {DIRECT_BLOCK}-byte "
            f"tail block and writes that block again in place at its offset until it is full (about "
            f"{DIRECT_BLOCK / record_bytes:.1f} records a block): one {DIRECT_BLOCK}-byte O_DIRECT|O_DSYNC pwrite per op, "
            f"{2 * DIRECT_BLOCK} bytes (two blocks) for the {big:,} of {entries:,} records that straddle a block "
            f"boundary ({entries * DIRECT_BLOCK + big * DIRECT_BLOCK:,} bytes in all)",
            "both files are laid out written and synced before timing (fio --overwrite=1, our zero-fill), so "
            "every timed write on both sides overwrites written blocks, where in a fallocated file each of fio's new "
            "blocks would be an unwritten extent its write converts (metadata that O_DSYNC must also make "
            f"durable), ours one block in about {DIRECT_BLOCK // record_bytes}",
            "latency: the synchronous write on both sides (fio's write clat)"]


def tail_block_writes(record_bytes: int, entries: int) -> int:
    """How many of ``entries`` records of ``record_bytes``, packed from offset 0 into ``DIRECT_BLOCK``
    blocks, straddle a block boundary, so that ``writepaths.TailBlock`` writes two blocks for them."""
    return sum((i * record_bytes) // DIRECT_BLOCK != ((i + 1) * record_bytes - 1) // DIRECT_BLOCK
               for i in range(entries))


def unavailable_reason(pair: str, directory: str) -> str:
    """Why ``pair`` cannot run in ``directory`` ('' when it can): fio-direct-dsync needs O_DIRECT,
    fio-dsync ours' RWF_DSYNC; neither is then run another way (buffered, or with fdatasync)."""
    if pair == "fio-direct-dsync" and not direct_io_works(directory):
        return f"{directory} refuses O_DIRECT, so neither side can write direct (not run buffered instead)"
    if pair == "fio-dsync":
        try:
            rwf_dsync_probe(directory)
        except OSError as e:
            return f"{e.strerror or e} (not run with fdatasync instead)"
    return ""


def rwf_dsync_probe(directory: str) -> None:
    """``log.probe_rwf_dsync`` on a scratch file in ``directory`` (an OSError saying why it is refused)."""
    from .log import probe_rwf_dsync
    fd, path = tempfile.mkstemp(dir=directory, prefix=".fsyncstudy-rwf-probe-")
    try:
        probe_rwf_dsync(fd)
    finally:
        os.close(fd)
        os.unlink(path)


def unavailable_in(notes: str) -> str:
    """Why a pair could not run, from its rows' notes column (the notes joined by "; "); '' when it ran."""
    for note in str(notes or "").split("; "):
        if note.startswith(UNAVAILABLE):
            return note[len(UNAVAILABLE):]
    return ""


def _record_unavailable(pr: PairResult, order: str) -> None:
    """A round of a pair that could not run: no values on either side (the reason is in its notes)."""
    pr.order.append(order)
    for side in ("ours", "peer"):
        for what in ("ops_per_sec", "p50_us", "p99_us", "syncs"):
            getattr(pr, f"{side}_{what}").append(None)


def direct_io_works(directory: str) -> bool:
    """Whether a file in ``directory`` takes O_DIRECT writes of an aligned 4 kB block (tmpfs since
    Linux 6.6 does; FUSE filesystems without direct_io may not)."""
    from .log import DIRECT_BLOCK, HEADER, AlignedFramer, set_direct
    fd, path = tempfile.mkstemp(dir=directory, prefix=".fsyncstudy-direct-probe-")
    block = AlignedFramer(bytes(DIRECT_BLOCK - HEADER.size)).frame_range(0, 1)[0]
    try:
        set_direct(fd)
        return os.pwrite(fd, block, 0) == DIRECT_BLOCK
    except OSError:
        return False
    finally:
        block.release()
        os.close(fd)
        os.unlink(path)


def _record_fio(pr: PairResult, order: str, ours, fio: FioRun) -> None:
    if fio.writes != pr.entries:
        raise PeerFailed(f"fio wrote {fio.writes} blocks, expected {pr.entries}")
    own = pr.sync_method in SELF_SYNCING_METHODS
    if own and fio.syncs:
        raise PeerFailed(f"fio made {fio.syncs} sync calls in {pr.pair}, where every write should sync itself")
    pr.order.append(order)
    pr.ours_ops_per_sec.append(ours.ops_per_sec)
    pr.peer_ops_per_sec.append(fio.ops_per_sec)
    if pr.latency == "sync":   # ours: the sync, or for a write that syncs itself, that write (as the engine times it)
        pr.ours_p50_us.append(ours.sync_latency_us_p50)
        pr.ours_p99_us.append(ours.sync_latency_us_p99)
    else:   # none: an entry's ack latency is its write()
        pr.ours_p50_us.append(ours.ack_latency_us_p50)
        pr.ours_p99_us.append(ours.ack_latency_us_p99)
    # fio: its sync calls' latency, or its write's clat where there is no sync call (O_DSYNC, or none)
    peer_p = fio.write_p if own or pr.latency == "write" else fio.sync_p
    pr.peer_p50_us.append(peer_p(50))
    pr.peer_p99_us.append(peer_p(99))
    pr.ours_syncs.append(ours.syncs)
    # syncs: a synchronous write counts as one, as the engine counts ours
    pr.peer_syncs.append(fio.writes if own else fio.syncs)


# -- a comparison dataset (what notebook 05 and the report read) ----------------------------------

#: The dataset kind, its table and the table's columns.
KIND, TABLE = "peers", "rounds.csv"
SCHEMA = [["target", "str"], ["target_label", "str"], ["pair", "str"], ["peer", "str"], ["round", "int"],
          ["order", "str"], ["side", "str"], ["tool", "str"], ["config", "str"], ["ops_per_sec", "float"],
          ["us_per_op", "float"], ["latency", "str"], ["p50_us", "float"], ["p99_us", "float"], ["syncs", "int"],
          ["block_bytes", "int"], ["prealloc", "str"], ["entries", "int"], ["seconds", "float"],
          ["target_path", "str"], ["target_fstype", "str"], ["aim", "str"], ["notes", "list"]]
ROUND_COLUMNS = [name for name, _ in SCHEMA]


def run_comparison(out, targets: list[str] | None = None, rounds: int = 5, peers=("fio", "pg_test_fsync"),
                   secs_per_test: int = 1, log=None, progress: bool = False, pairs=DEFAULT_PAIRS) -> runner.Summary:
    """``compare`` on each target, into the dataset ``out`` (``rounds.csv``: one row per pair, round
    and side); a target whose rows are there already is skipped (resume).  A peer that is not
    installed is recorded in meta.json's notes (and the summary's ``missing``) with how to install
    it, and the other peer still runs.  ``pairs`` as ``compare``'s; the plan records it only when it
    is not the default, so a dataset planned before there was a choice resumes under the same plan."""
    names = targets or default_targets()
    dirs = resolve_all(names)
    pairs = tuple(pairs)
    select_pairs(peers, pairs)          # an unknown pair is refused before anything is opened
    found, missing = {}, {}
    for p in peers:
        try:
            found.update(find_peers([p]))
        except PeerMissing as e:
            missing[p] = str(e)
    descriptions = {d: describe(d) for d in dirs}
    plan = {"rounds": rounds, "peers": list(peers), "secs_per_test": secs_per_test, "targets": dirs,
            **({"pairs": list(pairs)} if pairs != DEFAULT_PAIRS else {})}
    ds = dataset.open_or_resume(out, KIND, plan, SCHEMA, TABLE,
                                notes={"missing_peers": missing, "peer_versions": peer_versions(found)},
                                targets={d: t.as_dict() for d, t in descriptions.items()})
    done = ds.done(lambda r: r["target"], lambda r: True)
    # the pairs of the peers found (a pair named alone whose peer is missing is left out, as its peer is)
    runnable = [p for p in pairs if p in PAIR_GROUPS or any(p in PAIRS[f] for f in found)]
    todo = [d for d in dirs if d not in done] if found and select_pairs(list(found), runnable) else []
    summary = runner.Summary(out=ds.path, planned=len(dirs), skipped=sum(d in done for d in dirs), missing=missing)

    def run_one(d: str, _) -> list[dict]:
        t = descriptions[d]
        (log or (lambda m: None))(f"comparing on {d} ({t.fstype}) with {', '.join(found)}")
        results = compare(d, rounds=rounds, peers=list(found), secs_per_test=secs_per_test, log=log,
                          pairs=runnable)
        by_pair = {pr.pair: pr for pr in results}
        return [{**row, "target": d, "target_label": table_label(t), "aim": by_pair[row["pair"]].aim,
                 "notes": by_pair[row["pair"]].notes} for row in to_rows(results)]
    # a comparison's rows carry no error: a pair that cannot run raises, and the target is compared again
    return runner.fill(ds, summary, todo, run_one, label="peers comparison", unit="target", progress=progress,
                       ok=lambda row: True, postfix=lambda d: d)


def load(path):
    """A comparison dataset as (rounds DataFrame, meta dict)."""
    df, meta = dataset.load(path, KIND, SCHEMA)
    df["target_label"] = df["target_label"].map(strip_verdict)  # the verdict has its own column
    return df, meta
