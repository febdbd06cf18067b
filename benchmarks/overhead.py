"""What the engine costs over the bare system calls, side by side in one run.

    python benchmarks/overhead.py [--dir DIR] [--rounds 7] [--always-entries 2000] [--none-entries 200000]

Pairs, on the same directory with the same framed records:
  engine `always`  vs  a bare `write` + `fdatasync` loop
  engine `none`    vs  a bare `write` loop
Each round runs the four in an order that alternates between rounds (A B B A / B A A B),
so drift on a shared machine hits both sides alike.  It prints per-pair medians and the
ratio of medians (engine / bare) with the per-round ratios' range.  Aim: always >= 0.97,
none >= 0.7.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="target directory (default: as the node picks it)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--always-entries", type=int, default=2000)
    ap.add_argument("--none-entries", type=int, default=200_000)
    ap.add_argument("--payload-bytes", type=int, default=128)
    args = ap.parse_args()
    directory = str(pick_directory(args.dir))
    target = describe(directory)
    framer = Framer(payload_for(args.payload_bytes))
    recs = {"always": framer.frame_range(0, args.always_entries), "none": framer.frame_range(0, args.none_entries)}
    runs = {
        "engine always": lambda: engine(directory, "always", args.always_entries),
        "bare write+fdatasync": lambda: bare(directory, recs["always"], True),
        "engine none": lambda: engine(directory, "none", args.none_entries),
        "bare write": lambda: bare(directory, recs["none"], False),
    }
    pairs = [("engine always", "bare write+fdatasync", 0.97), ("engine none", "bare write", 0.7)]
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
    print(f"{args.rounds} rounds, order alternating; records of {framer.record_bytes} bytes\n")
    ok = True
    for a, b, aim in pairs:
        ma, mb = statistics.median(got[a]), statistics.median(got[b])
        per_round = [x / y for x, y in zip(got[a], got[b])]
        ratio = ma / mb
        ok &= ratio >= aim
        print(f"{a:>14}: median {ma:12,.0f} ops/s   {b:>22}: median {mb:12,.0f} ops/s   "
              f"ratio {ratio:.3f} (per round {min(per_round):.3f}..{max(per_round):.3f}; aim >= {aim})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
