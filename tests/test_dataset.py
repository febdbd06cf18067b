"""The dataset layer: one lock per dataset, strict resume, failed units run again, a torn tail of
any shape cut off, and a clear one-line error for any meta.json it cannot read."""
import errno
import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from conftest import REPO
from fsyncstudy import crash, dataset, sweep
from fsyncstudy.dataset import DatasetBusy, DatasetError, Table, open_or_resume, read_meta, read_rows
from fsyncstudy.profiles import PROFILES
from fsyncstudy.sweep import Profile, load, run_sweep

TINY = Profile("tiny", trials=2, warmup_rounds=1, min_duration_s=0.02, min_intervals=3, batch_ms=(0,),
               group=(), prealloc_compare=())
SCHEMA = [["unit", "int"], ["status", "str"], ["note", "str"]]


def rows_in(path) -> int:
    try:
        return len(read_rows(path))
    except FileNotFoundError:
        return 0


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fsyncstudy", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


# -- one writer at a time ---------------------------------------------------------------------------

def test_a_second_run_on_a_dataset_in_use_is_refused_at_once_naming_the_holder(disk_dir, tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "fsyncstudy", "sweep", "--profile", "quick", "--out", str(out), "--target",
           str(disk_dir), "--quiet"]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while rows_in(out / "trials.csv") < 1 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        t0 = time.monotonic()
        with pytest.raises(DatasetBusy, match=rf"pid {first.pid} \(.*fsyncstudy sweep --profile quick"):
            run_sweep(out, profile=PROFILES["quick"].sweep, targets=[str(disk_dir)], progress=False)
        second = cli("sweep", "--profile", "quick", "--out", str(out), "--target", str(disk_dir), "--quiet")
        assert time.monotonic() - t0 < 30  # refused, not queued behind the first
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.communicate(timeout=60)
    # the first one's rows are all there is: nothing was mixed in
    keys = Counter((r["round"], r["target"], r["config"]) for r in read_rows(out / "trials.csv"))
    assert keys and max(keys.values()) == 1


