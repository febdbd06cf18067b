"""Median time from starting `python -m fsyncstudy.node` to reading its init_ok.

    python benchmarks/startup.py [--runs 21]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INIT = json.dumps({"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1",
                                                        "node_ids": ["n1"]}}) + "\n"


def once() -> float:
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "fsyncstudy.node"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, cwd=REPO, text=True)
    p.stdin.write(INIT)
    p.stdin.flush()
    line = p.stdout.readline()
    elapsed = time.perf_counter() - t
    p.stdin.close()
    p.wait()
    assert json.loads(line)["body"]["type"] == "init_ok", line
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    once()  # warm the page cache for the interpreter and the package
    times = sorted(once() for _ in range(args.runs))
    print(f"start-up to init_ok over {args.runs} runs: median {statistics.median(times) * 1000:.1f} ms, "
          f"min {times[0] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
