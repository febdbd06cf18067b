"""What the engine's loop costs beside the same system calls made from C, on one open file.

    python benchmarks/loop_cost.py [--dir DIR] [--cycles 300] [--block 100] [--cases pg-fdatasync,append]

Whole trials, run in alternating rounds, swing by 15-30% from round to round on a shared virtual
disk, which hides a loop's cost of a few percent.  So this runs three loops on *one* open log,
in blocks of ``--block`` operations, in a shuffled order within each cycle:

  C        the calls from C: a loop compiled with ``cc`` at start and called through ctypes,
           so it runs in this process, on the same file descriptor, from one hot buffer
  python   the plainest Python loop of the same calls (os.pwrite / os.write, then the sync)
  engine   the engine's own loop (``engine.run_always``) with its framed records and timing

Each side's ops/sec in a block is divided by the C loop's in the same cycle, and the per-cycle
ratios give a geometric mean with a 95% interval (``intervals.paired_ratio_ci``).  Disk drift
slower than a cycle (a few tens of ms) hits all three alike and cancels.

Cases (``--cases``):
  pg-open_datasync, pg-fdatasync, pg-fsync, pg-open_sync   pg_test_fsync's "one 8kB write" test:
        8 kB at offset 0 of a zero-filled 16 MiB file (``peers.PG_TRIAL``); the ``open_*`` ones with
        O_DIRECT where the filesystem takes it, as pg_test_fsync and ``compare`` do
  append                                                   what the node and the sweep run: 144-byte
        records appended with write() and fdatasync after each (``always``)
"""
from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cc import compile_c  # noqa: E402

from fsyncstudy import engine  # noqa: E402
from fsyncstudy.intervals import paired_ratio_ci  # noqa: E402
from fsyncstudy.log import AlignedFramer, Framer, LogFile  # noqa: E402
from fsyncstudy.measures import percentile  # noqa: E402
from fsyncstudy.peers import PG_FILE_BYTES, PG_METHODS, PG_TRIAL, direct_io_works  # noqa: E402
from fsyncstudy.places import pick_directory  # noqa: E402
from fsyncstudy.targets import describe  # noqa: E402
from fsyncstudy.trial import DEFAULT_PAYLOAD_BYTES, payload_for  # noqa: E402

C_SOURCE = r"""
#define _GNU_SOURCE
#include <time.h>
#include <unistd.h>
static long long now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                                return t.tv_sec * 1000000000LL + t.tv_nsec; }
/* n times: write len bytes of buf (at offset 0 when at0, else appended), then sync
   (0 none, 1 fdatasync, 2 fsync), and keep each sync's start and end in marks (the write's when
   there is no sync call), as fio times each I/O; the elapsed ns, or -1 on a short write */
long long loop(int fd, const char *buf, long len, long n, int at0, int sync, long long *marks) {
    long long t = now_ns();
    for (long i = 0; i < n; i++) {
        long long a = now_ns();
        if ((at0 ? pwrite(fd, buf, len, 0) : write(fd, buf, len)) != len) return -1;
        long long b = now_ns();
        if (sync == 1) fdatasync(fd); else if (sync == 2) fsync(fd);
        marks[2 * i] = sync ? b : a;
        marks[2 * i + 1] = sync ? now_ns() : b;
    }
    return now_ns() - t;
}
"""

CASES = [f"pg-{name}" for name in PG_METHODS] + ["append"]


def build_c_loop(workdir: str):
    fn = ctypes.CDLL(compile_c(C_SOURCE, workdir, "loop", shared=True)).loop
    fn.restype = ctypes.c_longlong
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_int,
                   ctypes.c_void_p]
    return fn


