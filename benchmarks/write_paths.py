"""Each write path (docs/strategies.md#write-paths) beside the plain path it changes, in one run.

    python benchmarks/write_paths.py [--dir DIR ...] [--rounds 5] [--duration 0.5]

Groups, each a baseline and the paths that replace it (same strategy, same writers):
  always (1 writer):   fdatasync | rwf_dsync | direct_dsync | fdatasync + 1 MiB segments
  group_0ms (4 writers): fdatasync | rwf_dsync | direct_dsync
  batch_10ms:          per-entry | buffered | per-entry + bytes_per_sync 1 MiB
  none:                per-entry | buffered | per-entry + 1 MiB segments
Every configuration runs once per round, the order alternating between rounds (forward, backward), so
drift on a shared machine hits them alike.  It prints each configuration's median ops/sec and median
ack p99 over the rounds (with their range), and the median of the per-round ratios to the group's
baseline.  Default directories: the durable default (as bench), and /dev/shm where writable; a path a
directory refuses is printed with its one-line reason.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsyncstudy.places import pick_directory  # noqa: E402
from fsyncstudy.targets import describe  # noqa: E402
from fsyncstudy.trial import run_trial  # noqa: E402

MIB = 1 << 20
GROUPS = {
    "always": [("fdatasync", {}), ("rwf_dsync", {"sync_method": "rwf_dsync"}),
               ("direct_dsync", {"sync_method": "direct_dsync"}), ("segments 1 MiB", {"segment_bytes": MIB})],
    "group_0ms": [("fdatasync", {}), ("rwf_dsync", {"sync_method": "rwf_dsync"}),
                  ("direct_dsync", {"sync_method": "direct_dsync"})],
    "batch_10ms": [("per-entry", {}), ("buffered", {"write_mode": "buffered"}),
                   ("bytes_per_sync 1 MiB", {"bytes_per_sync": MIB})],
    "none": [("per-entry", {}), ("buffered", {"write_mode": "buffered"}), ("segments 1 MiB", {"segment_bytes": MIB})],
}
WRITERS = {"group_0ms": 4}


def configs():
    return [(st, label, opts) for st, rows in GROUPS.items() for label, opts in rows]


def one_round(directory: str, order, duration: float, refused: dict) -> dict:
    out = {}
    for st, label, opts in order:
        if (st, label) in refused:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = run_trial(st, duration_s=duration, directory=directory, writers=WRITERS.get(st, 1), **opts)
        except (OSError, ValueError) as e:
            refused[(st, label)] = " ".join(str(e).split())
            continue
        out[(st, label)] = (r.ops_per_sec, r.ack_latency_us_p99)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", action="append", help="a target directory; repeat (default: the durable default and /dev/shm)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=0.5, help="seconds per trial (default 0.5)")
    args = ap.parse_args()
    dirs = args.dir or [str(pick_directory())] + (["/dev/shm"] if os.access("/dev/shm", os.W_OK) else [])
    print(f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}; "
          f"{args.rounds} rounds, order alternating, {args.duration:g} s a trial; records of 144 bytes")
    for d in dirs:
        t = describe(d)
        print(f"\n{d}: {t.fstype} ({t.durability})")
        refused: dict = {}
        rounds = []
        for k in range(args.rounds):
            order = configs() if k % 2 == 0 else configs()[::-1]
            rounds.append(one_round(d, order, args.duration, refused))
        for st, rows in GROUPS.items():
            base = (st, rows[0][0])
            for label, _ in rows:
                key = (st, label)
                if key in refused:
                    print(f"  {st:<11} {label:<22} refused: {refused[key]}")
                    continue
                ops = [r[key][0] for r in rounds if key in r]
                p99 = [r[key][1] for r in rounds if key in r]
                ratio = [r[key][0] / r[base][0] for r in rounds if key in r and base in r]
                print(f"  {st:<11} {label:<22} ops/s median {statistics.median(ops):>11,.0f} "
                      f"[{min(ops):,.0f}..{max(ops):,.0f}]  ack p99 median {statistics.median(p99):>9,.1f} us "
                      f"[{min(p99):,.1f}..{max(p99):,.1f}]  vs {rows[0][0]}: {statistics.median(ratio):.2f}x"
                      if ratio else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