def test_the_lock_is_released_when_a_run_ends_and_when_its_process_dies(tmp_path):
    out = tmp_path / "d"
    with open_or_resume(out, "test", {"n": 1}, SCHEMA, "rows.csv") as ds:
        ds.append({"unit": 0, "status": "ok"})
        with pytest.raises(DatasetBusy, match=f"pid {os.getpid()}"):
            open_or_resume(out, "test", {"n": 1}, SCHEMA, "rows.csv")
    with open_or_resume(out, "test", {"n": 1}, SCHEMA, "rows.csv") as ds:  # released at the end of the first
        assert [r["unit"] for r in ds.rows] == ["0"]
    code = (f"from fsyncstudy.dataset import open_or_resume; import os; "
            f"ds = open_or_resume({str(out)!r}, 'test', {{'n': 1}}, {SCHEMA!r}, 'rows.csv'); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 9
    open_or_resume(out, "test", {"n": 1}, SCHEMA, "rows.csv").close()  # a dead holder holds nothing


def snapshot(d):
    """Every file under ``d`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_a_refused_sweep_leaves_the_users_directory_as_it_was(disk_dir, tmp_path):
    # a directory whose CSV holds rows that no meta.json describes is someone's files, not a dataset
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    (mine / "data.csv").write_text("a,b\n1,2\n")
    before = snapshot(mine)
    p = cli("sweep", "--profile", "quick", "--out", str(mine), "--target", str(disk_dir), "--quiet")
    assert p.returncode == 2 and "data.csv holds rows but" in p.stderr.splitlines()[-1], p.stderr
    assert snapshot(mine) == before and sorted(os.listdir(mine)) == ["data.csv", "notes.txt"]  # no .lock
    # and one holding other files only is no dataset either: nothing is written into it
    (mine / "data.csv").unlink()
    before = snapshot(mine)
    p = cli("sweep", "--profile", "quick", "--out", str(mine), "--target", str(disk_dir), "--quiet")
    assert p.returncode == 2 and "holds other files (notes.txt) and no meta.json" in p.stderr, p.stderr
    assert snapshot(mine) == before and os.listdir(mine) == ["notes.txt"]


def test_a_refusal_removes_only_the_lock_file_and_directories_it_made(tmp_path, monkeypatch):
    # a dataset of another kind: refused; its own .lock was there before and stays
    out = tmp_path / "d"
    open_or_resume(out, "test", {"n": 1}, SCHEMA, "rows.csv").close()
    before = snapshot(out)
    assert ".lock" in before
    with pytest.raises(DatasetError, match="another kind"):
        open_or_resume(out, "other", {"n": 1}, SCHEMA, "rows.csv")
    assert snapshot(out) == before
    # a directory that did not exist does not exist after a run stopped while opening it (Ctrl-C here)
    def interrupted(targets=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(dataset, "environment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_or_resume(tmp_path / "new" / "deeper", "test", {"n": 1}, SCHEMA, "rows.csv")
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_a_lock_file_unlinked_by_a_refused_run_is_not_held_in_its_place(tmp_path, monkeypatch):
    # between a run's open() of .lock and its flock, a refused run that made the file unlinks it: the
    # run must end up holding the file at the path, or a third run would make another and hold it too
    real_flock, calls = dataset.fcntl.flock, []

    def flock_after_an_unlink(fd, op):
        calls.append(fd)
        if len(calls) == 1:
            os.unlink(tmp_path / ".lock")
        return real_flock(fd, op)
    monkeypatch.setattr(dataset.fcntl, "flock", flock_after_an_unlink)
    lock = dataset.Lock(tmp_path)
    monkeypatch.setattr(dataset.fcntl, "flock", real_flock)
    try:
        assert len(calls) == 2 and os.path.samestat(os.fstat(lock.fd), os.stat(tmp_path / ".lock"))
        with pytest.raises(DatasetBusy):
            dataset.Lock(tmp_path)
    finally:
        lock.release()


# -- strict resume ----------------------------------------------------------------------------------

def test_rows_without_their_meta_json_are_refused(disk_dir, tmp_path):
    out = tmp_path / "study"
    run_sweep(out, profile=TINY, targets=[str(disk_dir)], seed=1, progress=False, limit=2)
    (out / "meta.json").unlink()
    with pytest.raises(DatasetError, match=r"trials.csv holds rows but .*meta.json is missing"):
        run_sweep(out, profile=TINY, targets=[str(disk_dir)], seed=2, progress=False)
    assert not (out / "meta.json").exists() and rows_in(out / "trials.csv") == 2  # nothing adopted, nothing lost


@pytest.mark.parametrize("text", ["[]", "null", '{"environment": null}', "garbage{", '{"format": 2, "kind": "sweep"}',
                                  ""])
def test_a_malformed_meta_json_is_one_line_naming_the_file(text, disk_dir, tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    (out / "meta.json").write_text(text)
    with pytest.raises(DatasetError, match="meta.json"):
        read_meta(out)
    with pytest.raises(DatasetError):
        load(out)
    p = cli("sweep", "--profile", "quick", "--out", str(out), "--target", str(disk_dir), "--quiet")
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and str(out / "meta.json") in lines[-1] and "Traceback" not in p.stderr
    assert (out / "meta.json").read_text() == text  # left as it was


def test_a_dataset_of_another_kind_or_format_is_refused(tmp_path):
    out = tmp_path / "d"
    open_or_resume(out, "test", {"n": 1}, SCHEMA, "rows.csv").close()
    with pytest.raises(DatasetError, match="another kind"):
        open_or_resume(out, "other", {"n": 1}, SCHEMA, "rows.csv")
    with pytest.raises(DatasetError, match="a different n"):
        open_or_resume(out, "test", {"n": 2}, SCHEMA, "rows.csv")
    meta = json.loads((out / "meta.json").read_text())
    meta["format"] = 1
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="format 1.*upgrade"):
        open_or_resume(out, "test", {"n": 1}, SCHEMA, "rows.csv")


def test_every_kind_writes_the_same_meta_shape(disk_dir, tmp_path):
    run_sweep(tmp_path / "s", profile=TINY, targets=[str(disk_dir)], progress=False, limit=1)
    crash.run_crash(tmp_path / "c", PROFILES["quick"].crash, kinds=("process",), strategies=["always"], cuts=1,
                    directory=disk_dir, progress=False)
    shapes = set()
    for d in ("s", "c"):
        meta = read_meta(tmp_path / d)
        shapes.add(tuple(meta))
        assert meta["format"] == dataset.FORMAT and len(meta["runs"]) == 1 and meta["environment"]["targets"]
        assert [c for c, _ in meta["columns"]] == list(read_rows(tmp_path / d / meta["table"])[0])
    assert len(shapes) == 1


# -- failed units run again -------------------------------------------------------------------------

def test_a_failed_trial_runs_again_on_resume_and_its_row_stays_as_history(disk_dir, tmp_path, monkeypatch):
    out = tmp_path / "study"

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, f"Read-only file system: '{disk_dir}'")
    with monkeypatch.context() as m:
        m.setattr(sweep, "run_trial", read_only)
        first = run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False, fresh_process=False)
    assert first.failed == first.ran == first.planned
    assert load(out)[0].empty  # no usable row yet
    second = run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False)  # the target is fixed
    assert (second.skipped, second.ran, second.failed, second.retried) == (0, first.planned, 0, first.planned)
    df, meta = load(out, include_warmup=True)
    assert len(df) == first.planned and (df["status"] == "ok").all()
    rows = read_rows(out / "trials.csv")
    assert Counter(r["status"] for r in rows) == {"error": first.planned, "ok": first.planned}
    assert [r["failed"] for r in meta["runs"]] == [first.planned, 0]
    assert run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False).ran == 0


def test_a_failed_cut_is_cut_again_on_resume(disk_dir, tmp_path, monkeypatch):
    out = tmp_path / "crash"
    args = dict(kinds=("process",), strategies=["always"], cuts=2, directory=disk_dir, progress=False)

    def broken(*a, **kw):
        raise RuntimeError("the writer did not start: no word from it")
    with monkeypatch.context() as m:
        m.setattr(crash, "one_cut", broken)
        assert crash.run_crash(out, PROFILES["quick"].crash, **args).failed == 2
    again = crash.run_crash(out, PROFILES["quick"].crash, **args)
    assert (again.skipped, again.ran, again.failed) == (0, 2, 0)
    cuts, _ = crash.load(out)
    assert len(cuts) == 4 and (cuts["error"] != "").sum() == 2 and (cuts.loc[cuts["error"] == "", "acked"] > 0).all()


# -- torn tails -------------------------------------------------------------------------------------

@pytest.mark.parametrize("torn", [
    b'2,ok,"half a no',               # no newline at all
    b'2,ok,"a note with a newline\n',  # cut just after a newline inside a quoted field
    b'2,ok,"one ""quoted"" word\nand',  # doubled quotes inside, torn on the next line
    b'2,ok\n',                          # a whole line with too few fields
])
def test_a_torn_last_row_is_cut_off_whatever_it_holds(torn, tmp_path):
    path = tmp_path / "rows.csv"
    t = Table(path, ["unit", "status", "note"])
    t.append({"unit": 0, "status": "ok", "note": "plain"})
    t.append({"unit": 1, "status": "ok", "note": 'with, a comma and "quotes"\nand a newline'})
    t.close()
    with open(path, "ab") as f:
        f.write(torn)
    assert [r["unit"] for r in read_rows(path)] == ["0", "1"]  # the torn row is not a row
    t = Table(path, ["unit", "status", "note"])  # reopening cuts it off
    t.append({"unit": 3, "status": "ok", "note": "after the repair"})
    t.close()
    rows = read_rows(path)
    assert [r["unit"] for r in rows] == ["0", "1", "3"]
    assert rows[1]["note"] == 'with, a comma and "quotes"\nand a newline' and rows[2]["note"] == "after the repair"
    assert torn not in path.read_bytes()


def test_a_sweep_resumes_past_a_row_torn_inside_a_quoted_field(disk_dir, tmp_path):
    out = tmp_path / "study"
    run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False, limit=2)
    path = out / "trials.csv"
    with open(path, "a") as f:
        f.write('0,1,5,/x,"ext4 on vda,\n')  # what a power cut in the middle of a row could leave
    run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False, limit=1)
    rows = read_rows(path)
    assert len(rows) == 3 and all(r["status"] == "ok" and r["config"].endswith("/fdatasync") for r in rows)
    df, _ = load(out, include_warmup=True)
    assert len(df) == 3


# -- the committed datasets -------------------------------------------------------------------------

def test_the_committed_datasets_read_with_their_own_columns():
    found = {}
    for d in sorted((REPO / "data").iterdir()):
        if (d / "meta.json").exists():
            meta = read_meta(d)
            df, _ = dataset.load(d)
            assert len(df) > 0 and list(df.columns) == [c for c, _ in meta["columns"]]
            found[meta["kind"]] = len(df)
    assert set(found) == {"sweep", "crash", "peers", "load", "realdb", "realdb-crash", "diskcheck"}


def test_a_sweep_written_before_the_write_paths_reads_as_the_plain_path():
    d = next(p for p in sorted((REPO / "data").iterdir()) if (p / "meta.json").exists()
             and read_meta(p)["kind"] == "sweep")
    assert "write_mode" not in [c for c, _ in read_meta(d)["columns"]]
    df, _ = sweep.load(d)
    assert set(df["write_mode"]) == {"per-entry"} and set(df["segment_bytes"]) == {0} and set(df["recycle"]) == {0}
    assert set(df["bytes_per_sync"]) == {0} and set(df["roll_count"]) == {0} and df["roll_ack_us_max"].isna().all()
    assert set(dataset.added_columns("sweep")) <= {c for c, _ in sweep.SCHEMA}


def test_progress_in_a_log_is_lines_not_a_bars_frames(capsys, monkeypatch):
    class Summary:
        interrupted, elapsed_s = False, 0.0

    class Closing:
        def close(self, interrupted):
            self.closed = interrupted

    clock = iter(range(0, 10_000, 40))   # every update 40 s later: each tenth gets its line
    monkeypatch.setattr(dataset.time, "monotonic", lambda: next(clock))
    with dataset.filling(Closing(), Summary(), 20, "tiny study", "trial", progress=True) as bar:
        for _ in range(20):
            bar.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 10
    assert "tiny study: 20/20 trials (100%)" in err and "to go" in err


def test_the_engine_digest_covers_every_measuring_module_and_only_those():
    import fsyncstudy
    here = REPO / "fsyncstudy"
    names = {str(p.relative_to(here)) for p in dataset.engine_sources()}
    # every module of the measuring layers, read from the layer table (realdb's workload among them)...
    assert {"engine.py", "trial.py", "load.py", "cuts.py", "crash.py", "realdb/workload.py", "realdb/power.py",
            "realstudy.py", "lab/powercut.py"} <= names
    # ...and nothing of the layers that only read datasets
    assert not names & {"dataset.py", "analysis.py", "stats.py", "plots.py", "study.py", "report.py", "cli.py"}
    measuring = {m for m, layer in fsyncstudy.layers().items() if layer in fsyncstudy.MEASURING_LAYERS}
    assert "fsyncstudy.realdb" in measuring and "fsyncstudy.analysis" not in measuring
