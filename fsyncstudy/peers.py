"""Side by side with fio and pg_test_fsync: the same workload, the same target, alternating rounds.

``compare(target_dir, rounds=K)`` runs each peer and our engine on the same directory,
peer first in even rounds and ours first in odd ones (drift on a shared machine then hits
both sides alike), and returns one ``PairResult`` per pair with every round's raw values:

=================  ===========================================================  ==========================================
pair               peer                                                         ours
=================  ===========================================================  ==========================================
fio-fdatasync      ``fio --rw=write --ioengine=sync --fdatasync=1``             ``always``, fdatasync
fio-nosync         ``fio --rw=write --ioengine=sync``                           ``none``
pg-<method>        pg_test_fsync, "one 8kB write", <method>                     ``always``, <method>, 8 kB records written
                                                                                at offset 0 of a zero-filled 16 MiB file
=================  ===========================================================  ==========================================

fio pairs use the same block size (our record: 16-byte header + payload), the same number
of writes and the same preallocation (``peertools.PREALLOC_TO_FIO``).  pg_test_fsync runs its whole
suite each round (it has no option to run one section); we read its first section.

Statistics are the standard library's: a 95% t interval over rounds, with t from a table
(df <= 30) and a Cornish-Fisher expansion beyond (error < 1e-5; tests check it against
scipy).  The ratio is the geometric mean of the per-round ratios ours/peer, its interval the
t interval of the log ratios, exponentiated: rounds are paired, so drift cancels.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import warnings
from dataclasses import asdict, dataclass, field

from .log import HEADER
from .peertools import (PREALLOC_TO_FIO, FioRun, PeerFailed, PeerMissing, find_peers, fio_command, fio_version,
                        run_fio, run_pg_test_fsync)

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
#: Student's t 97.5% quantiles for 1..30 degrees of freedom.
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
         2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
         2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)


# -- statistics ----------------------------------------------------------------------------------

def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with df degrees of freedom (two-sided 95%)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    g1 = (z ** 3 + z) / 4
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
    return z + g1 / df + g2 / df ** 2 + g3 / df ** 3


@dataclass
class Estimate:
    """A mean over rounds with its 95% t interval (low/high None with fewer than two values)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def contains(self, x: float) -> bool | None:
        if self.low is None or self.high is None:
            return None
        return self.low <= x <= self.high


