"""The write paths real WALs use (fsyncstudy.writepaths, engine.run's write_mode and deferred): each from
run_trial with every entry read back, and from bench; what each path calls, counted; the refusals."""
import errno
import json
import os

import pytest

from conftest import SHM, leftovers, needs_shm, run_here
from fsyncstudy import engine, writepaths
from fsyncstudy.log import DIRECT_BLOCK, read_log
from fsyncstudy.trial import run_trial


@pytest.fixture
def calls(monkeypatch):
    """Counts os.fdatasync, os.write, os.pwrite and os.pwritev calls (each still made)."""
    got = {"fdatasync": [], "write": [], "pwrite": [], "pwritev": []}
    for name in got:
        real = getattr(os, name)

        def counting(*a, _real=real, _name=name):
            got[_name].append(a[1:])
            return _real(*a)
        monkeypatch.setattr(os, name, counting)
    return got


def bench(*args) -> dict:
    ran = run_here("bench", *args, "--json")
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)["results"]


# -- rwf_dsync ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,writers", [("always", 1), ("group_0ms", 4)])
def test_rwf_dsync_writes_and_syncs_in_one_call_and_issues_no_fdatasync(name, writers, disk_dir, calls):
    r = run_trial(name, entries=200, directory=disk_dir, sync_method="rwf_dsync", writers=writers, verify=True)
    assert r.verified, r.verify_detail
    assert calls["fdatasync"] == []
    dsync = [c for c in calls["pwritev"] if c[-1] == os.RWF_DSYNC]
    if name == "always":
        assert len(dsync) == 200 + 1 == r.syncs + 1   # one a write, and the probe before timing
    else:                                             # the leader's one write commits its group
        assert 1 < len(dsync) <= r.syncs + 1 and r.syncs < 200   # a leader finding its group flushed writes nothing
    assert r.sync_method == "rwf_dsync" and leftovers(disk_dir) == []


def test_rwf_dsync_with_several_always_writers_each_writes_and_syncs_its_own_offset(disk_dir, calls):
    r = run_trial("always", entries=200, directory=disk_dir, sync_method="rwf_dsync", writers=3, verify=True)
    assert r.verified, r.verify_detail
    assert calls["fdatasync"] == [] and r.syncs == 200
    timed = [c for c in calls["pwritev"] if c[-1] == os.RWF_DSYNC][1:]     # after the probe
    assert sorted(c[1] for c in timed) == [k * r.record_bytes for k in range(200)]   # each at its own offset


def test_rwf_dsync_from_bench(disk_dir):
    [r] = bench("--dir", disk_dir, "--entries", 100, "--strategy", "always", "--sync-method", "rwf_dsync")
    assert r["sync_method"] == "rwf_dsync" and r["syncs"] == 100 and r["write_mode"] == "per-entry"


def test_rwf_dsync_refused_by_the_kernel_is_one_line(disk_dir, monkeypatch):
    def refused(*a):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
    monkeypatch.setattr(os, "pwritev", refused)
    ran = run_here("bench", "--dir", disk_dir, "--entries", 10, "--strategy", "always", "--sync-method", "rwf_dsync")
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1
    assert "RWF_DSYNC is refused here" in ran.stderr and leftovers(disk_dir) == []


# -- direct_dsync ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,writers", [("always", 1), ("group_1ms", 3)])
def test_direct_dsync_rewrites_the_tail_block_in_whole_aligned_blocks(name, writers, disk_dir, calls):
    seen = {}

    def look(tl):
        [log] = [p for p in disk_dir.iterdir() if p.name.startswith(".fsyncstudy-")]
        seen["size"] = log.stat().st_size
        seen["scan"] = read_log(log)
    r = run_trial(name, entries=150, directory=disk_dir, sync_method="direct_dsync", writers=writers, verify=True,
                  on_timeline=look)
    assert r.verified, r.verify_detail
    assert seen["size"] % DIRECT_BLOCK == 0 and seen["scan"].entries == 150 and seen["scan"].end == "zeros"
    offsets = [c[-1] for c in calls["pwrite"]]
    assert all(len(c[0]) % DIRECT_BLOCK == 0 and c[-1] % DIRECT_BLOCK == 0 for c in calls["pwrite"])
    assert 0 < len(offsets) <= r.syncs and len(set(offsets)) < len(offsets)   # the tail block, written again
    assert calls["fdatasync"] == [] and leftovers(disk_dir) == []


