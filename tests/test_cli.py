"""Every command, given bad input or meeting a failure, ends in one line on stderr and a nonzero exit."""
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_here
from fsyncstudy import cli


def run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fsyncstudy", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def assert_one_line_error(p, code, text):
    assert p.returncode == code, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and text in lines[-1], p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("args, text", [
    (["--duration", "inf"], "argument --duration: must be a finite number of seconds above 0, got inf"),
    (["--duration", "1e300"], "duration_s must be a number of seconds"),
    (["--duration", "nan"], "argument --duration: must be a finite number of seconds above 0, got nan"),
    (["--duration", "-1", "--entries", "100"], "argument --duration: must be a finite number of seconds above 0"),
    (["--duration", "0", "--entries", "100"], "argument --duration: must be a finite number of seconds above 0"),
    (["--duration", "-1"], "argument --duration: must be a finite number of seconds above 0, got -1"),
    (["--payload-bytes", "1000000000000"], "payload_bytes must be an integer in 0..1,048,576"),
    (["--entries", "0"], "entries must be an integer in 1.."),
    (["--strategy", "group_0ms", "--writers", "10000000000000"], "writers must be an integer in 1..64"),
    (["--strategy", "batch_" + "9" * 5000 + "ms"], "longer than 64 characters"),
])
def test_bench_refuses_what_it_cannot_run_in_one_line(args, text, disk_dir):
    assert_one_line_error(run_here("bench", "--dir", str(disk_dir), *args), 2, text)


@pytest.mark.parametrize("args, text", [
    (["pgtest", "--secs-per-test", "inf"], "argument --secs-per-test: must be a finite number of seconds above 0"),
    (["pgtest", "--secs-per-test", "0"], "argument --secs-per-test: must be a finite number of seconds above 0"),
    (["peers", "--secs-per-test", "0"], "argument --secs-per-test: must be a whole number of seconds, at least 1"),
    (["peers", "--peers", "fio", "--secs-per-test", "-1"], "must be a whole number of seconds, at least 1, got -1"),
])
def test_a_duration_of_zero_or_less_or_not_finite_is_refused_while_parsing(args, text, disk_dir):
    p = run_here(*args, "--target", str(disk_dir))
    assert_one_line_error(p, 2, text)
    assert len(p.stderr.strip().splitlines()) == 1 and os.listdir(disk_dir) == []  # nothing measured


def test_a_directory_that_does_not_exist_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "typo" / "dir"
    assert_one_line_error(run("bench", "--dir", str(missing), "--entries", "10"), 2, "does not exist")
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("command, name", [
    *((c, "") for c in (["bench"], ["bench", "--preset", "etcd"], ["sweep", "--quiet"], ["crash", "--kind", "process"],
                        ["peers"], ["pgtest"], ["load", "--strategy", "always", "--rate", "100"],
                        ["load", "--profile", "quick"], ["realdb", "--db", "sqlite"], ["realdb", "--profile", "quick"])),
    (["bench"], "  "), (["sweep", "--quiet"], " "),
])
def test_an_empty_target_is_refused_not_taken_for_the_default(command, name, tmp_path):
    out = ["--out", str(tmp_path / "out")] if command[0] in ("sweep", "crash", "load", "realdb") else []
    assert_one_line_error(run_here(*command, "--target", name, *out), 2, "is empty: name a directory or lab:NAME")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cuts", ["0", "-1"])
def test_crash_refuses_a_number_of_cuts_below_one(cuts, disk_dir, tmp_path):
    p = run_here("crash", "--kind", "process", "--cuts", cuts, "--dir", str(disk_dir), "--out", str(tmp_path / "c"))
    assert_one_line_error(p, 2, "cuts must be an integer in 1..")


def tmpfs(d, options: str):
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    return d


@pytest.fixture
def read_only(tmp_path):
    """A read-only filesystem: every trial there fails."""
    try:
        yield tmpfs(tmp_path / "ro", "ro,size=256m")
    finally:
        subprocess.run(["umount", str(tmp_path / "ro")], capture_output=True)


@pytest.fixture
def full(tmp_path):
    """A filesystem of 1 MiB: a crash writer fills it within milliseconds and fails before its cut."""
    try:
        yield tmpfs(tmp_path / "full", "size=1m")
    finally:
        subprocess.run(["umount", str(tmp_path / "full")], capture_output=True)


def test_a_sweep_where_every_trial_failed_says_why_and_exits_nonzero(read_only, tmp_path):
    p = run("sweep", "--profile", "quick", "--target", str(read_only), "--out", str(tmp_path / "s"), "--quiet")
    assert p.returncode == 1, p.stderr
    assert "trials failed: " in p.stderr and "Read-only file system" in p.stderr and "Traceback" not in p.stderr


def test_a_crash_experiment_where_every_cut_failed_says_why_and_exits_nonzero(full, tmp_path):
    p = run("crash", "--kind", "process", "--strategy", "none", "--cuts", "2", "--dir", str(full),
            "--out", str(tmp_path / "c"), "--quiet")
    assert p.returncode == 1, p.stderr
    assert "2 cuts failed: the writer failed before the cut" in p.stderr and "[Errno 28]" in p.stderr, p.stderr


