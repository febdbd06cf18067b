"""The crash experiment on the write paths real WALs use (docs/crash.md#write-paths): each path's writer
acknowledges where the path really does, so a power cut on lab:powercut and a process kill measure what each
keeps: the self-syncing writes lose nothing acknowledged, sync_file_range is no sync, and buffered writes
lose at a process kill what per-entry writes keep."""
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import REPO, leftovers, run_here
from fsyncstudy import dataset, writepaths
from fsyncstudy.crash import KIND, CrashProfile, CutPath, PowerCut, ProcessCut, load, one_cut, run_crash
from fsyncstudy.lab import Lab, requirements
from fsyncstudy.log import Framer

REQ = requirements()["lab:powercut"]


@pytest.fixture(scope="module")
def powercut():
    """lab:powercut alone, up for this module (its own lab directory), torn down after it: a PowerCut on it."""
    if REQ:
        pytest.skip(f"lab:powercut: {REQ}")
    base = Path(os.environ.get("FSYNCSTUDY_TEST_DIR", "/var/tmp"))
    d = Path(tempfile.mkdtemp(prefix="fsyncstudy-lab-crashpaths-", dir=base))
    lab = Lab(d, targets=["powercut"], seed=7)
    try:
        lab.up()
        reason = lab.skipped().get("lab:powercut")
        if reason:
            pytest.skip(f"lab:powercut did not come up here: {reason}")
        yield PowerCut("lab:powercut", d)
    finally:
        lab.down()
        shutil.rmtree(d, ignore_errors=True)


def cuts(cutter, strategy: str, path: CutPath, n: int = 3, seed: int = 5) -> list:
    out = [one_cut(cutter, strategy, k, seed, path=path) for k in range(n)]
    for r in out:
        assert r.error == "" and not r.corrupt, r
        assert (r.sync_method, r.write_mode, r.bytes_per_sync, r.segment_bytes, r.recycle) == tuple(path), r
    return out


# -- power cuts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["rwf_dsync", "direct_dsync"])
def test_always_with_a_self_syncing_write_loses_nothing_it_acknowledged_at_a_power_cut(powercut, method):
    got = cuts(powercut, "always", CutPath(method))
    assert all(r.acked > 0 and r.lost_acked == 0 for r in got), got
    if method == "direct_dsync":   # whole aligned blocks: the tail block's zero padding ends the log
        assert {r.log_end for r in got} == {"zeros"}, got


def test_none_with_bytes_per_sync_loses_at_a_power_cut_sync_file_range_is_no_sync(powercut):
    got = cuts(powercut, "none", CutPath(bytes_per_sync=4096))
    # more lost than the 4 KiB since the last sync_file_range: the ones before were not durable either
    record_bytes = Framer(bytes(128)).record_bytes
    assert any(r.lost_acked * record_bytes > 2 * 4096 for r in got), got


def test_always_on_segments_loses_nothing_it_acknowledged_at_a_power_cut(powercut):
    got = cuts(powercut, "always", CutPath(segment_bytes=4096, recycle=1))
    assert all(r.lost_acked == 0 and r.recovered >= r.acked > 0 for r in got), got
    # 4 KiB segments of 144-byte records: 28 a segment, so more than two segments' worth read back means the reader
    # followed the chain into recycled segments (whether it then ends at a recycled file's older records, "stale",
    # or at zeros depends on where in a segment the cut came: CI once had none of three end "stale")
    assert any(r.recovered > 2 * 28 for r in got), got
    assert not leftovers(powercut.directory) and not leftovers(powercut.backing)


# -- process kills --------------------------------------------------------------------------------

def test_buffered_batch_loses_at_a_process_kill_where_per_entry_batch_loses_nothing(disk_dir):
    cutter = ProcessCut(disk_dir)
    buffered = cuts(cutter, "batch_10ms", CutPath(write_mode="buffered"))
    per_entry = cuts(cutter, "batch_10ms", CutPath())
    # the buffered ack is at the append: what the last tick had not written yet dies with the process
    assert any(r.lost_acked > 0 for r in buffered), buffered
    assert all(r.acked > 0 and r.lost_acked == 0 for r in per_entry), per_entry
    assert leftovers(disk_dir) == []


def test_a_process_kill_under_every_self_syncing_and_segmented_path_loses_nothing(disk_dir):
    cutter = ProcessCut(disk_dir)
    for strategy, path in [("always", CutPath("rwf_dsync")), ("always", CutPath("direct_dsync")),
                           ("group_0ms", CutPath("rwf_dsync")), ("group_1ms", CutPath("direct_dsync")),
                           ("none", CutPath(segment_bytes=4096, recycle=2))]:
        [r] = cuts(cutter, strategy, path, n=1)
        assert r.acked > 0 and r.lost_acked == 0, r
    # the recycled segments' older records end each one's chain, uncounted, not as corruption
    assert r.log_end in ("stale", "clean", "zeros", "torn") and r.recovered >= r.acked, r
    assert leftovers(disk_dir) == []


