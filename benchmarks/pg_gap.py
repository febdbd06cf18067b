"""Where the gap to pg_test_fsync comes from: the interpreter or the engine, side by side in one run.

    python benchmarks/pg_gap.py [--dir DIR] [--rounds 5] [--entries N]

Three sides, all doing pg_test_fsync's "one 8kB write" fdatasync test (8 kB written at offset 0
of a zero-filled 16 MiB file, fdatasync after each write):
  pg_test_fsync   its own figure for that test (it runs its whole suite, -s 1, each round)
  engine          run_trial("always", sync_method="fdatasync", ...) as `compare` runs it
  bare loop       the plainest Python loop: os.pwrite(fd, block, 0); os.fdatasync(fd)
Each round runs the three in an order that rotates between rounds, so drift on a shared
machine hits all alike.  It prints each side's median and the ratios of medians with the
per-round ratios' range.  If the bare loop is as far from pg_test_fsync as the engine is,
the gap is Python's per-call cost, not the engine's.
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

from fsyncstudy.peers import PG_BLOCK_BYTES, PG_FILE_BYTES, PG_TRIAL  # noqa: E402
from fsyncstudy.peertools import find_pg_test_fsync, run_pg_test_fsync  # noqa: E402
from fsyncstudy.places import pick_directory  # noqa: E402
from fsyncstudy.targets import describe  # noqa: E402
from fsyncstudy.trial import run_trial  # noqa: E402


def bare(directory: str, entries: int) -> float:
    """ops/sec of pwrite(8 kB at offset 0) + fdatasync on a zero-filled, synced 16 MiB file."""
    path = os.path.join(directory, f".fsyncstudy-pggap-{uuid.uuid4().hex[:8]}.log")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        zeros = bytes(1 << 20)
        for _ in range(PG_FILE_BYTES >> 20):
            os.write(fd, zeros)
        os.fsync(fd)
        block, pw, fds = os.urandom(PG_BLOCK_BYTES), os.pwrite, os.fdatasync
        t = time.perf_counter_ns()
        for _ in range(entries):
            pw(fd, block, 0)
            fds(fd)
        elapsed = time.perf_counter_ns() - t
    finally:
        os.close(fd)
        os.unlink(path)
    return entries / (elapsed / 1e9)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="target directory (default: as the node picks it)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--entries", type=int, default=8000, help="ops per round for the engine and the bare loop")
    args = ap.parse_args()
    exe = find_pg_test_fsync()  # says how to install it when it is missing
    directory = str(pick_directory(args.dir))
    target = describe(directory)
    runs = {
        "pg_test_fsync": lambda: run_pg_test_fsync(directory, 1, exe).get(1, "fdatasync").ops_per_sec,
        "engine": lambda: run_trial("always", entries=args.entries, directory=directory, sync_method="fdatasync",
                                    **PG_TRIAL).ops_per_sec,
        "bare loop": lambda: bare(directory, args.entries),
    }
    names = list(runs)
    got: dict[str, list[float]] = {k: [] for k in runs}
    print(f"{platform.node()}: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
          f"Python {platform.python_version()}")
    print(f"target {directory}: {target.fstype} on {target.block_device or target.source} ({target.durability})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(args.rounds):
            order = names[r % 3:] + names[:r % 3]
            print(f"round {r + 1}/{args.rounds}: {', '.join(order)}", file=sys.stderr)
            for k in order:
                got[k].append(runs[k]())
    print(f"{args.rounds} rounds, order rotating; pg_test_fsync -s 1 (its whole suite) against "
          f"{args.entries} ops per round on our sides\n")
    for k in names:
        print(f"{k:>14}: median {statistics.median(got[k]):9,.0f} ops/s  (rounds: "
              + ", ".join(f"{x:,.0f}" for x in got[k]) + ")")
    print()
    for a, b in (("engine", "pg_test_fsync"), ("bare loop", "pg_test_fsync"), ("engine", "bare loop")):
        per_round = [x / y for x, y in zip(got[a], got[b])]
        print(f"{a + ' / ' + b:>28}: {statistics.median(got[a]) / statistics.median(got[b]):.3f} "
              f"(per round {min(per_round):.3f}..{max(per_round):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