def test_lab_up_with_nothing_up_exits_nonzero_and_leaves_nothing(tmp_path):
    taken = tmp_path / "images" / "fsyncstudy-lab-ext4.img"
    taken.parent.mkdir()
    taken.write_text("mine")
    p = run("lab", "up", "--targets", "ext4", "--dir", str(tmp_path))
    assert_one_line_error(p, 1, "no lab target came up")
    assert taken.read_text() == "mine" and not (tmp_path / "lab.json").exists()


def test_lab_inject_refuses_an_infinite_delay(tmp_path):
    p = run("lab", "inject", "lab:powercut", "--sync-delay-ms", "inf", "--dir", str(tmp_path))
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr


def test_any_other_failure_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def exhausted():
        raise MemoryError()
    monkeypatch.setattr(cli.bench, "discover", exhausted)
    assert cli.main(["devices"]) == 1
    assert capsys.readouterr().err.strip() == "error: MemoryError"
    with pytest.raises(MemoryError):
        cli.main(["--debug", "devices"])


def test_the_commands_say_so_when_they_fail_for_good_reason_only(disk_dir):
    # a control: a good command exits 0
    p = run("bench", "--dir", str(disk_dir), "--entries", "20", "--strategy", "none")
    assert p.returncode == 0 and p.stderr.count("\n") <= 1, p.stderr
    assert os.listdir(disk_dir) == []


def test_version_and_one_target_flag_for_every_command(disk_dir, tmp_path):
    p = run("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"fsyncstudy {cli.__version__}"
    for command in ("bench", "sweep", "crash", "report", "compare", "pgtest"):
        helptext = run(command, "--help").stdout
        assert "--target" in helptext and "--dir" in helptext, command


def test_bench_json_carries_where_when_and_how_it_was_measured(disk_dir):
    import json
    p = run("bench", "--target", str(disk_dir), "--strategy", "batch_20ms", "--entries", "100", "--json")
    doc = json.loads(p.stdout)
    env, (r,) = doc["fsyncstudy"], doc["results"]
    assert env["version"] == cli.__version__ and env["host"] and env["kernel"] and env["time"]
    assert env["target"]["path"] == str(disk_dir) and "bench --target" in env["command"]
    # 100 entries would take a millisecond: the trial runs 5 intervals so that its flusher acts
    assert r["elapsed_s"] >= 0.1 and r["syncs"] >= 4


def test_diff_puts_two_runs_side_by_side(disk_dir, tmp_path):
    import json
    files = []
    for k in range(2):
        p = run("bench", "--target", str(disk_dir), "--strategy", "none", "--strategy", "always", "--entries", "300",
                "--json")
        files.append(tmp_path / f"run{k}.json")
        files[-1].write_text(p.stdout)
    p = run("diff", *map(str, files), "--plot", str(tmp_path / "d.png"))
    assert p.returncode == 0, p.stderr
    assert "B/A [95% CI]" in p.stdout and "too few trials for an interval" in p.stdout  # one trial a side
    assert (tmp_path / "d.png").stat().st_size > 10_000
    doc = json.loads(run("diff", *map(str, files), "--json").stdout)
    assert [r["config"] for r in doc["rows"]] == ["none/w1/append/fdatasync", "always/w1/append/fdatasync"]
    assert all(r["ratio"] > 0 for r in doc["rows"]) and doc["fsyncstudy"]["version"]
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert_one_line_error(run("diff", str(files[0]), str(tmp_path / "bad.json")), 2, "neither a dataset directory")
    assert_one_line_error(run("diff", str(files[0]), str(tmp_path / "none.json")), 2, "does not exist")


def test_bench_draws_its_run_into_a_png(disk_dir, tmp_path):
    p = run("bench", "--target", str(disk_dir), "--entries", "500", "--plot", str(tmp_path / "b.png"))
    assert p.returncode == 0, p.stderr
    assert f"figure: {tmp_path / 'b.png'}" in p.stderr.splitlines() and os.listdir(tmp_path) == ["b.png"]
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "b.png").stat().st_size > 20_000


@pytest.mark.parametrize("command", [["bench", "--entries", "10"], ["diff", "a.json", "b.json"]])
@pytest.mark.parametrize("plot, text", [
    ("figures", "figures is a directory: name the PNG file to write"),
    ("figures/afile", "figures/afile does not end in .png"),
    ("figures/a.svg", "figures/a.svg does not end in .png"),
    ("nowhere/a.png", "nowhere/a.png: its directory"),
])
def test_plot_writes_exactly_the_file_it_names_or_is_refused_before_anything_runs(command, plot, text, disk_dir,
                                                                                   tmp_path):
    (tmp_path / "figures").mkdir()
    target = ["--target", str(disk_dir)] if command[0] == "bench" else []
    p = run(*command, *target, "--plot", str(tmp_path / plot))
    assert_one_line_error(p, 2, f"argument --plot: {tmp_path}/{text}")
    assert sorted(os.listdir(tmp_path)) == ["figures"] and os.listdir(tmp_path / "figures") == []
    assert os.listdir(disk_dir) == []


def test_peers_is_the_fio_and_pg_test_fsync_command_and_compare_still_works():
    for name in ("peers", "compare"):
        p = run(name, "--help")
        assert p.returncode == 0 and "pg_test_fsync" in p.stdout
