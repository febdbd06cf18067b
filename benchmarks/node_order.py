"""Does the node order always < batch_10ms < none on every run, not just on average?

    python benchmarks/node_order.py [--dir DIR] [--runs 10] [--sizes 20,21,30,50,100,200,1000,5000,10000,100000]

One node process answers ``runs`` fsync_benchmark requests for each entry count (the counts
interleaved), each for ["always", "batch_10ms", "none"]. It prints, per count, how many replies
were misordered and the smallest none/batch_10ms margin. Exit status 1 if any reply was
misordered or an error. Large counts take long: 100,000 `always` entries are about 12 s here.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="target directory (default: as the node picks it)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--sizes", default="20,21,30,50,100,200,1000,5000,10000,100000")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    msgs = [{"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}}]
    entries_of = {}
    for _ in range(args.runs):
        for n in sizes:
            msg_id = len(msgs) + 1
            entries_of[msg_id] = n
            msgs.append({"src": "c1", "dest": "n1", "body": {"type": "fsync_benchmark", "msg_id": msg_id,
                                                             "entries": n,
                                                             "strategies": ["always", "batch_10ms", "none"]}})
    cmd = [sys.executable, "-m", "fsyncstudy.node"] + (["--dir", args.dir] if args.dir else [])
    t = time.monotonic()
    p = subprocess.run(cmd, input="".join(json.dumps(m) + "\n" for m in msgs), capture_output=True, text=True,
                       cwd=REPO)
    bad = {n: 0 for n in sizes}
    margin = {n: float("inf") for n in sizes}
    replies = [json.loads(line)["body"] for line in p.stdout.splitlines()[1:]]
    for body in replies:
        n = entries_of[body["in_reply_to"]]
        if body["type"] != "fsync_benchmark_ok":
            bad[n] += 1
            print(f"{n} entries: {body}", file=sys.stderr)
            continue
        always, batch, none = (r["ops_per_sec"] for r in body["results"])
        if not always < batch < none:
            bad[n] += 1
            print(f"{n} entries: misordered always {always:,.0f}, batch_10ms {batch:,.0f}, none {none:,.0f}",
                  file=sys.stderr)
        margin[n] = min(margin[n], none / batch)
    print(f"{len(replies)} replies of {len(msgs) - 1} requests in {time.monotonic() - t:.0f} s")
    for n in sizes:
        print(f"{n:>9,} entries: {args.runs} runs, {bad[n]} misordered, smallest none/batch_10ms {margin[n]:.3f}")
    return 0 if len(replies) == len(msgs) - 1 and not any(bad.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