def test_direct_dsync_from_bench(disk_dir):
    [r] = bench("--dir", disk_dir, "--entries", 60, "--strategy", "always", "--sync-method", "direct_dsync")
    assert r["sync_method"] == "direct_dsync" and r["syncs"] == 60


@needs_shm
def test_direct_dsync_where_o_direct_is_refused_is_one_line_naming_the_filesystem(monkeypatch):
    # tmpfs has taken O_DIRECT since Linux 6.6; where a filesystem refuses it, fcntl says EINVAL
    def refused(fd):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    monkeypatch.setattr("fsyncstudy.log.set_direct", refused)
    ran = run_here("bench", "--dir", SHM, "--entries", 10, "--strategy", "always", "--sync-method", "direct_dsync")
    assert ran.returncode == 2 and "refuses O_DIRECT" in ran.stderr and "(tmpfs)" in ran.stderr
    assert [line for line in ran.stderr.splitlines() if line.startswith("error:")] == [ran.stderr.splitlines()[-1]]
    assert not [p for p in SHM.iterdir() if p.name.startswith(f".fsyncstudy-{os.getpid()}-")]


# -- bytes_per_sync -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["always", "batch_2ms", "none"])
def test_bytes_per_sync_starts_writeback_every_n_bytes(name, disk_dir, monkeypatch):
    real = writepaths.sync_file_range_call()
    ranges = []

    def counting(fd, off, n, flags):
        ranges.append((off, n, flags))
        return real(fd, off, n, flags)
    monkeypatch.setattr(writepaths, "sync_file_range_call", lambda: counting)
    r = run_trial(name, entries=300, directory=disk_dir, bytes_per_sync=4096, verify=True)
    assert r.verified and r.bytes_per_sync == 4096
    timed = ranges[1:]                                # the first is the probe before timing
    assert len(timed) == r.bytes_written // 4096
    assert timed == [(k * 4096, 4096, writepaths.SYNC_FILE_RANGE_WRITE) for k in range(len(timed))]


def test_bytes_per_sync_from_bench_and_without_sync_file_range(disk_dir, monkeypatch):
    [r] = bench("--dir", disk_dir, "--entries", 100, "--strategy", "always", "--bytes-per-sync", 8192)
    assert r["bytes_per_sync"] == 8192

    def missing():
        raise OSError(errno.ENOSYS, "bytes_per_sync needs sync_file_range(2)")
    monkeypatch.setattr(writepaths, "sync_file_range_call", missing)
    ran = run_here("bench", "--dir", disk_dir, "--entries", 10, "--strategy", "always", "--bytes-per-sync", 4096)
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "sync_file_range" in ran.stderr


