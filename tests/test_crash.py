"""Crash experiments, small enough for CI: real writers, real SIGKILLs, real recovery."""
import json
import subprocess
import sys

import pytest

from fsyncstudy.crash import ProcessCut, load, one_cut, run_crash
from fsyncstudy.profiles import PROFILES

QUICK = PROFILES["quick"].crash
from conftest import REPO, leftovers


def test_a_killed_writer_loses_nothing_it_acknowledged(disk_dir):
    cutter = ProcessCut(disk_dir)
    for strategy in ("always", "batch_10ms", "none", "group_0ms"):
        r = one_cut(cutter, strategy, k=0, seed=1)
        assert r.error == "" and r.acked > 0, r
        # the page cache survives a process crash: every acknowledged entry is in the file
        assert r.lost_acked == 0 and r.recovered >= r.acked, r
        # nothing bad inside the log; its end may be torn, but only by the write in flight, which was never
        # acknowledged: Linux checks for a fatal signal between the pages of a write(), so a SIGKILL can stop a
        # record that crosses a page boundary half-way (seen once: 32 bytes written, 112 missing)
        assert not r.corrupt and r.log_end in ("clean", "zeros", "torn"), r
    assert leftovers(disk_dir) == []


def test_an_experiment_is_recorded_and_resumes(disk_dir, tmp_path):
    out = tmp_path / "crash"
    s = run_crash(out, QUICK, kinds=("process",), strategies=["always", "none"], cuts=2, directory=disk_dir,
                  progress=False)
    assert (s.planned, s.ran, s.failed, s.lost_by_durable) == (4, 4, 0, [])
    df, meta = load(out)
    assert len(df) == 4 and set(df["strategy"]) == {"always", "none"}
    assert meta["plan"]["seed"] == 0 and meta["plan"]["kinds"] == ["process"] and meta["environment"]["kernel"]
    again = run_crash(out, QUICK, kinds=("process",), strategies=["always", "none"], cuts=2,
                      directory=disk_dir, progress=False)
    assert (again.ran, again.skipped) == (0, 4)


def test_the_crash_command_prints_json(disk_dir, tmp_path):
    p = subprocess.run([sys.executable, "-m", "fsyncstudy", "crash", "--kind", "process", "--strategy", "batch_10ms",
                        "--cuts", "1", "--dir", str(disk_dir), "--out", str(tmp_path / "c"), "--json"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    cuts = json.loads(p.stdout)["cuts"]
    assert len(cuts) == 1 and cuts[0]["lost_acked"] == 0 and cuts[0]["acked"] > 0


def test_a_log_that_vanished_is_an_error_of_that_cut_never_recovered_zero(disk_dir):
    class Thief(ProcessCut):
        def cut(self, pid):
            super().cut(pid)
            for p in self.directory.glob(".fsyncstudy-*-crash-*.log"):
                p.unlink()  # as another process's cleanup might
    with pytest.raises(RuntimeError, match="vanished"):
        one_cut(Thief(disk_dir), "always", k=0, seed=1)
    assert leftovers(disk_dir) == []


def test_a_strategy_that_may_lose_gets_its_own_number_of_cuts_and_the_dataset_is_not_called_short(disk_dir, tmp_path):
    from fsyncstudy import dataset
    from fsyncstudy.crash import KIND, CrashProfile
    prof = CrashProfile("t", power=((), 0), process=(("always", "none"), 3), lossy_cuts=1)
    out = tmp_path / "crash"
    s = run_crash(out, prof, kinds=("process",), directory=disk_dir, progress=False)
    assert (s.planned, s.ran, s.failed) == (4, 4, 0)
    df, meta = load(out)
    assert df.groupby("strategy").size().to_dict() == {"always": 3, "none": 1}
    assert meta["plan"]["cuts_by_strategy"] == {"process": {"always": 3, "none": 1}}
    assert dataset.check(out, KIND).short == []
    # and one cut fewer of always is short of its plan, named so
    rows = (out / "cuts.csv").read_text().splitlines()
    last_always = max(i for i, line in enumerate(rows) if ",always," in line)
    (out / "cuts.csv").write_text("\n".join(rows[:last_always] + rows[last_always + 1:]) + "\n")
    assert dataset.check(out, KIND).short