def mean_ci(values) -> Estimate:
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return Estimate(None, None, None, 0)
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return Estimate(m, None, None, 1)
    h = t975(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return Estimate(m, m - h, m + h, len(xs))


def ratio_ci(ours, peer) -> Estimate:
    """Geometric mean of the paired per-round ratios ours/peer, with a t interval on the log scale."""
    logs = [math.log(a / b) for a, b in zip(ours, peer) if a and b]
    e = mean_ci(logs)
    if e.mean is None:
        return e
    return Estimate(math.exp(e.mean), None if e.low is None else math.exp(e.low),
                    None if e.high is None else math.exp(e.high), e.n)


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

    @property
    def rounds(self) -> int:
        return len(self.ours_ops_per_sec)

    def ratio(self) -> Estimate:
        return ratio_ci(self.ours_ops_per_sec, self.peer_ops_per_sec)

    def ours_ops(self) -> Estimate:
        return mean_ci(self.ours_ops_per_sec)

    def peer_ops(self) -> Estimate:
        return mean_ci(self.peer_ops_per_sec)

    def verdict(self) -> str:
        """Against the issue's aim.  fio-fdatasync (ratio >= 0.95): 'meets' or 'short' when the ratio's
        interval is wholly on one side, 'unclear' when it straddles 0.95 (one round: the point estimate
        decides).  pg-*: our mean 'within', 'below' or 'above' pg_test_fsync's 95% interval.  '' where
        no aim is set or there is too little data."""
        r, p, o = self.ratio(), self.peer_ops(), self.ours_ops()
        if self.pair == "fio-fdatasync" and r.mean is not None:
            lo, hi = (r.mean, r.mean) if r.low is None else (r.low, r.high)
            return "meets" if lo >= 0.95 else ("short" if hi < 0.95 else "unclear")
        if self.peer == "pg_test_fsync" and p.low is not None and o.mean is not None:
            return "within" if p.low <= o.mean <= p.high else ("below" if o.mean < p.low else "above")
        return ""

    def summary(self) -> dict:
        """One flat row: the pair, ratio with CI, both sides' ops/sec with CI, mean p50/p99 over rounds."""
        r, o, p = self.ratio(), self.ours_ops(), self.peer_ops()

        def avg(xs):
            return mean_ci(xs).mean
        return {
            "pair": self.pair, "peer": self.peer, "peer_test": self.peer_test, "ours": self.ours,
            "block_bytes": self.block_bytes, "prealloc": self.prealloc, "rounds": self.rounds,
            "ratio": r.mean, "ratio_ci_low": r.low, "ratio_ci_high": r.high,
            "ours_ops_per_sec": o.mean, "ours_ops_ci_low": o.low, "ours_ops_ci_high": o.high,
            "peer_ops_per_sec": p.mean, "peer_ops_ci_low": p.low, "peer_ops_ci_high": p.high,
            "latency": self.latency,
            "ours_p50_us": avg(self.ours_p50_us), "ours_p99_us": avg(self.ours_p99_us),
            "peer_p50_us": avg(self.peer_p50_us), "peer_p99_us": avg(self.peer_p99_us),
            "aim": self.aim, "verdict": self.verdict(),
            "target_path": self.target_path, "target_fstype": self.target_fstype,
            "target_durability": self.target_durability,
        }

    def as_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary()}


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
            secs_per_test: int = 1, log=None) -> list[PairResult]:
    """Run the peers and our engine side by side on ``target_dir`` in ``rounds`` alternating rounds.

    fio pairs: ``entries`` writes of ``payload_bytes`` + 16 bytes per side and round with
    fdatasync after each, ``nosync_entries`` without (both calibrated to about
    ``SYNC_PAIR_S`` / ``NOSYNC_PAIR_S`` seconds when None), preallocated by ``prealloc`` on
    both sides.  pg_test_fsync pairs: its suite at ``secs_per_test``, against our ``always``
    with each matching method for ``secs_per_test`` seconds, 8 kB records at offset 0 of a
    zero-filled 16 MiB file.  ``log`` (a callable) hears progress.  Raises PeerMissing before
    running anything if a requested peer is not installed.
    """
    from .targets import describe, pick_directory
    from .trial import run_trial

    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if prealloc not in PREALLOC_TO_FIO:
        raise ValueError(f"unknown preallocation {prealloc!r}: use one of {', '.join(PREALLOC_TO_FIO)}")
    peers = list(dict.fromkeys(peers))
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

    fio_sync = fio_none = None
    if "fio" in paths:
        if entries is None:   # a short probe of ours sizes the runs, and warms the target up
            entries = calibrated_entries(trial("always", duration_s=0.2, payload_bytes=payload_bytes,
                                               prealloc=prealloc), SYNC_PAIR_S, 200, 200_000)
        if nosync_entries is None:
            nosync_entries = calibrated_entries(trial("none", duration_s=0.05, payload_bytes=payload_bytes),
                                                NOSYNC_PAIR_S, 5_000, 250_000)
        version = fio_version(paths["fio"])
        fio_sync = PairResult(
            pair="fio-fdatasync", peer="fio", peer_test="fio --rw=write --ioengine=sync --fdatasync=1 "
            + " ".join(PREALLOC_TO_FIO[prealloc]), ours=f"always, fdatasync, prealloc {prealloc}",
            strategy="always", sync_method="fdatasync", prealloc=prealloc, overwrite_offset0=False,
            block_bytes=block, entries=entries, seconds=None, latency="sync", aim="ours/fio >= 0.95",
            peer_command=fio_command(paths["fio"], "<file>", block, entries, True, prealloc), **base)
        fio_sync.peer_version = version
        fio_none = PairResult(
            pair="fio-nosync", peer="fio", peer_test="fio --rw=write --ioengine=sync "
            + " ".join(PREALLOC_TO_FIO[prealloc]), ours=f"none, prealloc {prealloc}",
            strategy="none", sync_method=None, prealloc=prealloc, overwrite_offset0=False,
            block_bytes=block, entries=nosync_entries, seconds=None, latency="write", aim="",
            peer_command=fio_command(paths["fio"], "<file>", block, nosync_entries, False, prealloc), **base)
        fio_none.peer_version = version
        fio_sync.notes.append("fio's iops counts writes; with --fdatasync=1 each write is followed by its sync, "
                              "so one op is write + sync on both sides")
        fio_none.notes.append("one op is one write() on both sides")
        fio_sync.notes.append("fio syncs after every write but the last when the size is a multiple of the "
                              "block size (n writes, n - 1 syncs): a 1/n advantage to fio")
        results += [fio_sync, fio_none]

    pg_pairs: dict[str, PairResult] = {}
    if "pg_test_fsync" in paths:
        if not isinstance(secs_per_test, int) or secs_per_test < 1:
            raise ValueError(f"secs_per_test must be a whole number of seconds >= 1, got {secs_per_test!r}")
        pg_entries = {m: calibrated_entries(trial("always", duration_s=0.2, sync_method=m, **PG_TRIAL),
                                            secs_per_test, 500, PG_MAX_FRAMED_BYTES // PG_BLOCK_BYTES)
                      for m in PG_METHODS.values()}
        for pg_name, ours_method in PG_METHODS.items():
            pr = PairResult(
                pair=f"pg-{pg_name}", peer="pg_test_fsync", peer_test=f"pg_test_fsync one 8kB write, {pg_name}",
                ours=f"always, {ours_method}, 8 kB at offset 0, zero-filled 16 MiB",
                strategy="always", sync_method=ours_method, prealloc="zero-fill", overwrite_offset0=True,
                block_bytes=PG_BLOCK_BYTES, entries=pg_entries[ours_method], seconds=float(secs_per_test),
                latency="sync",
                aim="ours within pg_test_fsync's 95% CI", peer_command=[paths["pg_test_fsync"], "-s",
                                                                         str(secs_per_test), "-f", "<file>"],
                **base)
            if pg_name.startswith("open_"):
                pr.notes.append("pg_test_fsync opens open_* files with O_DIRECT; we write through the page cache")
            pr.notes.append("pg_test_fsync reports a mean per test: no percentiles on its side")
            pr.notes.append(f"pg_test_fsync runs {secs_per_test} s per test; ours a count calibrated to about that "
                            "(records framed before timing)")
            pg_pairs[pg_name] = pr
        results += list(pg_pairs.values())

    for r in range(rounds):
        peer_first = r % 2 == 0
        order = "peer first" if peer_first else "ours first"
        say(f"round {r + 1}/{rounds} ({order})")
        if fio_sync is not None:
            for pr, sync in ((fio_sync, True), (fio_none, False)):
                def ours(pr=pr):
                    return trial(pr.strategy, entries=pr.entries, payload_bytes=payload_bytes, prealloc=prealloc)

                def peer(pr=pr, sync=sync):
                    return run_fio(directory, block, pr.entries, sync=sync, prealloc=prealloc, fio=paths["fio"])
                if peer_first:
                    got_peer, got_ours = peer(), ours()
                else:
                    got_ours, got_peer = ours(), peer()
                _record_fio(pr, order, got_ours, got_peer)
        if pg_pairs:
            def ours_pg():
                return {name: trial("always", entries=pg_pairs[name].entries, sync_method=m, **PG_TRIAL)
                        for name, m in PG_METHODS.items()}

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


def _record_fio(pr: PairResult, order: str, ours, fio: FioRun) -> None:
    if fio.writes != pr.entries:
        raise PeerFailed(f"fio wrote {fio.writes} blocks, expected {pr.entries}")
    pr.order.append(order)
    pr.ours_ops_per_sec.append(ours.ops_per_sec)
    pr.peer_ops_per_sec.append(fio.ops_per_sec)
    if pr.latency == "sync":
        pr.ours_p50_us.append(ours.sync_latency_us_p50)
        pr.ours_p99_us.append(ours.sync_latency_us_p99)
        pr.peer_p50_us.append(fio.sync_p(50))
        pr.peer_p99_us.append(fio.sync_p(99))
    else:   # none: an entry's ack latency is its write()
        pr.ours_p50_us.append(ours.ack_latency_us_p50)
        pr.ours_p99_us.append(ours.ack_latency_us_p99)
        pr.peer_p50_us.append(fio.write_p(50))
        pr.peer_p99_us.append(fio.write_p(99))
    pr.ours_syncs.append(ours.syncs)
    pr.peer_syncs.append(fio.syncs)


# -- the command line ----------------------------------------------------------------------------

def _fmt(v, nd: int = 0) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def _ci(e: Estimate, nd: int = 0) -> str:
    if e.mean is None:
        return "-"
    if e.low is None:
        return _fmt(e.mean, nd)
    return f"{_fmt(e.mean, nd)} [{_fmt(e.low, nd)}, {_fmt(e.high, nd)}]"


def format_results(results: list[PairResult]) -> str:
    from .cli import table
    rows = []
    for pr in results:
        s = pr.summary()
        nd = 1 if pr.latency == "write" else 0
        rows.append([pr.pair, _ci(pr.ratio(), 3), _ci(pr.ours_ops()), _ci(pr.peer_ops()), pr.latency,
                     f"{_fmt(s['ours_p50_us'], nd)} / {_fmt(s['peer_p50_us'], nd)}",
                     f"{_fmt(s['ours_p99_us'], nd)} / {_fmt(s['peer_p99_us'], nd)}", pr.verdict() or "-"])
    out = [table(rows, ["pair", "ours/peer ratio [95% CI]", "ours ops/sec [95% CI]", "peer ops/sec [95% CI]",
                        "latency", "p50 us ours / peer", "p99 us ours / peer", "aim"])]
    out.append("")
    for pr in results:
        size = f"{pr.entries:,} writes" + (f" (~{pr.seconds:g} s)" if pr.seconds else "")
        out.append(f"{pr.pair}: {pr.peer_test}  vs  {pr.ours}; {pr.block_bytes} B per write, {size} per side "
                   f"and round; aim: {pr.aim or 'none (for reference)'}")
        for n in pr.notes:
            out.append(f"    note: {n}")
    return "\n".join(out)


def cmd_compare(args) -> int:
    from .targets import describe, pick_directory
    peers = [p for group in (args.peers or ["fio,pg_test_fsync"]) for p in group.split(",") if p]
    directory = pick_directory(args.target, log=lambda m: print(m, file=sys.stderr))
    try:
        results = compare(directory, rounds=args.rounds, peers=peers, prealloc=args.prealloc,
                          payload_bytes=args.payload_bytes, entries=args.entries,
                          secs_per_test=args.secs_per_test,
                          log=None if args.json else (lambda m: print(m, file=sys.stderr)))
    except PeerMissing as e:
        other = [p for p in ("fio", "pg_test_fsync") if p != e.peer]
        print(f"error: {e}\n(or compare with the other peer only: --peers {other[0]})", file=sys.stderr)
        return 3
    except PeerFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        json.dump([pr.as_dict() for pr in results], sys.stdout, indent=2)
        print()
        return 0
    t = describe(directory)
    print(f"target: {t.path} ({t.fstype} on {t.block_device or t.source}), {t.durability}: {t.reason}")
    print(f"{args.rounds} rounds, peer and ours alternating first; ratio = geometric mean of per-round "
          "ours/peer, 95% t interval\n")
    print(format_results(results))
    return 0


def cmd_pgtest(args) -> int:
    from .pgtest import format_report, run_suite
    from .targets import pick_directory
    directory = pick_directory(args.target, log=lambda m: print(m, file=sys.stderr))
    report = run_suite(directory, secs_per_test=args.secs_per_test, trials=args.trials,
                       log=None if args.json else (lambda m: print(m, file=sys.stderr)))
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        print()
        return 0
    print(format_report(report))
    return 0


def register(subparsers) -> None:
    """Add the ``compare`` and ``pgtest`` commands to the CLI's subparsers."""
    from .strategies import PREALLOCATIONS
    c = subparsers.add_parser("compare", help="side by side with fio and pg_test_fsync on the same target")
    c.add_argument("--target", "--dir", dest="target", metavar="DIR",
                   help="target directory (default: $FSYNCSTUDY_DIR, else durable storage)")
    c.add_argument("--rounds", type=int, default=5, metavar="K", help="alternating rounds (default 5)")
    c.add_argument("--peers", action="append", metavar="NAMES",
                   help="fio and/or pg_test_fsync, comma separated (default: both)")
    c.add_argument("--prealloc", default="fallocate", choices=PREALLOCATIONS,
                   help="fio pairs' preallocation on both sides (default fallocate, fio's own default)")
    c.add_argument("--payload-bytes", type=int, default=128,
                   help="fio pairs: our payload; the block is 16 bytes more (default 128: 144-byte writes)")
    c.add_argument("--entries", type=int, help="fio sync pair: writes per side and round (default: ~0.5 s worth)")
    c.add_argument("--secs-per-test", type=int, default=1, metavar="S",
                   help="pg_test_fsync's -s, and our seconds per method (default 1)")
    c.add_argument("--json", action="store_true", help="every pair with its per-round values, as JSON")
    c.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("pgtest", help="pg_test_fsync's five sections, measured by fsyncstudy, with CIs")
    p.add_argument("--target", "--dir", dest="target", metavar="DIR",
                   help="target directory (default: $FSYNCSTUDY_DIR, else durable storage)")
    p.add_argument("--secs-per-test", type=float, default=5.0, metavar="S",
                   help="seconds per test, as pg_test_fsync's -s (default 5), split into --trials trials")
    p.add_argument("--trials", type=int, default=5, help="trials per test, run in rounds (default 5)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pgtest)


# -- a comparison dataset (what notebook 05 and the report read) ----------------------------------

ROUND_COLUMNS = ["target", "target_label", "pair", "peer", "round", "order", "side", "tool", "config", "ops_per_sec",
                 "us_per_op", "latency", "p50_us", "p99_us", "syncs", "block_bytes", "prealloc", "entries", "seconds",
                 "target_path", "target_fstype", "aim", "notes"]


def run_comparison(out, targets: list[str] | None = None, rounds: int = 5, peers=("fio", "pg_test_fsync"),
                   secs_per_test: int = 1, log=None) -> dict:
    """``compare`` on each target, into ``out/rounds.csv`` (one row per pair, round and side) and
    ``out/meta.json``; a target whose rows are there already is skipped (resume).  A peer that is
    not installed is recorded in meta.json with how to install it, and the other peer still runs."""
    from pathlib import Path

    from .sweep import TrialLog, default_targets, environment, read_rows, resolve_targets, target_label, \
        write_json_durably
    from .targets import describe

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dirs = resolve_targets(targets or default_targets())
    found, missing = {}, {}
    for p in peers:
        try:
            found.update(find_peers([p]))
        except PeerMissing as e:
            missing[p] = str(e)
    meta_path = out / "meta.json"
    meta = {"kind": "peers", "rounds": rounds, "peers": list(peers), "secs_per_test": secs_per_test,
            "targets": dirs, "missing_peers": missing,
            "target_descriptions": {d: describe(d).as_dict() for d in dirs}}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if any(old.get(k) != meta[k] for k in ("rounds", "peers", "secs_per_test", "targets")):
            raise ValueError(f"{out} holds a different comparison; choose another directory")
    else:
        meta["environment"] = environment()
        write_json_durably(meta_path, meta)
    path = out / "rounds.csv"
    done = {r["target"] for r in read_rows(path)} if path.exists() else set()
    rows_log = TrialLog(path, ROUND_COLUMNS)
    try:
        for d in dirs:
            if d in done or not found:
                continue
            t = describe(d)
            (log or (lambda m: None))(f"comparing on {d} ({t.fstype}) with {', '.join(found)}")
            results = compare(d, rounds=rounds, peers=list(found), secs_per_test=secs_per_test, log=log)
            by_pair = {pr.pair: pr for pr in results}
            for row in to_rows(results):
                pr = by_pair[row["pair"]]
                rows_log.append({**row, "target": d, "target_label": target_label(t), "aim": pr.aim,
                                 "notes": pr.notes})
    finally:
        rows_log.close()
    return meta


def load_comparison(dataset):
    """A comparison dataset as (rounds DataFrame, meta dict)."""
    from pathlib import Path

    import pandas as pd

    from .sweep import read_rows
    d = Path(dataset)
    meta = json.loads((d / "meta.json").read_text())
    df = pd.DataFrame(read_rows(d / "rounds.csv"), columns=ROUND_COLUMNS)
    for c in ("round", "ops_per_sec", "us_per_op", "p50_us", "p99_us", "syncs", "block_bytes", "entries", "seconds"):
        df[c] = pd.to_numeric(df[c].replace("", None), errors="coerce")
    return df, meta


def summarize_comparison(df):
    """Per target and pair: the ratio ours/peer (geometric mean of per-round ratios, 95% t interval),
    both sides' mean ops/sec with intervals, and mean p50/p99 over rounds."""
    import pandas as pd
    rows = []
    for (target, pair), g in df.groupby(["target", "pair"], sort=False):
        ours = g[g["side"] == "ours"].sort_values("round")
        peer = g[g["side"] == "peer"].sort_values("round")
        r = ratio_ci(list(ours["ops_per_sec"]), list(peer["ops_per_sec"]))
        o, p = mean_ci(list(ours["ops_per_sec"])), mean_ci([x for x in peer["ops_per_sec"] if x == x])
        rows.append({"target": target, "target_label": g["target_label"].iloc[0], "pair": pair,
                     "peer_test": peer["config"].iloc[0], "ours": ours["config"].iloc[0], "rounds": len(ours),
                     "ratio": r.mean, "ratio_low": r.low, "ratio_high": r.high,
                     "ours_ops": o.mean, "ours_low": o.low, "ours_high": o.high,
                     "peer_ops": p.mean, "peer_low": p.low, "peer_high": p.high,
                     "ours_p50_us": ours["p50_us"].mean(), "ours_p99_us": ours["p99_us"].mean(),
                     "peer_p50_us": peer["p50_us"].mean(), "peer_p99_us": peer["p99_us"].mean(),
                     "aim": g["aim"].iloc[0], "ci_method": "95% t interval over rounds (ratio: of log ratios)"})
    return pd.DataFrame(rows)
