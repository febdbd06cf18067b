"""pg_test_fsync's five sections, measured by fsyncstudy, with confidence intervals.

``run_suite(directory, secs_per_test=5, trials=5)`` spends what pg_test_fsync spends per
test (``secs_per_test``) but splits it into ``trials`` trials, run in rounds (every test once
per round, the order reversed every other round), and reports the mean ops/sec with a 95%
t interval over trials, under pg_test_fsync's own headers and labels.

- Sections 1 (one 8kB write per sync) and 5 (non-synced 8kB writes) are our engine:
  ``always`` with the matching sync method and ``none``, each 8 kB entry written at offset 0
  of a zero-filled 16 MiB file, as pg_test_fsync writes its 16 MB file.
- Sections 2-4 need op shapes the engine does not have (two writes per sync, several
  open_sync writes per op, an open and close per op), so they are plain loops of the same
  system calls pg_test_fsync makes.
- No O_DIRECT anywhere: pg_test_fsync opens its open_datasync and open_sync files with
  O_DIRECT; we write through the page cache, as the engine always does.
"""
from __future__ import annotations

import os
import random
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field

from .intervals import Interval, mean_interval, none_if_nan
from .peers import PG_BLOCK_BYTES, PG_FILE_BYTES, PG_MAX_FRAMED_BYTES, PG_METHODS, PG_TRIAL, calibrated_entries
from .places import pick_directory
from .targets import describe
from .trial import run_trial


#: Section 1 and 2 labels in pg_test_fsync's order; fsync_writethrough exists only on macOS and Windows.
SYNC_LABELS = ("open_datasync", "fdatasync", "fsync", "fsync_writethrough", "open_sync")
OPEN_SYNC_SIZES_KB = (16, 8, 4, 2, 1)
#: The notes pg_test_fsync prints under its section headers.
SECTION_NOTES = {
    1: "(in wal_sync_method preference order, except fdatasync is Linux's default)",
    2: "(in wal_sync_method preference order, except fdatasync is Linux's default)",
    3: "(This is designed to compare the cost of writing 16kB in different write\nopen_sync sizes.)",
    4: "(If the times are similar, fsync() can sync data written on a different\ndescriptor.)",
}


@dataclass
class PgTest:
    """One of pg_test_fsync's tests, with our per-trial results."""

    section: int
    label: str                    # exactly as pg_test_fsync prints it (section 3's have a leading space)
    how: str                      # "engine always/<method>", "engine none", "loop" or "n/a"
    ops_per_sec: list[float] = field(default_factory=list)
    sync_p50_us: list[float | None] = field(default_factory=list)   # engine tests only
    sync_p99_us: list[float | None] = field(default_factory=list)
    na: str = ""

    def estimate(self) -> Interval:
        return mean_interval(self.ops_per_sec)


@dataclass
class PgTestReport:
    target_path: str
    target_fstype: str
    target_durability: str
    secs_per_test: float
    trials: int
    trial_s: float
    tests: list[PgTest]

    def as_dict(self) -> dict:
        d = asdict(self)
        for t, row in zip(self.tests, d["tests"]):
            e = t.estimate()
            row.update(mean_ops_per_sec=none_if_nan(e.estimate), ci_low=none_if_nan(e.low), ci_high=none_if_nan(e.high),
                       usecs_per_op=1e6 / e.estimate if e.has_estimate() and e.estimate else None)
        return d

    def to_rows(self) -> list[dict]:
        """Tidy rows, one per (test, trial)."""
        return [{"section": t.section, "label": t.label.strip(), "how": t.how, "trial": i, "ops_per_sec": x,
                 "usecs_per_op": 1e6 / x if x else None,
                 "sync_p50_us": t.sync_p50_us[i] if t.sync_p50_us else None,
                 "sync_p99_us": t.sync_p99_us[i] if t.sync_p99_us else None}
                for t in self.tests for i, x in enumerate(t.ops_per_sec)]


def _timed(op, secs: float) -> float:
    """ops/sec of ``op`` repeated until ``secs`` have passed (as pg_test_fsync's alarm loop)."""
    clk = time.perf_counter_ns
    n = 0
    t0 = clk()
    end = t0 + int(secs * 1e9)
    while True:
        op()
        n += 1
        t = clk()
        if t >= end:
            return n / ((t - t0) / 1e9)


