"""Does the run that comes first after a peer pay for what the peer left behind?

    python benchmarks/position.py [--dir DIR] [--rounds 12] [--after pg_test_fsync|file|nothing]

``compare`` alternates which side of a pair runs first, so a cost paid by whoever runs first would
cancel on average but widen every interval, and with few rounds it could lean one way.  This checks
for such a cost directly: each round runs the predecessor, then the same C loop twice (144-byte
appends + fdatasync, ``fio_replica.py``'s replica on a file made as ours is), and prints the first
run over the second (geometric mean of the per-round ratios, 95% interval), for ops/sec and the
sync p99.  Predecessors: pg_test_fsync's whole suite at -s 1 (what precedes a pair inside
``compare``), a 16 MiB file written, synced and removed (what each of our pg trials leaves), or
nothing.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cc import compile_c  # noqa: E402
from fio_replica import C_SOURCE  # noqa: E402

from fsyncstudy.intervals import paired_ratio_ci  # noqa: E402
from fsyncstudy.peertools import PeerMissing, find_peers  # noqa: E402
from fsyncstudy.places import pick_directory  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="target directory (default: durable storage, as the node picks it)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--writes", type=int, default=3000)
    ap.add_argument("--after", choices=("pg_test_fsync", "file", "nothing"), default="pg_test_fsync")
    args = ap.parse_args(argv)
    if args.rounds < 2 or args.writes < 100:
        ap.error("--rounds must be >= 2 and --writes >= 100")
    pg = None
    if args.after == "pg_test_fsync":
        try:
            pg = find_peers(["pg_test_fsync"])["pg_test_fsync"]
        except PeerMissing as e:
            sys.exit(str(e))
    directory = os.fspath(pick_directory(args.dir))

    def name() -> str:
        return os.path.join(directory, f".fsyncstudy-position-{uuid.uuid4().hex[:8]}.log")

    with tempfile.TemporaryDirectory(prefix="fsyncstudy-position-") as work:
        replica = compile_c(C_SOURCE, work, "replica")

        def run():
            out = subprocess.run([replica, name(), str(args.writes), "ours"], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"the C replica failed: {out.stderr.strip()}")
            ops, p99 = out.stdout.split()
            return float(ops), float(p99)

        def predecessor():
            if pg:
                path = name()
                try:
                    subprocess.run([pg, "-s", "1", "-f", path], capture_output=True, check=True)
                finally:
                    if os.path.exists(path):
                        os.unlink(path)
            elif args.after == "file":
                path = name()
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    for _ in range(256):
                        os.write(fd, bytes(64 << 10))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                    os.unlink(path)

        first, second = [], []
        for _ in range(args.rounds):
            predecessor()
            first.append(run())
            second.append(run())
    ops = paired_ratio_ci([f[0] for f in first], [s[0] for s in second])
    p99 = paired_ratio_ci([f[1] for f in first], [s[1] for s in second])
    print(f"after {args.after}, {args.rounds} rounds in {directory}: first run / second run "
          f"ops {ops.estimate:.3f} ({ops.low:.3f}-{ops.high:.3f}), sync p99 {p99.estimate:.3f} ({p99.low:.3f}-{p99.high:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