# -- buffered writes ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["batch_1ms", "none"])
def test_buffered_writes_make_fewer_writes_than_entries_and_say_when_each_reached_the_kernel(name, disk_dir, calls):
    timelines = []
    r = run_trial(name, entries=2000, directory=disk_dir, write_mode="buffered", verify=True,
                  on_timeline=timelines.append)
    assert r.verified, r.verify_detail
    [tl] = timelines
    assert 0 < len(calls["write"]) == len(tl.write_ends) < r.entries / 10
    assert tl.write_hi[-1] == r.entries and list(tl.write_hi) == sorted(tl.write_hi)
    assert all(a <= e for a, e in zip(tl.acks[:tl.write_hi[0]], [tl.write_ends[0]] * tl.write_hi[0]))
    assert r.process_exposure_ms_max is not None and r.write_mode == "buffered"
    if name == "none":
        assert len(calls["write"]) == -(-r.bytes_written // engine.BUFFER_BYTES) and r.syncs == 0
    else:
        assert r.synced and r.exposure_ms_max >= r.process_exposure_ms_max


def test_buffered_from_bench(disk_dir):
    got = bench("--dir", disk_dir, "--entries", 1000, "--strategy", "batch_1ms", "--strategy", "none",
                "--write", "buffered")
    assert [r["write_mode"] for r in got] == ["buffered", "buffered"]
    assert all(r["process_exposure_ms_max"] is not None for r in got)


# -- segments -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,writers", [("always", 1), ("batch_1ms", 1), ("none", 1), ("group_0ms", 3)])
def test_segments_roll_the_expected_number_of_times_and_leave_no_file(name, writers, disk_dir):
    r = run_trial(name, entries=300, directory=disk_dir, segment_bytes=8192, writers=writers, verify=True,
                  prealloc="fallocate")
    per_segment = 8192 // r.record_bytes
    assert r.roll_count == -(-300 // per_segment) - 1 and r.verified, r.verify_detail
    assert r.roll_ack_us_p50 is not None and r.roll_ack_us_max >= r.roll_ack_us_p50
    assert leftovers(disk_dir) == []


def test_recycled_segments_are_reused_not_created(disk_dir, monkeypatch):
    made = []
    real = writepaths.LogFile
    monkeypatch.setattr(writepaths, "LogFile", lambda *a, **k: made.append(a) or real(*a, **k))
    r = run_trial("always", entries=300, directory=disk_dir, segment_bytes=4096, recycle=2, verify=True)
    assert r.roll_count == -(-300 // (4096 // r.record_bytes)) - 1 and len(made) == 3 and r.recycle == 2
    assert r.verified, r.verify_detail
    assert leftovers(disk_dir) == []


def test_segment_files_are_removed_after_an_error(disk_dir, monkeypatch):
    real = os.fdatasync
    n = []

    def failing(fd):
        n.append(fd)
        if len(n) > 80:
            raise OSError(errno.EIO, "injected")
        return real(fd)
    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(engine.SyncFailed):
        run_trial("always", entries=300, directory=disk_dir, segment_bytes=4096)
    assert leftovers(disk_dir) == []


def test_segments_from_bench(disk_dir):
    [r] = bench("--dir", disk_dir, "--entries", 200, "--strategy", "always", "--segment-bytes", 8192, "--recycle", 1)
    assert r["roll_count"] >= 3 and r["segment_bytes"] == 8192 and r["recycle"] == 1


# -- refusals -------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,words", [
    (["--strategy", "always", "--write", "buffered"], "only with batch_<N>ms and none"),
    (["--strategy", "group_1ms", "--write", "buffered"], "only with batch_<N>ms and none"),
    (["--strategy", "batch_10ms", "--sync-method", "rwf_dsync"], "only with always or group_<N>ms"),
    (["--strategy", "none", "--sync-method", "direct_dsync"], "only with always or group_<N>ms"),
    (["--strategy", "always", "--sync-method", "direct_dsync", "--writers", "2"], "share the tail block"),
    (["--strategy", "always", "--recycle", "2"], "give segment_bytes"),
    (["--strategy", "always", "--segment-bytes", "100"], "at least 4,096"),
    (["--strategy", "always", "--sync-method", "open_dsync", "--bytes-per-sync", "4096"], "synchronous already"),
    (["--strategy", "always", "--bytes-per-sync", "-1"], "at least 0"),
])
def test_bad_combinations_are_one_line_and_status_2(args, words, disk_dir):
    ran = run_here("bench", "--dir", disk_dir, "--entries", 10, *args)
    assert ran.returncode == 2 and words in ran.stderr and ran.stderr.strip().count("\n") == 0, ran.stderr
    assert ran.stdout == "" and leftovers(disk_dir) == []


@pytest.mark.parametrize("method", ["rwf_dsync", "direct_dsync"])
def test_a_caller_writing_plain_writes_cannot_take_a_self_syncing_method_silently(method, disk_dir):
    from fsyncstudy.log import LogFile
    with LogFile(disk_dir, method) as log, pytest.raises(ValueError, match="durable only through its own writes"):
        log.sync_function()                   # a caller that writes with write() asks this way
    assert leftovers(disk_dir) == []


def test_bench_help_documents_each_option_with_its_default():
    ran = run_here("bench", "--help")
    text = " ".join(ran.stdout.split())
    for flag, default in (("--sync-method", "default fdatasync"), ("--write", "per-entry (default)"),
                          ("--bytes-per-sync BYTES", "default 0: off"), ("--segment-bytes BYTES", "default 0: one file"),
                          ("--recycle K", "default 0")):
        assert flag in text and default in text, flag