class _Loops:
    """Sections 2-4 as plain loops on one 16 MiB file of random bytes, synced before timing."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, f".fsyncstudy-pgtest-{os.getpid()}-{uuid.uuid4().hex[:12]}.out")
        self.buf = random.Random(0x5EED).randbytes(16 * 1024)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            data = random.Random(1).randbytes(PG_FILE_BYTES)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def two_writes(self, label: str, secs: float) -> float:
        """Section 2: two 8kB pwrites (offsets 0 and 8192) per op, then one sync (or O_DSYNC/O_SYNC writes)."""
        flags = os.O_RDWR | {"open_datasync": os.O_DSYNC, "open_sync": os.O_SYNC}.get(label, 0)
        sync = {"fdatasync": os.fdatasync, "fsync": os.fsync}.get(label)
        block = self.buf[:PG_BLOCK_BYTES]
        fd = os.open(self.path, flags)
        pw = os.pwrite
        try:
            if sync is None:
                def op():
                    pw(fd, block, 0)
                    pw(fd, block, PG_BLOCK_BYTES)
            else:
                def op():
                    pw(fd, block, 0)
                    pw(fd, block, PG_BLOCK_BYTES)
                    sync(fd)
            return _timed(op, secs)
        finally:
            os.close(fd)

    def open_sync_writes(self, size_kb: int, secs: float) -> float:
        """Section 3: 16 kB per op as 16/size_kb O_SYNC writes of size_kb at consecutive offsets."""
        size = size_kb * 1024
        chunk = self.buf[:size]
        offsets = [j * size for j in range(16 // size_kb)]
        fd = os.open(self.path, os.O_RDWR | os.O_SYNC)
        pw = os.pwrite
        try:
            def op():
                for off in offsets:
                    pw(fd, chunk, off)
            return _timed(op, secs)
        finally:
            os.close(fd)

    def fd_sync(self, close_first: bool, secs: float) -> float:
        """Section 4: open, write 8kB, fsync, close (then open and close again); or write, close, reopen, fsync."""
        path, block, op_, wr, cl, fs = self.path, self.buf[:PG_BLOCK_BYTES], os.open, os.write, os.close, os.fsync
        if close_first:
            def op():
                fd = op_(path, os.O_RDWR)
                wr(fd, block)
                cl(fd)
                fd = op_(path, os.O_RDWR)
                fs(fd)
                cl(fd)
        else:
            def op():
                fd = op_(path, os.O_RDWR)
                wr(fd, block)
                fs(fd)
                cl(fd)
                cl(op_(path, os.O_RDWR))
        return _timed(op, secs)


def _tests() -> list[PgTest]:
    out = []
    for section in (1, 2):
        for label in SYNC_LABELS:
            # F_FULLFSYNC (macOS) or _commit (Windows): pg_test_fsync prints n/a on Linux, and we have no such method
            if label == "fsync_writethrough":
                out.append(PgTest(section, label, "n/a", na="n/a"))
            else:
                out.append(PgTest(section, label, f"engine always/{PG_METHODS[label]}" if section == 1 else "loop"))
    for kb in OPEN_SYNC_SIZES_KB:
        n = 16 // kb
        out.append(PgTest(3, f"{n:2d} * {kb:2d}kB open_sync write{'s' if n > 1 else ''}", "loop"))
    out.append(PgTest(4, "write, fsync, close", "loop"))
    out.append(PgTest(4, "write, close, fsync", "loop"))
    out.append(PgTest(5, "write", "engine none"))
    return out


def run_suite(directory=None, secs_per_test: float = 5.0, trials: int = 5, log=None) -> PgTestReport:
    """Run the five sections; each test gets ``secs_per_test`` seconds split into ``trials`` trials."""
    if not secs_per_test > 0:
        raise ValueError(f"secs_per_test must be positive, got {secs_per_test!r}")
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    directory = os.fspath(pick_directory(directory))
    target = describe(directory)
    trial_s = secs_per_test / trials
    tests = _tests()
    say = log or (lambda m: None)

    def engine(strategy: str, sync_method: str = "fdatasync", **bound):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return run_trial(strategy, directory=directory, target=target, sync_method=sync_method, **PG_TRIAL,
                             **bound)

    # Section 1 runs a count calibrated to trial_s, framed before timing (a time-bound trial frames
    # records inside its window).  Section 5 stays time-bound: at page-cache speed a trial_s worth of
    # 8 kB records would not fit in memory, so its window includes framing (see format_report).
    counts = {t.label: calibrated_entries(engine("always", PG_METHODS[t.label], duration_s=min(0.2, trial_s)),
                                          trial_s, 50, PG_MAX_FRAMED_BYTES // PG_BLOCK_BYTES)
              for t in tests if t.how.startswith("engine always")}

    loops = _Loops(directory)
    try:
        for r in range(trials):
            say(f"round {r + 1}/{trials}")
            for t in (tests if r % 2 == 0 else tests[::-1]):
                if t.how == "n/a":
                    continue
                if t.how.startswith("engine"):
                    res = (engine("none", duration_s=trial_s) if t.how == "engine none"
                           else engine("always", PG_METHODS[t.label], entries=counts[t.label]))
                    t.ops_per_sec.append(res.ops_per_sec)
                    t.sync_p50_us.append(res.sync_latency_us_p50)
                    t.sync_p99_us.append(res.sync_latency_us_p99)
                elif t.section == 2:
                    t.ops_per_sec.append(loops.two_writes(t.label, trial_s))
                elif t.section == 3:
                    t.ops_per_sec.append(loops.open_sync_writes(int(t.label.split("*")[1].split("kB")[0]), trial_s))
                else:
                    t.ops_per_sec.append(loops.fd_sync(t.label == "write, close, fsync", trial_s))
    finally:
        loops.remove()
    return PgTestReport(target_path=target.path, target_fstype=target.fstype, target_durability=target.durability,
                        secs_per_test=secs_per_test, trials=trials, trial_s=trial_s, tests=tests)
