"""The engine's loops: what `none` times, exact counts, short writes, and the harness's own cost."""
import errno
import math
import os

import pytest

from fsyncstudy import engine
from fsyncstudy.engine import SAMPLE_EVERY, TIME_ALL_UP_TO, Stop, run_none
from fsyncstudy.log import Framer
from fsyncstudy.trial import run_trial


@pytest.fixture
def log_fd(tmp_path):
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    yield fd, tmp_path / "log"
    os.close(fd)


def _framer():
    return Framer(bytes(100))


def test_none_writes_exactly_the_count_and_times_a_sample(log_fd):
    fd, path = log_fd
    framer, n = _framer(), 40_000
    tl = run_none(fd, framer, framer.frame_range(0, 1000), Stop(n))
    assert tl.entries == n
    assert path.stat().st_size == n * framer.record_bytes
    expected = n / SAMPLE_EVERY
    assert 0.8 * expected < len(tl.latency) < 1.2 * expected
    assert all(x > 0 for x in tl.latency)
    assert tl.end_ns > tl.start_ns


def test_none_times_every_write_of_a_short_run(log_fd):
    fd, path = log_fd
    framer = _framer()
    n = min(1000, TIME_ALL_UP_TO)
    tl = run_none(fd, framer, framer.frame_range(0, n), Stop(n))
    assert tl.entries == len(tl.latency) == n
    assert path.stat().st_size == n * framer.record_bytes


def test_none_bounded_by_time_counts_every_write(log_fd):
    fd, path = log_fd
    framer = _framer()
    tl = run_none(fd, framer, framer.frame_range(0, 100), Stop(entries=10, duration_ns=50_000_000))
    assert tl.entries >= 10 and tl.entries > len(tl.latency)
    assert path.stat().st_size == tl.entries * framer.record_bytes
    assert tl.end_ns - tl.start_ns >= 50_000_000


def test_the_sample_positions_are_random_not_every_sixteenth():
    gaps = list(engine._sample_gaps()[:4000])
    assert len(set(gaps)) > 10                      # a fixed stride would give one value
    assert abs(sum(gaps) / len(gaps) - (SAMPLE_EVERY - 1)) < 1.5
    assert list(engine._sample_gaps(100)) == list(engine._sample_gaps(100))   # seeded


def test_none_catches_a_short_write_between_timed_ones(log_fd):
    fd, _ = log_fd
    framer, calls = _framer(), [0]

    def short(f, rec):
        calls[0] += 1
        return os.write(f, rec[:-1] if calls[0] == 7 else rec)

    with pytest.raises(OSError) as e:
        run_none(fd, framer, framer.frame_range(0, 20_000), Stop(20_000), write=short)
    assert e.value.errno == errno.ENOSPC and "short write" in str(e.value)


@pytest.mark.parametrize("kind", ["always", "batch", "group", "none"])
def test_the_harness_cost_is_measured_per_kind(kind):
    ns = engine.harness_ns(kind)
    assert math.isfinite(ns) and 0 <= ns < 100_000
    assert engine.harness_ns(kind) == ns            # measured once per process


def test_a_trial_says_how_many_entries_its_latencies_rest_on(tmp_path):
    r = run_trial("none", entries=20_000, directory=tmp_path)
    assert r.entries == 20_000
    assert 0 < r.timed_entries < r.entries / 8
    assert r.harness_ns_per_entry == engine.harness_ns("none")
    a = run_trial("always", entries=50, directory=tmp_path)
    assert a.timed_entries == a.entries == 50
    assert a.harness_ns_per_entry == engine.harness_ns("always")     # the always loop's own figure, not none's


@pytest.mark.parametrize("strategy,entries", [("always", 2_000), ("group_0ms", 2_000), ("batch_5ms", 300_000),
                                              ("none", 300_000)])
def test_the_garbage_collector_never_runs_inside_the_timed_window(tmp_path, strategy, entries):
    # a collection inside the window would land in the tail latencies; the loops allocate no
    # container objects that they keep per entry, so none starts there (a tuple kept per entry triggers
    # a young-generation collection every ~700 entries)
    import gc
    import time
    starts, window = [], []

    def seen(phase, info):
        if phase == "start":
            starts.append(time.perf_counter_ns())
    gc.callbacks.append(seen)
    try:
        gc.collect()
        run_trial(strategy, entries=entries, directory=tmp_path,
                  on_timeline=lambda tl: window.append((tl.start_ns, tl.end_ns)))
    finally:
        gc.callbacks.remove(seen)
    (s, e), = window
    assert [t for t in starts if s <= t <= e] == []


def test_every_trial_says_whether_it_was_cpu_bound(tmp_path):
    from fsyncstudy.trial import CPU_BOUND_SHARE, cpu_fields
    # none never waits for the device: the process is on a CPU, or waiting for one, for the whole run
    r = run_trial("none", entries=200_000, directory=tmp_path)
    assert r.bound == "cpu" and r.cpu_share + r.cpu_wait_share >= CPU_BOUND_SHARE
    assert r.cpu_us_per_entry * r.entries == pytest.approx(r.cpu_s * 1e6)
    assert r.cpu_s <= r.elapsed_s * 2.5   # at most the machine's cores (plus rounding) over the run
    assert cpu_fields(800, 10, 1000)["bound"] == "cpu" and cpu_fields(790, 10, 1000)["bound"] == "storage"
    assert cpu_fields(500, 10, 1000, wait_ns=300)["bound"] == "cpu"    # ready to run, the CPU taken: not storage
    assert cpu_fields(500, 10, 1000, wait_ns=200)["cpu_wait_share"] == 0.2
    assert cpu_fields(None, 10, 1000) == {"cpu_s": None, "cpu_us_per_entry": None, "cpu_share": None,
                                          "cpu_wait_share": None, "daemon_cpu_share": None, "bound": ""}


def test_a_cpu_bound_trial_is_still_cpu_bound_when_other_processes_take_the_cpus(tmp_path):
    """The premise of "CPU-bound" is that the process never waited for storage; on a machine whose
    CPUs are busy with other work it waits for a CPU instead, and that is not storage."""
    import subprocess
    import sys

    from fsyncstudy.trial import CPU_BOUND_SHARE
    spin = "print(flush=True)\nwhile True: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True)
            for _ in range(2 * (os.cpu_count() or 1))]
    try:
        for h in hogs:
            h.stdout.readline()   # spinning
        r = run_trial("none", entries=300_000, directory=tmp_path)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert r.cpu_wait_share > 0.1, "the hogs did not take the CPUs: the premise this test breaks was not broken"
    assert r.bound == "cpu" and r.cpu_share + r.cpu_wait_share >= CPU_BOUND_SHARE
