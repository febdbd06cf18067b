"""How the estimates move with trial length: the measurement the profiles' trial rule rests on.

For each target (the host disk's filesystem and one lab filesystem, lab:ext4), each strategy
(always, batch_10ms, none) and each trial length (0.25, 0.5, 1, 2, 4 s), this runs ``--rounds``
trials in shuffled rounds, and prints per cell: the median ops/sec and its ratio to the 4 s trials'
median, the spread between trials (sd of log ops/sec), the median p99 ack latency against the 4 s
median, and how many entries a trial held (a p99 of fewer than 100 entries is the maximum).

    python benchmarks/trial_length.py [--dir build] [--rounds 5] [--lengths 0.25,0.5,1,2,4] [--no-lab]

About 4 minutes at the defaults (2 targets x 3 strategies x 7.75 s x 5 rounds); needs root for the
lab (without it, or with --no-lab, only the host disk).
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsyncstudy.trial import run_trial  # noqa: E402

STRATEGIES = ("always", "batch_10ms", "none")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="build", help="a directory on the host disk (default build)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--lengths", default="0.25,0.5,1,2,4")
    ap.add_argument("--no-lab", action="store_true", help="only the host disk")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    lengths = [float(x) for x in a.lengths.split(",")]
    os.makedirs(a.dir, exist_ok=True)
    targets = {"host disk": os.path.abspath(a.dir)}
    lab = None
    if not a.no_lab and os.geteuid() == 0:
        from fsyncstudy.lab import Lab
        lab = Lab(os.path.join(os.path.abspath(a.dir), "lab-trial-length"), targets=["ext4"])
        lab.__enter__()
        if "lab:ext4" in lab.available():
            targets["lab:ext4"] = str(lab.directory("lab:ext4"))
    try:
        return run(targets, lengths, a.rounds, a.seed)
    finally:
        if lab is not None:
            lab.__exit__(None, None, None)


def run(targets: dict, lengths: list[float], rounds: int, seed: int) -> int:
    cells = [(t, s, L) for t in targets for s in STRATEGIES for L in lengths]
    got: dict = {c: [] for c in cells}
    t0 = time.monotonic()
    for r in range(rounds):
        order = list(cells)
        random.Random(f"{seed}/{r}").shuffle(order)
        for c in order:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got[c].append(run_trial(c[1], duration_s=c[2], directory=targets[c[0]]))
        print(f"round {r + 1}/{rounds} done ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    longest = max(lengths)
    print(f"{rounds} rounds, {time.monotonic() - t0:.0f} s; ratios are against the {longest:g} s trials' medians")
    print(f"{'target':10s} {'strategy':10s} {'len s':>5s} {'ops/s':>10s} {'x long':>7s} {'sd log':>7s} "
          f"{'p99 us':>9s} {'x long':>7s} {'entries':>9s} {'syncs':>6s}")
    for t in targets:
        for s in STRATEGIES:
            ref = got[(t, s, longest)]
            ref_ops = statistics.median(x.ops_per_sec for x in ref)
            ref_p99 = statistics.median(x.ack_latency_us_p99 for x in ref)
            for L in lengths:
                rs = got[(t, s, L)]
                ops = statistics.median(x.ops_per_sec for x in rs)
                sd = statistics.stdev(math.log(x.ops_per_sec) for x in rs) if len(rs) > 1 else float("nan")
                p99 = statistics.median(x.ack_latency_us_p99 for x in rs)
                print(f"{t:10s} {s:10s} {L:5g} {ops:10,.0f} {ops / ref_ops:7.3f} {sd:7.3f} {p99:9.1f} "
                      f"{p99 / ref_p99:7.3f} {statistics.median(x.entries for x in rs):9,.0f} "
                      f"{statistics.median(x.syncs for x in rs):6,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
