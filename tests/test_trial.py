"""The engine through run_trial, on real files on the repository's disk."""
import contextlib
import errno
import os
import sys
import time
import warnings

import pytest

from fsyncstudy import engine, trial
from fsyncstudy.engine import SyncFailed
from fsyncstudy.log import Framer
from fsyncstudy.trial import MAX_ENTRIES, DurabilityWarning, TargetFull, run_trial
from conftest import SHM, leftovers, needs_shm

STRATEGIES = ["always", "batch_0ms", "batch_5ms", "none", "group_0ms", "group_2ms"]


@pytest.fixture
def count_fdatasync(monkeypatch):
    calls = []
    real = os.fdatasync

    def counting(fd):
        calls.append(fd)
        return real(fd)
    monkeypatch.setattr(os, "fdatasync", counting)
    return calls


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_writes_a_log_that_reads_back_complete(name, disk_dir):
    writers = 3 if name.startswith("group") else 1
    r = run_trial(name, entries=300, directory=disk_dir, verify=True, writers=writers)
    assert r.verified, r.verify_detail
    assert r.entries == 300 and r.bytes_written == 300 * r.record_bytes
    assert r.ops_per_sec > 0 and r.elapsed_s > 0
    assert leftovers(disk_dir) == []


@pytest.mark.parametrize("prealloc", ["append", "fallocate", "zero-fill"])
@pytest.mark.parametrize("name", ["always", "batch_1ms", "none"])
def test_preallocated_logs_read_back_complete(prealloc, name, disk_dir):
    r = run_trial(name, entries=200, directory=disk_dir, prealloc=prealloc, verify=True)
    assert r.verified, r.verify_detail
    assert r.prealloc_bytes == (0 if prealloc == "append" else 200 * r.record_bytes)


def test_always_syncs_once_per_entry(disk_dir, count_fdatasync):
    r = run_trial("always", entries=250, directory=disk_dir)
    assert len(count_fdatasync) == 250 == r.syncs
    assert r.exposure_ms_max == 0.0
    assert r.nominal_loss_window_ms == 0.0


def test_none_never_syncs(disk_dir, count_fdatasync):
    r = run_trial("none", entries=5000, directory=disk_dir)
    assert count_fdatasync == [] and r.syncs == 0 and not r.synced
    assert r.exposure_ms_max is None
    assert r.writeback_expire_s == int(open("/proc/sys/vm/dirty_expire_centisecs").read()) / 100


def test_batch_syncs_are_counted_and_the_last_entry_is_covered(disk_dir, count_fdatasync):
    r = run_trial("batch_60000ms", entries=1000, directory=disk_dir, verify=True)
    # the interval never elapses: exactly the one final sync covers everything
    assert len(count_fdatasync) == 1 == r.syncs
    assert r.verified
    # every entry waited for that one sync: the first one longest, from its ack until the sync returned
    assert r.sync_latency_us_max / 1e3 <= r.exposure_ms_max <= r.elapsed_s * 1e3


def test_batch_flusher_keeps_its_cadence(disk_dir, count_fdatasync):
    n_ms = 20
    r = run_trial(f"batch_{n_ms}ms", duration_s=0.5, directory=disk_dir)
    # ticks are anchored to the flusher's start: one sync per tick at most, plus the final one
    assert r.syncs == len(count_fdatasync)
    assert r.syncs <= r.elapsed_s * 1000 / n_ms + 2
    assert r.syncs >= 0.5 * r.elapsed_s * 1000 / n_ms
    assert 0.9 * n_ms <= r.flush_interval_ms_mean <= 2 * n_ms
    # an acknowledged entry waits for the next tick and that tick's sync
    assert r.exposure_ms_max >= 0.5 * n_ms


def test_batch_0ms_syncs_back_to_back(disk_dir, count_fdatasync):
    r = run_trial("batch_0ms", duration_s=0.3, directory=disk_dir)
    assert r.syncs > 10 and r.syncs == len(count_fdatasync)


