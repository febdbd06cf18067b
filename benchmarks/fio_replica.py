"""Our `always` beside fio and beside two C replicas of the same loop, for ops/sec and the sync p99.

    python benchmarks/fio_replica.py [--dir DIR] [--rounds 24] [--writes 3000]

The ``fio-fdatasync`` pair of ``compare`` sets our 144-byte appends + fdatasync against fio's.  When
the ratio or the p99 differs, is it our loop, our file, or fio?  Four sides, in rounds whose order
rotates (and reverses every fourth round), each writing ``--writes`` 144-byte records on a file
preallocated with fallocate:

  C, our file     a C loop of write + fdatasync, on a file made as ``LogFile`` makes it (fallocate,
                  then the file and its directory synced before timing)
  C, fio's file   the same C loop on a file made as fio makes it (fallocate, nothing synced)
  fio             fio itself (``peertools.run_fio``, as ``compare`` runs it)
  engine          ``run_trial("always", prealloc="fallocate")``

Each C loop times each fdatasync as fio does.  It prints each side's medians and the paired
per-round ratios (geometric mean, 95% interval) of ops/sec and of the sync p99.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cc import compile_c  # noqa: E402

from fsyncstudy.intervals import paired_ratio_ci  # noqa: E402
from fsyncstudy.peertools import PeerMissing, find_peers, run_fio  # noqa: E402
from fsyncstudy.places import pick_directory  # noqa: E402
from fsyncstudy.targets import describe  # noqa: E402
from fsyncstudy.trial import run_trial  # noqa: E402

C_SOURCE = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static long long ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                            return t.tv_sec * 1000000000LL + t.tv_nsec; }
static int cmp(const void *a, const void *b) { long long x = *(const long long *)a, y = *(const long long *)b;
                                               return x < y ? -1 : x > y; }
/* replica PATH WRITES ours|fio: prints ops/sec and the sync p99 in us */
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    const char *path = argv[1]; long n = atol(argv[2]); int ours = !strcmp(argv[3], "ours");
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    if (fd < 0 || n < 1) { perror("open"); return 1; }
    if (fallocate(fd, 0, 0, (off_t)n * 144)) { perror("fallocate"); unlink(path); return 1; }
    if (ours) {   /* as LogFile: the file and its name durable before timing */
        char d[4096]; snprintf(d, sizeof d, "%s", path);
        int dfd = open(dirname(d), O_RDONLY);
        fsync(fd); if (dfd >= 0) { fsync(dfd); close(dfd); }
    }
    char buf[144]; memset(buf, 7, sizeof buf);
    long long *lat = malloc(n * sizeof *lat), t0 = ns();
    for (long i = 0; i < n; i++) {
        if (write(fd, buf, 144) != 144) { perror("write"); unlink(path); return 1; }
        long long a = ns(); fdatasync(fd); lat[i] = ns() - a;
    }
    long long el = ns() - t0;
    close(fd); unlink(path);
    qsort(lat, n, sizeof *lat, cmp);
    printf("%.1f %.2f\n", n / (el / 1e9), lat[(long)(0.99 * (n - 1))] / 1e3);
    return 0;
}
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="target directory (default: durable storage, as the node picks it)")
    ap.add_argument("--rounds", type=int, default=24)
    ap.add_argument("--writes", type=int, default=3000, help="144-byte writes per side and round (default 3000)")
    args = ap.parse_args(argv)
    if args.rounds < 2 or args.writes < 100:
        ap.error("--rounds must be >= 2 and --writes >= 100")
    try:
        fio = find_peers(["fio"])["fio"]
    except PeerMissing as e:   # says which apt-get line installs it
        sys.exit(str(e))
    directory = os.fspath(pick_directory(args.dir))
    target = describe(directory)
    print(f"{platform.node()}, kernel {platform.release()}, Python {platform.python_version()}; {directory} on "
          f"{target.fstype} ({target.durability}); {args.rounds} rounds of {args.writes} writes per side")
    with tempfile.TemporaryDirectory(prefix="fsyncstudy-fioreplica-") as work:
        replica = compile_c(C_SOURCE, work, "replica")

        def c(mode: str):
            path = os.path.join(directory, f".fsyncstudy-replica-{uuid.uuid4().hex[:8]}.log")
            out = subprocess.run([replica, path, str(args.writes), mode], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"the C replica failed: {out.stderr.strip()}")
            ops, p99 = out.stdout.split()
            return float(ops), float(p99)

        def fio_side():
            r = run_fio(directory, 144, args.writes, sync=True, prealloc="fallocate", fio=fio)
            return r.ops_per_sec, r.sync_lat_us["99.000000"]

        def engine_side():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = run_trial("always", entries=args.writes, directory=directory, prealloc="fallocate",
                              payload_bytes=128, target=target)
            return r.ops_per_sec, r.sync_latency_us_p99

        sides = {"C, our file": lambda: c("ours"), "C, fio's file": lambda: c("fio"), "fio": fio_side,
                 "engine": engine_side}
        names = list(sides)
        got = {k: [] for k in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            if (r // len(names)) % 2:
                order.reverse()
            for k in order:
                got[k].append(sides[k]())
    for k in names:
        print(f"  {k:14s} median {statistics.median(v[0] for v in got[k]):9,.0f} ops/s, "
              f"sync p99 {statistics.median(v[1] for v in got[k]):6.1f} us")
    for a, b in (("engine", "fio"), ("engine", "C, our file"), ("C, our file", "C, fio's file"),
                 ("C, fio's file", "fio")):
        ops = paired_ratio_ci([v[0] for v in got[a]], [v[0] for v in got[b]])
        p99 = paired_ratio_ci([v[1] for v in got[a]], [v[1] for v in got[b]])
        print(f"  {a} / {b}: ops {ops.estimate:.3f} ({ops.low:.3f}-{ops.high:.3f}), "
              f"sync p99 {p99.estimate:.3f} ({p99.low:.3f}-{p99.high:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