def run_case(case: str, directory: str, c_loop, cycles: int, block: int, seed: int, has_direct: bool) -> dict:
    """Ops/sec per block for each side, cycle by cycle."""
    if case == "append":
        method, at0, direct, payload_bytes = "fdatasync", False, False, DEFAULT_PAYLOAD_BYTES
        prealloc, prealloc_bytes = "append", 0
    else:
        method = PG_METHODS[case[3:]]
        at0, direct = True, method.startswith("open_") and has_direct
        payload_bytes, prealloc, prealloc_bytes = PG_TRIAL["payload_bytes"], "zero-fill", PG_FILE_BYTES
    framer = (AlignedFramer if direct else Framer)(payload_for(payload_bytes))
    recs = framer.frame_range(0, block)
    # the C side writes one record over and over, from page-aligned memory (what O_DIRECT needs)
    c_buf = mmap.mmap(-1, -(-framer.record_bytes // mmap.PAGESIZE) * mmap.PAGESIZE)
    c_buf[:framer.record_bytes] = bytes(recs[0])
    c_addr = ctypes.addressof(ctypes.c_char.from_buffer(c_buf))
    with LogFile(directory, method, prealloc, prealloc_bytes, direct=direct) as log:
        fd, sync, rl = log.fd, log.sync_function(), framer.record_bytes
        sync_code = {"fdatasync": 1, "fsync": 2}.get(method, 0)

        marks = (ctypes.c_longlong * (2 * block))()
        sync_ns = {"C": [], "engine": []}   # each sync's duration (the write's, for the open_* methods)

        def c_side() -> int:
            ns = c_loop(fd, c_addr, rl, block, int(at0), sync_code, marks)
            if ns < 0:
                raise OSError("short write in the C loop")
            if measuring:
                sync_ns["C"] += [marks[2 * i + 1] - marks[2 * i] for i in range(block)]
            return ns

        def python_side() -> int:
            rec = recs[0]
            w, t = os.pwrite, time.perf_counter_ns()
            if at0 and sync:
                for _ in range(block):
                    w(fd, rec, 0)
                    sync(fd)
            elif at0:
                for _ in range(block):
                    w(fd, rec, 0)
            else:
                w = os.write
                for _ in range(block):
                    w(fd, rec)
                    sync(fd)
            return time.perf_counter_ns() - t

        offset0_write = engine._pwrite_offset0 if at0 else None

        def engine_side() -> int:
            t = time.perf_counter_ns()
            tl = engine.run_always(fd, sync, framer, recs, engine.Stop(block), write=offset0_write)
            ns = time.perf_counter_ns() - t
            if measuring:
                sync_ns["engine"] += [e - b for b, e in zip(tl.sync_starts, tl.sync_ends)]
            return ns

        sides = {"C": c_side, "python": python_side, "engine": engine_side}
        measuring = False
        for f in sides.values():   # one unrecorded block each: the file and the code warm
            f()
        measuring = True
        got = {k: [] for k in sides}
        rng = random.Random(seed)
        for _ in range(cycles):
            order = list(sides)
            rng.shuffle(order)
            for k in order:
                got[k].append(block / sides[k]() * 1e9)
    return {"case": case, "method": method, "direct": direct, "record_bytes": rl, "ops": got, "sync_ns": sync_ns}


def report(res: dict) -> None:
    ops = res["ops"]
    what = f"{res['method']}{', O_DIRECT' if res['direct'] else ''}, {res['record_bytes']}-byte records"
    print(f"\n{res['case']} ({what})")
    for side in ("C", "python", "engine"):
        med = statistics.median(ops[side])
        if side == "C":
            print(f"  {side:8s} {med:9,.0f} ops/s (median of {len(ops[side])} blocks)")
            continue
        r = paired_ratio_ci(ops[side], ops["C"])
        print(f"  {side:8s} {med:9,.0f} ops/s   / C {r.estimate:.3f} (95% CI {r.low:.3f}-{r.high:.3f}), "
              f"{(1 / r.estimate - 1) * 1e6 / statistics.median(ops['C']):+.1f} us per op")
    c, e = (sorted(res["sync_ns"][k]) for k in ("C", "engine"))
    what = "sync" if res["method"] in ("fdatasync", "fsync") else "synchronous write"
    print(f"  {what} latency p50 / p99 / p99.9: C {_pct(c, 50)} / {_pct(c, 99)} / {_pct(c, 99.9)} us, "
          f"engine {_pct(e, 50)} / {_pct(e, 99)} / {_pct(e, 99.9)} us ({len(c):,} and {len(e):,} calls)")


def _pct(sorted_ns: list[int], p: float) -> str:
    v = percentile(sorted_ns, p)
    return "-" if v is None else f"{v / 1e3:.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="target directory (default: durable storage, as the node picks it)")
    ap.add_argument("--cycles", type=int, default=300, help="cycles; each runs one block per side (default 300)")
    ap.add_argument("--block", type=int, default=100, help="operations per block (default 100)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad or args.cycles < 2 or args.block < 1:
        ap.error(f"unknown case {', '.join(bad)}" if bad else "--cycles must be >= 2 and --block >= 1")
    directory = os.fspath(pick_directory(args.dir))
    target = describe(directory)
    if not target.can_be_durable:
        warnings.warn(f"{directory} is on {target.fstype}: its syncs measure no storage")
    print(f"{platform.node()} {platform.machine()}, kernel {platform.release()}, Python {platform.python_version()}; "
          f"{directory} on {target.fstype} ({target.durability}); {args.cycles} cycles of {args.block} ops per side")
    with tempfile.TemporaryDirectory(prefix="fsyncstudy-loopcost-") as work:
        c_loop = build_c_loop(work)
        has_direct = direct_io_works(directory)
        for k, case in enumerate(cases):
            report(run_case(case, directory, c_loop, args.cycles, args.block, args.seed + k, has_direct))
    return 0


if __name__ == "__main__":
    sys.exit(main())