def test_group_commit_shares_syncs_and_acks_only_durable_entries(disk_dir, count_fdatasync):
    r = run_trial("group_0ms", entries=2000, writers=8, directory=disk_dir, verify=True)
    assert r.verified
    assert 0 < r.syncs == len(count_fdatasync) <= 2000
    assert r.exposure_ms_max == 0.0


def test_always_with_several_writers_syncs_every_entry_itself_and_acks_only_durable_entries(disk_dir,
                                                                                            count_fdatasync):
    # the baseline of group commit at the same writers: each thread writes and syncs its own entries
    r = run_trial("always", entries=400, writers=4, directory=disk_dir, verify=True)
    assert r.verified, r.verify_detail
    assert r.writers == 4 and r.entries >= 400
    assert r.syncs == r.entries == len(count_fdatasync)       # one sync per entry, none shared
    assert r.exposure_ms_max == 0.0                           # acknowledged after its own sync
    assert leftovers(disk_dir) == []


def test_always_with_several_writers_overlaps_their_syncs(disk_dir, monkeypatch):
    # concurrent: a sync starts while another is still running (group commit would wait for it)
    inside, most = [0], [0]
    real = os.fdatasync

    def slow(fd):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.002)
        real(fd)
        inside[0] -= 1
    monkeypatch.setattr(os, "fdatasync", slow)
    run_trial("always", entries=60, writers=4, directory=disk_dir)
    assert most[0] >= 2


def test_always_with_several_writers_stops_at_a_failed_sync_and_acknowledges_nothing_after(disk_dir):
    framer = Framer(bytes(128))
    path = disk_dir / "always-writers-fail.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    calls = []

    def failing(fd):
        calls.append(fd)
        time.sleep(0.0002)
        if len(calls) >= 20:
            raise OSError(errno.EIO, "Input/output error")
    try:
        with pytest.raises(SyncFailed):
            engine.run_always_writers(fd, failing, 4, framer, framer.frame_range(0, 64), engine.Stop(entries=10**6))
    finally:
        os.close(fd)
        os.unlink(path)
    # every writer stopped: no write or sync started after the failure was recorded (at most the other
    # three writers' syncs were already under way)
    assert len(calls) <= 20 + 3
    import threading
    assert [t.name for t in threading.enumerate() if t.name.startswith("fsyncstudy-")] == []


def test_group_commit_with_one_writer_is_one_sync_per_entry(disk_dir, count_fdatasync):
    r = run_trial("group_0ms", entries=100, directory=disk_dir)
    assert r.syncs == 100 == len(count_fdatasync)


def test_duration_and_entries_bound_a_trial_together(disk_dir):
    r = run_trial("none", entries=10, duration_s=0.2, directory=disk_dir)
    assert r.elapsed_s >= 0.2 and r.entries > 10
    r = run_trial("always", entries=50, duration_s=0.001, directory=disk_dir)
    assert r.entries >= 50


def test_open_dsync_makes_every_write_a_sync(disk_dir, count_fdatasync):
    r = run_trial("always", entries=100, directory=disk_dir, sync_method="open_dsync", verify=True)
    assert r.verified and r.syncs == 100 and count_fdatasync == []


