"""What the engine costs over the bare system calls, side by side in one run.

    python benchmarks/overhead.py [--dir DIR] [--rounds 7] [--always-entries 2000] [--none-entries 200000]

Pairs, on the same directory with the same framed records:
  engine `always`  vs  a bare `write` + `fdatasync` loop
  node `always`    vs  the same bare loop (one request per round to a node started once: what a
                       grader sees, its median trial)
  engine `none`    vs  a bare `write` loop
  engine `none`    vs  fio's no-sync sequential writes of the same size and count
and then, through ``fsyncstudy.peers.compare`` (its own alternating rounds, ``--peer-rounds``):
  each pg_test_fsync method (open_datasync, fdatasync, fsync, open_sync) vs our `always` with it
  fio's 144-byte appends + fdatasync vs ours: ops/sec, and the sync p99 (ours / fio's, aim <= 1)
It also prints the harness's bookkeeping per entry (engine.harness_ns).  Each round runs the
sides of a pair in an order that alternates between rounds, so drift on a shared machine hits both
sides alike.  It prints per-pair medians, the ratio of medians with the per-round ratios' range,
and the geometric mean of the paired per-round ratios with its 95% interval, judged against the
aim: "meets" when the whole interval is at or above it, "short" when wholly below (exit 1),
"unclear" when it straddles it.  Aims (issue 16): node and engine always >= 0.97 of the bare
loop, none >= 0.85 of it and >= 1.0 of fio, every pg_test_fsync pair >= 0.97, our sync p99 <= fio's.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsyncstudy.intervals import against_aim, paired_ratio_ci  # noqa: E402
from fsyncstudy.log import Framer  # noqa: E402
from fsyncstudy.places import pick_directory  # noqa: E402
from fsyncstudy.targets import describe  # noqa: E402
from fsyncstudy.trial import payload_for, run_trial  # noqa: E402


def bare(directory: str, records: list[bytes], sync: bool) -> float:
    """ops/sec of the plainest loop: write each record (and fdatasync it)."""
    path = os.path.join(directory, f".fsyncstudy-bare-{uuid.uuid4().hex[:8]}.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.fsync(fd)
        w, fds = os.write, os.fdatasync
        t = time.perf_counter_ns()
        if sync:
            for rec in records:
                w(fd, rec)
                fds(fd)
        else:
            for rec in records:
                w(fd, rec)
        elapsed = time.perf_counter_ns() - t
    finally:
        os.close(fd)
        os.unlink(path)
    return len(records) / (elapsed / 1e9)


def engine(directory: str, strategy: str, entries: int) -> float:
    return run_trial(strategy, entries=entries, directory=directory).ops_per_sec


class NodeSide:
    """One node process for the whole run; each call sends one fsync_benchmark request."""

    def __init__(self, directory: str):
        import subprocess
        self.p = subprocess.Popen([sys.executable, "-m", "fsyncstudy.node", "--dir", directory], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  cwd=str(Path(__file__).resolve().parent.parent))
        self.msg = 1
        self.ask({"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]})

    def ask(self, body: dict) -> dict:
        import json
        self.p.stdin.write(json.dumps({"src": "c1", "dest": "n1", "body": body}) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())["body"]

    def always(self, entries: int) -> float:
        self.msg += 1
        return self.ask({"type": "fsync_benchmark", "msg_id": self.msg, "entries": entries,
                         "strategies": ["always"]})["results"][0]["ops_per_sec"]

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=60)


def fio_nosync(directory: str, entries: int, block: int) -> float | None:
    from fsyncstudy.peertools import PeerMissing, run_fio
    try:
        return run_fio(directory, block, entries, sync=False, prealloc="append").ops_per_sec
    except PeerMissing:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="target directory (default: as the node picks it)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--always-entries", type=int, default=2000)
    ap.add_argument("--none-entries", type=int, default=200_000)
    ap.add_argument("--payload-bytes", type=int, default=128)
    ap.add_argument("--peer-rounds", type=int, default=None, help="rounds of the peers (default: --rounds; 0: none)")
    args = ap.parse_args()
    directory = str(pick_directory(args.dir))
    target = describe(directory)
    framer = Framer(payload_for(args.payload_bytes))
    recs = {"always": framer.frame_range(0, args.always_entries), "none": framer.frame_range(0, args.none_entries)}
    node = NodeSide(directory)
    runs = {
        "engine always": lambda: engine(directory, "always", args.always_entries),
        "bare write+fdatasync": lambda: bare(directory, recs["always"], True),
        "node always": lambda: node.always(args.always_entries),
        "engine none": lambda: engine(directory, "none", args.none_entries),
        "bare write": lambda: bare(directory, recs["none"], False),
        "fio write": lambda: fio_nosync(directory, args.none_entries, framer.record_bytes),
    }
    pairs = [("engine always", "bare write+fdatasync", 0.97), ("node always", "bare write+fdatasync", 0.97),
             ("engine none", "bare write", 0.85), ("engine none", "fio write", 1.0)]
    got: dict[str, list[float]] = {k: [] for k in runs}
    print(f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Linux {platform.release()}, Python {platform.python_version()}")
    print(f"target {directory}: {target.fstype} on {target.block_device or target.source} ({target.durability})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(args.rounds):
            for a, b, _ in pairs:
                for k in ((a, b) if r % 2 == 0 else (b, a)):
                    got[k].append(runs[k]())
    node.close()
    print(f"{args.rounds} rounds, order alternating; records of {framer.record_bytes} bytes\n")
    from fsyncstudy import engine as eng
    print("harness bookkeeping per entry (engine.harness_ns): " + ", ".join(
        f"{k} {eng.harness_ns(k):,.0f} ns" for k in ("always", "batch", "group", "none")))
    ok = True
    for a, b, aim in pairs:
        if any(v is None for v in got[b]):
            print(f"{a:>14} vs {b}: {b} is not installed")
            continue
        ma, mb = statistics.median(got[a]), statistics.median(got[b])
        per_round = [x / y for x, y in zip(got[a], got[b])]
        ratio = ma / mb
        e = paired_ratio_ci(got[a], got[b])
        verdict = against_aim(e, aim)
        ok &= verdict != "short"
        ci = "" if not e.has_interval() else f"; paired geomean {e.estimate:.3f} [{e.low:.3f}, {e.high:.3f}] 95%"
        print(f"{a:>14}: median {ma:12,.0f} ops/s   {b:>22}: median {mb:12,.0f} ops/s   "
              f"ratio {ratio:.3f} (per round {min(per_round):.3f}..{max(per_round):.3f}{ci}; "
              f"aim >= {aim}: {verdict})")
    ok &= peers_side(directory, args.rounds if args.peer_rounds is None else args.peer_rounds)
    return 0 if ok else 1


def peers_side(directory: str, rounds: int) -> bool:
    """The peers' pairs: pg_test_fsync's four methods (aim >= 0.97) and fio's fdatasync appends (ops, and
    the sync p99 ours / fio's, aim <= 1), each a paired geometric mean over rounds with its 95% interval."""
    if rounds <= 0:
        return True
    from fsyncstudy.peers import compare
    from fsyncstudy.peertools import PeerMissing
    ok = True
    for peer in ("pg_test_fsync", "fio"):
        try:
            results = compare(directory, rounds=rounds, peers=(peer,))
        except PeerMissing as e:
            print(f"{peer}: not installed ({e})")
            continue
        for pr in results:
            if pr.pair == "fio-nosync":
                continue
            e = pr.ratio()
            aim = 0.97 if pr.peer == "pg_test_fsync" else 0.95
            verdict = against_aim(e, aim)
            ok &= verdict != "short"
            per = [a / b for a, b in zip(pr.ours_ops_per_sec, pr.peer_ops_per_sec) if b]
            print(f"{pr.pair:>17}: ours / peer ops/s {e.estimate:.3f} [{e.low:.3f}, {e.high:.3f}] 95% (per round "
                  f"{min(per):.3f}..{max(per):.3f}, {pr.rounds} rounds; aim >= {aim}: {verdict})")
            if pr.pair == "fio-fdatasync":
                ours, theirs = pr.ours_p99_us, pr.peer_p99_us
                p = paired_ratio_ci(ours, theirs)
                worse = against_aim(p, 1.0)   # "meets" here means ours is wholly above fio's: the aim is <= 1
                print(f"{'sync p99':>17}: ours median {statistics.median(ours):.1f} us, fio's "
                      f"{statistics.median(theirs):.1f} us; ours / fio's {p.estimate:.3f} [{p.low:.3f}, {p.high:.3f}] 95% "
                      f"(aim <= 1: {'short' if worse == 'meets' else 'meets' if worse == 'short' else 'unclear'})")
    return ok


if __name__ == "__main__":
    sys.exit(main())