# -- the reader across segments -------------------------------------------------------------------

def test_the_segment_reader_follows_the_chain_and_stops_at_recycled_records():
    f = Framer(b"x" * 16)
    seg = lambda seqs: b"".join(f.frame(s) for s in seqs)   # noqa: E731
    # segment 3 was recycled (it held 0..4 before): 15, 16 then its old records; 17.. never reached it
    images = [(1, seg(range(5, 10))), (2, seg(range(10, 15))), (3, seg([15, 16]) + seg(range(2, 5)))]
    s = writepaths.scan_segments(images)
    assert (s.entries, s.first_seq, s.last_seq, s.end) == (12, 5, 16, "stale")
    # a later segment that does not follow the chain's last record is not counted
    s = writepaths.scan_segments(images[:1] + [(2, seg(range(11, 15)))])
    assert (s.entries, s.last_seq, s.end) == (5, 9, "sequence")
    # segment 0 among them: the chain starts at seq 0
    s = writepaths.scan_segments([(0, seg(range(1, 4)))])
    assert (s.entries, s.end) == (0, "sequence")


# -- the experiment, the dataset, the command ----------------------------------------------------

def test_a_profile_s_write_path_cells_are_cut_recorded_by_path_and_resumed(disk_dir, tmp_path):
    prof = CrashProfile("t", power=((), 0), process=(("batch_10ms",), 1),
                        paths=(("process", "batch_10ms", CutPath(write_mode="buffered"), 2),))
    out = tmp_path / "crash"
    s = run_crash(out, prof, kinds=("process",), directory=disk_dir, progress=False)
    assert (s.planned, s.ran, s.failed, s.lost_by_durable) == (3, 3, 0, [])
    df, meta = load(out)
    assert df.groupby("path").size().to_dict() == {"": 1, "buffered": 2}
    assert meta["plan"]["path_cuts"] == {"process": {"batch_10ms": {"buffered": 2}}}
    assert dataset.check(out, KIND).ok and dataset.check(out, KIND).short == []
    again = run_crash(out, prof, kinds=("process",), directory=disk_dir, progress=False)
    assert (again.ran, again.skipped) == (0, 3)
    from fsyncstudy import analysis
    t = analysis.crash_table(df, n_boot=100)
    assert list(t["label"]) == ["batch_10ms", "batch_10ms (buffered)"]


def test_older_crash_datasets_load_as_the_plain_path():
    from conftest import written_before_the_write_paths
    older = written_before_the_write_paths("crash-*")
    assert older                                  # the committed ones from before the write paths
    for d in older:
        assert dataset.check(d, KIND).ok, d
        df, _ = load(d)
        assert set(df["path"]) == {""} and set(df["sync_method"]) == {"fdatasync"}, d


def test_the_crash_command_cuts_a_write_path_and_refuses_one_that_cannot_run(disk_dir, tmp_path):
    ran = run_here("crash", "--kind", "process", "--strategy", "always", "--sync-method", "rwf_dsync", "--cuts", 1,
                   "--dir", disk_dir, "--out", tmp_path / "c", "--json")
    assert ran.returncode == 0, ran.stderr
    [cut] = json.loads(ran.stdout)["cuts"]
    assert cut["sync_method"] == "rwf_dsync" and cut["path"] == "rwf_dsync" and cut["lost_acked"] == 0
    ran = run_here("crash", "--kind", "process", "--strategy", "always", "--write", "buffered", "--dir", disk_dir,
                   "--out", tmp_path / "d")
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "buffered" in ran.stderr, ran.stderr
    assert not (tmp_path / "d").exists()


def test_a_path_the_filesystem_refuses_is_a_cut_recorded_with_why_never_another_path(disk_dir, tmp_path, monkeypatch):
    import errno

    def refused(fd):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    monkeypatch.setattr("fsyncstudy.log.set_direct", refused)     # as a filesystem without O_DIRECT
    prof = CrashProfile("t", power=((), 0), process=((), 0))
    s = run_crash(tmp_path / "c", prof, kinds=("process",), strategies=["always"], cuts=1, directory=disk_dir,
                  progress=False, path=CutPath("direct_dsync"))
    assert (s.ran, s.failed) == (1, 1)
    [row] = dataset.read_rows(tmp_path / "c" / "cuts.csv")
    assert "refuses O_DIRECT" in row["error"] and row["sync_method"] == "direct_dsync" and row["acked"] == "0"
    assert leftovers(disk_dir) == []
