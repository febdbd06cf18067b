"""The fleet: one sweep across hosts on Dask distributed, tried on a local cluster of two worker
processes named as two hosts, each on its own target directory."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO

distributed = pytest.importorskip("distributed")

from fsyncstudy import dataset, fleet, sweep  # noqa: E402

HOSTS = ["host-a", "host-b"]


def tiny(duration_s: float = 0.05) -> sweep.Profile:
    return sweep.Profile("fleet-test", trials=2, warmup_rounds=0, min_duration_s=duration_s, min_intervals=1,
                         batch_ms=(10,), group=(), prealloc_compare=())


@pytest.fixture(scope="module")
def cluster():
    with fleet.Fleet("local:2", names=HOSTS) as f:
        f.wait_for(HOSTS, 60)
        yield f


@pytest.fixture
def dirs(disk_dir):
    out = {h: disk_dir / h for h in HOSTS}
    for d in out.values():
        d.mkdir()
    yield out
    for d in out.values():
        shutil.rmtree(d)


def targets_of(dirs) -> list[str]:
    return [f"{h}:{d}" for h, d in dirs.items()]


def rows(out):
    df, meta = dataset.load(out, sweep.KIND)
    return df, meta


def test_a_quick_sweep_fills_one_dataset_with_both_hosts_each_trial_on_its_own(cluster, dirs, tmp_path):
    out = tmp_path / "fleet"
    s = fleet.run_fleet_sweep(out, tiny(), "unused", targets=targets_of(dirs), fleet=cluster, progress=False)
    assert s.failed == 0 and s.ran == 12 and s.hosts == {"host-a": 6, "host-b": 6}
    df, meta = rows(out)
    assert sorted(df["host"].unique()) == HOSTS
    # the worker that ran each trial is the host it was planned for, on that host's own directory
    assert (df["worker"] == df["host"]).all()
    for h, d in dirs.items():
        mine = df[df["host"] == h]
        assert set(mine["target"]) == {f"{h}:{d}"}
        assert mine["target_label"].str.startswith(f"{h}: ").all()
    pids = cluster.client.run(os.getpid)
    by_name = cluster.hosts()
    # a fresh sweep worker per round, a child of its host's Dask worker
    assert df.groupby(["host", "round"])["worker_pid"].nunique().eq(1).all()
    assert not set(df["worker_pid"]) & set(pids.values())
    assert set(meta["notes"]["hosts"]) == set(HOSTS) and set(meta["plan"]["fleet"]) == set(HOSTS)
    assert meta["notes"]["fleet"]["host-a"]["fsyncstudy"] == fleet.__version__
    assert set(by_name) == set(HOSTS)
    # each host has its own round order
    order = {h: list(df[(df["host"] == h) & (df["round"] == 0)].sort_values("position")["config"]) for h in HOSTS}
    planned = {h: [p.config.key for p in sweep.plan(tiny(), [str(dirs[h])], f"0/{h}") if p.round == 0] for h in HOSTS}
    assert order == planned
    # resuming finds everything done
    again = fleet.run_fleet_sweep(out, tiny(), "unused", targets=targets_of(dirs), fleet=cluster, progress=False)
    assert again.ran == 0 and again.skipped == 12
    assert not list(dirs["host-a"].iterdir()) and not list(dirs["host-b"].iterdir())


def test_a_worker_killed_mid_run_fails_its_trial_and_a_resume_completes_it(cluster, dirs, tmp_path):
    out = tmp_path / "fleet"
    prof = tiny(duration_s=0.6)
    victim = cluster.hosts()["host-b"]
    pid = cluster.client.run(os.getpid, workers=[victim])[victim]

    def kill_when_host_b_has_a_row():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            table = out / sweep.TABLE
            if table.exists() and table.read_text().count("host-b") >= 1:
                time.sleep(0.3)          # into its next trial
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_host_b_has_a_row)
    killer.start()
    s = fleet.run_fleet_sweep(out, prof, "unused", targets=targets_of(dirs), fleet=cluster, progress=False)
    killer.join()
    assert "host-b" in s.lost and s.hosts["host-a"] == 6
    df, _ = rows(out)
    lost = df[df["status"] != "ok"]
    assert len(lost) == 1 and lost["host"].iloc[0] == "host-b" and "WorkerLost" in lost["error"].iloc[0]
    assert (df[df["host"] == "host-a"]["status"] == "ok").all()
    # the nanny starts host-b again under the same name: the same command resumes and completes it
    cluster.wait_for(HOSTS, 60)
    again = fleet.run_fleet_sweep(out, prof, "unused", targets=targets_of(dirs), fleet=cluster, progress=False)
    assert again.failed == 0 and again.hosts == {"host-b": 6 - (s.hosts["host-b"] - 1)}
    df, _ = rows(out)
    ok = df[df["status"] == "ok"]
    assert len(ok) == 12 and sorted(ok.groupby("host").size()) == [6, 6]
    assert not list(dirs["host-b"].iterdir())   # the killed trial's log was removed (by its worker, or the resume)


def test_an_unreachable_scheduler_fails_in_seconds():
    t = time.monotonic()
    with pytest.raises(fleet.FleetError, match="did not answer"):
        with fleet.Fleet("tcp://127.0.0.1:9", timeout_s=2):
            pass
    assert time.monotonic() - t < 15


def test_the_cli_says_so_in_one_line_and_exits_nonzero(tmp_path):
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "fsyncstudy", "sweep", "--scheduler", "127.0.0.1:9", "--out",
                        str(tmp_path / "x")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode != 0 and "did not answer" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2
    assert time.monotonic() - t < 30


def test_a_local_fleet_keeps_dasks_scratch_space_in_a_directory_it_removes(cluster, tmp_path):
    # the module's cluster: every worker's scratch space inside the fleet's own temporary directory
    scratch = cluster.client.run(lambda dask_worker: dask_worker.local_directory)
    assert cluster.scratch and all(d.startswith(cluster.scratch + os.sep) for d in scratch.values()), scratch
    # a command that starts one and stops it leaves nothing in the temporary directory (dask-scratch-space/ was)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = subprocess.run([sys.executable, "-m", "fsyncstudy", "fleet", "status", "--scheduler", "local:1"],
                       capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ, "TMPDIR": str(tmp)})
    assert r.returncode == 0 and "local-0" in r.stdout, r.stderr
    assert os.listdir(tmp) == []


def test_a_host_that_never_joins_is_named(cluster, tmp_path):
    with pytest.raises(fleet.FleetError, match="host-c did not join"):
        fleet.run_fleet_sweep(tmp_path / "x", tiny(), "unused", hosts=["host-a", "host-c"], fleet=cluster,
                              progress=False, join_timeout_s=1)


def test_another_version_is_refused_before_anything_is_measured(cluster, dirs, tmp_path, monkeypatch):
    monkeypatch.setattr(fleet, "__version__", "0.0.0-other")
    with pytest.raises(fleet.FleetError, match=r"refused before measuring.*host-a: fsyncstudy 0\.1\.0 \(here 0\.0\.0-other\)"):
        fleet.run_fleet_sweep(tmp_path / "x", tiny(), "unused", targets=targets_of(dirs), fleet=cluster,
                              progress=False)
    assert not (tmp_path / "x").exists()


def test_version_checks_name_each_difference():
    mine = fleet.host_facts()
    other = {**mine, "python": "3.10.4", "engine_sha256": "x"}
    same_minor = {**mine, "python": mine["python"].rsplit(".", 1)[0] + ".99"}
    assert fleet.check_versions({"a": mine, "c": same_minor}) == []
    [line] = fleet.check_versions({"b": other})
    assert line.startswith("b: ") and "engine_sha256 x" in line and "python 3.10" in line


def test_targets_go_to_their_host():
    assert fleet.split_targets(["host-a:/data", "host-b:lab:xfs", "/shared"], HOSTS) == {
        "host-a": ["/data", "/shared"], "host-b": ["lab:xfs", "/shared"]}
    assert fleet.split_targets(None, HOSTS) == {"host-a": None, "host-b": None}
    with pytest.raises(fleet.FleetError, match="no host named 'host-z'"):
        fleet.split_targets(["host-z:/data"], HOSTS)
    assert fleet.parse_scheduler("local:3") == ("local", 3)
    assert fleet.parse_scheduler("10.0.0.1:8786") == ("tcp://10.0.0.1:8786", None)
    with pytest.raises(fleet.FleetError):
        fleet.parse_scheduler("local:0")


def test_the_node_and_the_local_study_never_import_dask():
    code = ("import sys, fsyncstudy.node, fsyncstudy.sweep, fsyncstudy.study, fsyncstudy.cli, fsyncstudy.report\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_the_outlier_is_the_host_far_from_the_others():
    from fsyncstudy import analysis
    import pandas as pd
    rows = []
    for config in ("always", "none"):
        for host, m in (("a", 100.0), ("b", 104.0), ("c", 50.0)):
            rows.append({"role": "durable 1", "config_label": config, "host": host, "n": 3, "mean": m,
                         "low": m * 0.95, "high": m * 1.05, "target_label": f"{host}: x"})
    spread = analysis.fleet_spread(pd.DataFrame(rows))
    assert list(spread["outlier"]) == ["c", "c"] and spread["apart"].all()
    assert spread["ratio"].round(2).tolist() == [2.08, 2.08]
    assert analysis.fleet_outlier(spread) == {"host": "c", "cells": 2, "of": 2, "how": "the outlier"}
    two = analysis.fleet_spread(pd.DataFrame([r for r in rows if r["host"] != "b"]))
    assert two["outlier"].isna().all()
    assert analysis.fleet_outlier(two)["host"] == "c"
    close = pd.DataFrame([{**r, "low": r["mean"] * 0.3, "high": r["mean"] * 3} for r in rows if r["host"] != "b"])
    assert analysis.fleet_outlier(analysis.fleet_spread(close)) == {}


def test_the_load_study_runs_on_the_fleet_too(cluster, dirs, tmp_path):
    from fsyncstudy import loadstudy
    prof = loadstudy.LoadProfile("fleet-test", rates=(500,), strategies=(("always", 1), ("none", 1)), trials=1,
                                 warmup_rounds=0, duration_s=0.1, lab_targets=(), busy=())
    out = tmp_path / "load"
    s = fleet.run_fleet_load(out, prof, "unused", targets=targets_of(dirs), fleet=cluster, progress=False)
    assert s.failed == 0 and s.hosts == {"host-a": 2, "host-b": 2}
    df, meta = dataset.load(out, loadstudy.KIND)
    assert (df["worker"] == df["host"]).all() and sorted(df["host"].unique()) == HOSTS
    assert set(df["target"]) == {f"{h}:{d}" for h, d in dirs.items()}
    assert meta["plan"]["fleet"] == {h: [str(d)] for h, d in dirs.items()}