def test_fsync_method_calls_fsync(disk_dir, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    r = run_trial("always", entries=40, directory=disk_dir, sync_method="fsync")
    # one per entry, plus the two that make the fresh file and its directory entry durable before timing
    assert len(calls) == 40 + 2 and r.syncs == 40


@pytest.mark.parametrize("kwargs, match", [
    (dict(strategy="batch_10ms", sync_method="open_sync"), "only goes with 'always'"),
    (dict(strategy="batch_10ms", writers=4), "group"),
    (dict(strategy="always", writers=4, sync_method="open_dsync"), "several writers"),
    (dict(strategy="always", sync_method="O_DIRECT"), "unknown sync method"),
    (dict(strategy="always", prealloc="sparse"), "unknown preallocation"),
    (dict(strategy="always", entries=0), "integer in 1.."),
    (dict(strategy="sometimes"), "unknown strategy"),
])
def test_bad_options_are_refused_before_anything_is_written(kwargs, match, disk_dir):
    kwargs.setdefault("entries", 10)
    with pytest.raises(ValueError, match=match):
        run_trial(directory=disk_dir, **kwargs)
    assert leftovers(disk_dir) == []


def test_a_failed_sync_is_an_error_not_a_retry_and_the_file_is_removed(disk_dir, monkeypatch):
    calls = []

    def failing(fd):
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(SyncFailed, match="not retrying"):
        run_trial("always", entries=10, directory=disk_dir)
    assert len(calls) == 1
    with pytest.raises(SyncFailed):
        run_trial("batch_0ms", entries=100000, directory=disk_dir)
    assert leftovers(disk_dir) == []


def test_a_trial_that_cannot_fit_says_how_much_it_needs(disk_dir):
    with pytest.raises(TargetFull, match=r"free; this trial needs 9.54 TiB plus a 16 MiB margin"):
        run_trial("none", entries=MAX_ENTRIES, payload_bytes=2**20 - 16, directory=disk_dir)


@pytest.mark.parametrize("kwargs, match", [
    (dict(duration_s=float("inf")), "duration_s must be a number of seconds"),
    (dict(duration_s=1e300), "duration_s must be a number of seconds"),
    (dict(duration_s=float("nan")), "duration_s must be a number of seconds"),
    (dict(entries=10, payload_bytes=10**12), "payload_bytes must be an integer in 0..1,048,576"),
    (dict(entries=10**8), "entries must be an integer in 1..10,000,000"),
    (dict(entries=10, writers=10**13, strategy="group_0ms"), "writers must be an integer in 1..64"),
    (dict(entries=10, prealloc_bytes=-1), "prealloc_bytes"),
])
def test_requests_beyond_the_limits_are_refused_before_anything_is_allocated(kwargs, match, disk_dir):
    kwargs.setdefault("strategy", "none")
    with pytest.raises(ValueError, match=match):
        run_trial(directory=disk_dir, **kwargs)
    assert leftovers(disk_dir) == []


def test_big_records_are_framed_in_bounded_blocks(disk_dir):
    # 1 MiB records: at most PREFRAME_BYTES framed before the first write, CHUNK_BYTES at a time after
    framer = Framer(bytes(2**20 - 16))
    assert engine.preframe_records(framer, 2000) == engine.PREFRAME_BYTES // 2**20
    assert engine.chunk_records(framer) == engine.CHUNK_BYTES // 2**20
    r = run_trial("none", entries=300, payload_bytes=2**20 - 16, directory=disk_dir, verify=True)
    assert r.verified and r.entries == 300


def test_a_duration_bound_trial_stops_at_the_entry_cap(disk_dir, monkeypatch):
    monkeypatch.setattr(trial, "MAX_ENTRIES", 5000)
    r = run_trial("none", duration_s=30, directory=disk_dir)
    assert r.entries == 5000 and r.elapsed_s < 30 and "stopped at" in " ".join(r.warnings)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_trial("none", entries=10, directory=tmp_path / "nope")


@needs_shm
def test_tmpfs_is_reported_as_not_durable_and_warned_about():
    with pytest.warns(DurabilityWarning, match="tmpfs"):
        r = run_trial("always", entries=10, directory=SHM)
    assert r.target_fstype == "tmpfs" and r.target_durability == "volatile"
    assert any("tmpfs" in w for w in r.warnings)


def test_a_disk_target_is_described(disk_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DurabilityWarning)
        r = run_trial("none", entries=10, directory=disk_dir)
    assert r.target_durability in ("durable", "uncertain") and r.target_fstype not in ("tmpfs", "ramfs")
    assert r.target_reason


@pytest.mark.parametrize("name", ["always", "none"])
@pytest.mark.parametrize("prealloc", ["append", "zero-fill"])
def test_overwrite_offset0_rewrites_one_record_in_place(name, prealloc, disk_dir):
    # pg_test_fsync's pattern: every entry goes to offset 0; only the last one survives
    r = run_trial(name, entries=200, directory=disk_dir, payload_bytes=8192 - 16, prealloc=prealloc,
                  prealloc_bytes=16 << 20 if prealloc == "zero-fill" else None, overwrite_offset0=True, verify=True)
    assert r.verified, r.verify_detail
    assert r.overwrite_offset0 and r.entries == 200 and r.record_bytes == 8192
    assert r.syncs == (200 if name == "always" else 0)
    assert leftovers(disk_dir) == []


def test_overwrite_offset0_keeps_the_file_at_one_record(disk_dir):
    sizes = []
    # on_timeline runs while the log file still exists
    run_trial("always", entries=50, directory=disk_dir, overwrite_offset0=True,
              on_timeline=lambda tl: sizes.extend(os.path.getsize(disk_dir / n) for n in leftovers(disk_dir)))
    assert sizes == [144]


def test_overwrite_offset0_is_refused_for_batch_and_group(disk_dir):
    for name in ("batch_1ms", "group_0ms"):
        with pytest.raises(ValueError, match="overwrite_offset0"):
            run_trial(name, entries=10, directory=disk_dir, overwrite_offset0=True)


def test_default_trials_still_append(disk_dir):
    r = run_trial("always", entries=20, directory=disk_dir, verify=True)
    assert not r.overwrite_offset0 and r.verified


def test_on_timeline_sees_the_raw_timeline(disk_dir):
    seen = []
    r = run_trial("always", entries=30, directory=disk_dir, on_timeline=seen.append)
    (tl,) = seen
    assert tl.entries == 30 == r.entries and len(tl.sync_ends) == 30


@contextlib.contextmanager
def switching_threads_often():
    """The races below are narrow: let the interpreter switch threads as often as it can."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def group_commit_until_it_fails(path, sync, write=None) -> OSError:
    """One group commit run with 8 writers on a fresh file, which ``sync`` or ``write`` ends by failing."""
    framer = Framer(bytes(128))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with pytest.raises(OSError) as e:
            engine.run_group(fd, sync, 0, 8, framer, framer.frame_range(0, 64), engine.Stop(entries=10**6),
                             write=write)
    finally:
        os.close(fd)
        os.unlink(path)
    return e.value


def test_group_commit_never_leads_a_second_sync_after_one_failed(disk_dir):
    # A failed sync must be recorded before the followers wake; otherwise one of them becomes
    # leader and syncs the same pages again (the fsyncgate retry).
    with switching_threads_often():
        for attempt in range(1500):
            calls = []

            def failing(fd):  # four syncs succeed, slowly enough that followers queue up behind them
                calls.append(fd)
                time.sleep(0.0002)
                if len(calls) >= 5:
                    raise OSError(errno.EIO, "Input/output error")
            err = group_commit_until_it_fails(disk_dir / "group-race.log", failing)
            assert isinstance(err, SyncFailed) and "not retrying" in str(err)
            assert len(calls) == 5, f"attempt {attempt}: {len(calls) - 5} more syncs after the first one failed"


def test_group_commit_writes_nothing_after_a_failed_write(disk_dir):
    # The same rule for a failed write(): no other writer may write (and so sync and acknowledge)
    # after it, or an acknowledged entry would sit behind a torn record the reader stops at.
    with switching_threads_often():
        for attempt in range(1500):
            calls = []

            def writing(fd, data):  # the 40th write fails
                calls.append(fd)
                if len(calls) == 40:
                    raise OSError(errno.EIO, "Input/output error")
                return os.write(fd, data)

            def slow_sync(fd):  # followers queue up behind each sync
                time.sleep(0.0002)
            err = group_commit_until_it_fails(disk_dir / "group-write-race.log", slow_sync, writing)
            assert err.errno == errno.EIO and not isinstance(err, SyncFailed)
            assert len(calls) == 40, f"attempt {attempt}: {len(calls) - 40} writes after one failed"


@pytest.mark.parametrize("strategy", ["group_0ms", "group_50ms"])
def test_ctrl_c_in_group_commit_stops_every_writer_before_the_log_is_closed(strategy, disk_dir):
    # a writer thread left running writes its next record to whatever file reuses the log's fd number
    import signal
    import threading

    main = threading.get_ident()
    timer = threading.Timer(0.3, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_trial(strategy, duration_s=30, writers=4, directory=disk_dir)
    finally:
        timer.cancel()
    assert [t.name for t in threading.enumerate() if t.name.startswith("fsyncstudy-")] == []
    assert leftovers(disk_dir) == []


def test_an_interrupt_while_the_writers_start_waits_until_all_have_started(disk_dir, monkeypatch):
    # Ctrl-C inside Thread.start() once left a writer running that the cleanup did not count as
    # alive (CI, 2026-11-28); the engine now holds SIGINT and SIGTERM until every writer has started
    import signal
    import threading

    main = threading.get_ident()
    started = []
    orig = threading.Thread.start

    def start(self):
        if self.name.startswith("fsyncstudy-writer-"):
            if not started:
                signal.pthread_kill(main, signal.SIGINT)
            started.append(self.name)
        orig(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(KeyboardInterrupt):
        run_trial("group_0ms", duration_s=30, writers=4, directory=disk_dir)
    assert len(started) == 4
    assert [t.name for t in threading.enumerate() if t.name.startswith("fsyncstudy-")] == []
    assert leftovers(disk_dir) == []


def test_a_p99_of_too_few_values_is_labelled_the_maximum(tmp_path):
    from fsyncstudy.trial import run_trial
    few = run_trial("always", entries=40, directory=tmp_path)
    assert few.ack_p99_is_max and few.sync_p99_is_max and few.ack_latency_us_p99 == few.ack_latency_us_max
    many = run_trial("none", entries=5000, directory=tmp_path)
    assert not many.ack_p99_is_max and not many.sync_p99_is_max   # none never syncs: no sync p99 at all


def test_direct_writes_whole_blocks_at_offset_0_with_o_direct_as_pg_test_fsync(disk_dir, monkeypatch):
    import fcntl
    from fsyncstudy import engine
    seen = []
    real = engine.run

    def spy(st, fd, *a, **kw):
        seen.append(bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT))
        return real(st, fd, *a, **kw)
    monkeypatch.setattr(engine, "run", spy)
    for method in ("open_dsync", "fdatasync"):
        r = run_trial("always", entries=50, directory=disk_dir, sync_method=method, prealloc="zero-fill",
                      payload_bytes=8192 - 16, overwrite_offset0=True, direct=True, verify=True)
        assert r.verified and r.entries == 50
    r = run_trial("always", entries=50, directory=disk_dir, payload_bytes=8192 - 16, overwrite_offset0=True)
    assert seen == [True, True, False]
    with pytest.raises(ValueError, match="overwrite_offset0"):
        run_trial("always", entries=5, directory=disk_dir, payload_bytes=8192 - 16, direct=True)
    with pytest.raises(ValueError, match="4096-byte blocks"):
        run_trial("always", entries=5, directory=disk_dir, overwrite_offset0=True, direct=True)
    assert leftovers(disk_dir) == []


def test_bound_names_what_the_trial_waited_for():
    from fsyncstudy.trial import cpu_fields
    s = 1_000_000_000
    assert cpu_fields(int(0.9 * s), 100, s)["bound"] == "cpu"
    assert cpu_fields(int(0.5 * s), 100, s, wait_ns=int(0.4 * s))["bound"] == "cpu"    # waiting for a CPU counts
    assert cpu_fields(int(0.2 * s), 100, s, daemon_ns=int(0.9 * s))["bound"] == "fuse-daemon"
    assert cpu_fields(int(0.2 * s), 100, s, daemon_ns=int(0.3 * s))["bound"] == "storage"
    assert cpu_fields(int(0.2 * s), 100, s)["daemon_cpu_share"] is None


@pytest.mark.parametrize("name, kwargs", [("always", {}), ("none", {}), ("batch_0ms", {}), ("group_0ms", {"writers": 2}),
                                          ("always", {"writers": 2}), ("group_30000ms", {}),
                                          ("none", {"duration_s": 60})])
def test_a_deadline_stops_every_loop_and_removes_the_log(name, kwargs, disk_dir):
    # each would run for minutes (group_30000ms: 30 s for its first sync); each stops at its deadline
    t = time.monotonic()
    with pytest.raises(trial.DeadlinePassed, match="stopped at its deadline"):
        run_trial(name, entries=MAX_ENTRIES, directory=disk_dir, payload_bytes=0, deadline=t + 0.5, **kwargs)
    assert time.monotonic() - t < 0.5 + 0.3
    assert leftovers(disk_dir) == []


def test_a_trial_that_ends_before_its_deadline_is_as_without_one(disk_dir, count_fdatasync):
    for deadline in (None, time.monotonic() + 30):
        r = run_trial("always", entries=200, directory=disk_dir, deadline=deadline)
        assert r.entries == 200 and r.syncs == 200
    assert len(count_fdatasync) == 400
    with pytest.raises(trial.DeadlinePassed, match="before its log was opened"):
        run_trial("none", entries=10, directory=disk_dir, deadline=time.monotonic())
    assert leftovers(disk_dir) == []


def test_rounds_cut_short_by_a_deadline_keep_the_ones_that_finished(disk_dir, monkeypatch):
    real, calls = trial.run_trial, []

    def third_fails(*a, **k):
        calls.append(k["deadline"])
        if len(calls) == 3:
            raise trial.DeadlinePassed("stopped at its deadline")
        return real(*a, **k)
    monkeypatch.setattr(trial, "run_trial", third_fails)
    sts = [trial.parse("none"), trial.parse("always")]
    trials, rounds, _ = trial.run_rounds(sts, 20, disk_dir, budget_s=60, deadline=time.monotonic() + 60)
    assert rounds == 1 and [len(t) for t in trials] == [1, 1] and len(set(calls)) == 1
    calls[:] = [None, None]   # the next call is the third: the first round does not finish
    with pytest.raises(trial.DeadlinePassed):
        trial.run_rounds(sts, 20, disk_dir, deadline=time.monotonic() + 60)
    assert leftovers(disk_dir) == []


def test_a_deadline_stops_a_zero_fill_of_gigabytes(disk_dir):
    t = time.monotonic()
    with pytest.raises(trial.DeadlinePassed, match="while zero-filling its log"):
        run_trial("none", entries=MAX_ENTRIES, directory=disk_dir, prealloc="zero-fill", deadline=t + 0.3)
    assert time.monotonic() - t < 0.3 + 1.0   # the zeros written so far are dropped with the log
    assert leftovers(disk_dir) == []


@pytest.mark.parametrize("strategy,writers", [("group_0ms", 4), ("always", 4), ("group_10ms", 2)])
def test_a_trial_whose_duration_passed_before_its_writers_started_still_writes_an_entry(strategy, writers, disk_dir):
    # several writer threads start after the trial's clock: on a busy machine a 0.02 s trial could end before
    # any wrote, and a trial of 0 entries (0 ops/s) is no measurement (a sweep's dataset refuses the row)
    r = run_trial(strategy, duration_s=1e-9, writers=writers, directory=disk_dir)
    assert r.entries >= 1 and r.ops_per_sec > 0
