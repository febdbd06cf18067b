"""The sweep: its plan, durable append-only results, resume, and surviving a kill."""
import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from fsyncstudy import catalog
from fsyncstudy.dataset import read_rows
from fsyncstudy.profiles import PROFILES
from fsyncstudy.sweep import COLUMNS, KIND, SCHEMA, Config, Profile, load, plan, run_sweep
from conftest import REPO, SHM, leftovers

TINY = Profile("tiny", trials=2, warmup_rounds=1, min_duration_s=0.02, min_intervals=3, batch_ms=(0, 10),
               group=((0, 2),), prealloc_compare=("always",), warmup_duration_s=0.01)


def test_every_round_runs_every_configuration_once_in_a_seeded_order():
    targets = ["/a", "/b"]
    p = plan(TINY, targets, seed=7)
    cells = len(TINY.configs()) * len(targets)
    assert len(p) == cells * (TINY.trials + TINY.warmup_rounds)
    for r in range(3):
        in_round = [(x.target, x.config.key) for x in p if x.round == r]
        assert len(set(in_round)) == cells == len(in_round)
    assert [x.warmup for x in p] == [x.round < TINY.warmup_rounds for x in p]
    assert [x.ident for x in plan(TINY, targets, seed=7)] == [x.ident for x in p]
    assert [x.ident for x in plan(TINY, targets, seed=8)] != [x.ident for x in p]


def test_the_profiles_cover_what_the_study_promises():
    std = {c.key for c in PROFILES["standard"].sweep.configs()}
    batch = {c.split("/")[0] for c in std if c.startswith("batch_")}
    # the interval from 0 to 100 ms, the task's 10 ms, at least 5 points, and every interval the crash
    # experiment cuts (each throughput has its loss window beside it)
    assert {"batch_0ms", "batch_10ms", "batch_100ms"} <= batch and len(batch) >= 5
    assert {s for s in PROFILES["standard"].crash.power[0] if s.startswith("batch_")} <= batch
    ns = sorted(int(b[6:-2]) for b in batch)
    assert max(b - a for a, b in zip(ns, ns[1:])) <= 50
    # group commit at 0, 10 and 50 ms with 4 writers, at 0 ms with 16, and with one writer at 0 ms
    assert {f"group_{n}ms/w4/append/fdatasync" for n in (0, 10, 50)} | {"group_0ms/w16/append/fdatasync"} <= std
    # the write paths on every durable target, each beside the plain path it changes
    paths = {c.key for c in PROFILES["standard"].sweep.write_paths}
    assert {"always/w1/append/rwf_dsync", "always/w1/append/direct_dsync", "batch_10ms/w1/append/fdatasync/buffered",
            "none/w1/append/fdatasync/bps1048576", "always/w1/append/fdatasync/seg32768"} == paths
    assert {c.prealloc for c in PROFILES["standard"].sweep.device_paths} == {"fallocate", "zero-fill"}
    assert "group_0ms/w1/append/fdatasync" in std
    assert {"always/w1/zero-fill/fdatasync", "batch_10ms/w1/zero-fill/fdatasync", "always/w1/append/fdatasync",
            "none/w1/append/fdatasync"} <= std
    assert PROFILES["standard"].sweep.trials == 5 and PROFILES["quick"].sweep.trials == 3
    quick = {c.key for c in PROFILES["quick"].sweep.configs()}
    assert {"batch_0ms/w1/append/fdatasync", "batch_100ms/w1/append/fdatasync", "group_0ms/w4/append/fdatasync"} <= quick


def test_a_trial_lasts_the_minimum_and_several_intervals():
    p = PROFILES["standard"].sweep
    assert p.duration_s(Config("always")) == p.min_duration_s
    assert p.duration_s(Config("batch_100ms")) == max(p.min_duration_s, p.min_intervals * 0.1)


def test_a_sweep_writes_every_trial_with_its_metadata(disk_dir, tmp_path):
    out = tmp_path / "study"
    targets = [str(disk_dir)] + ([str(SHM)] if SHM.is_dir() else [])
    s = run_sweep(out, profile=TINY, targets=targets, seed=3, progress=False)
    n = len(TINY.configs()) * len(targets) * 3
    assert (s.ran, s.skipped, s.failed) == (n, 0, 0)
    rows = read_rows(out / "trials.csv")
    assert len(rows) == n and list(rows[0]) == COLUMNS
    assert all(r["status"] == "ok" for r in rows)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["plan"]["seed"] == 3 and meta["plan"]["profile"]["name"] == "tiny" and meta["plan"]["targets"] == targets
    env = meta["environment"]
    assert env["kernel"] and env["cpu"] is not None and env["versions"]["python"] and "commit" in env["git"]
    assert set(meta["environment"]["targets"]) == set(targets)
    df, _ = load(out)
    assert len(df) == n - len(TINY.configs()) * len(targets)  # the warm-up round is left out
    assert (df["elapsed_s"] >= 0.02).all()
    # the warm-up round's trials are short (one interval at least), the counted ones run the full rule
    warm = [r for r in rows if r["warmup"] in ("1", "True", "true")]
    assert warm and {float(r["duration_rule_s"]) for r in warm} == {0.01}
    assert set(df["duration_rule_s"]) == {0.02, 0.03}
    assert leftovers(disk_dir) == []


def test_a_rerun_resumes_and_skips_finished_trials(disk_dir, tmp_path):
    out = tmp_path / "study"
    first = run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False, limit=5)
    assert first.ran == 5
    second = run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False)
    assert second.skipped == 5 and second.ran == first.planned - 5
    rows = read_rows(out / "trials.csv")
    keys = Counter((r["round"], r["target"], r["config"]) for r in rows)
    assert len(keys) == first.planned and max(keys.values()) == 1
    assert run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False).ran == 0


def test_resuming_into_another_study_is_refused(disk_dir, tmp_path):
    out = tmp_path / "study"
    run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False, limit=1)
    with pytest.raises(ValueError, match="different seed"):
        run_sweep(out, profile=TINY, targets=[str(disk_dir)], seed=99, progress=False)
    with pytest.raises(ValueError, match="different profile"):
        run_sweep(out, profile=PROFILES["quick"].sweep, targets=[str(disk_dir)], progress=False)


def test_a_torn_last_row_is_dropped_and_repaired(disk_dir, tmp_path):
    out = tmp_path / "study"
    run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False, limit=3)
    path = out / "trials.csv"
    with open(path, "a") as f:
        f.write("1,0,3,/half/a/row")  # what a power cut mid-row could leave
    assert len(read_rows(path)) == 3
    run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False, limit=1)
    rows = read_rows(path)
    assert len(rows) == 4 and "/half/a/row" not in path.read_text()


def _rows_in(path) -> int:
    try:
        return max(0, path.read_text().count("\n") - 1)
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_sweep_killed_mid_way_keeps_every_finished_trial_and_resumes(sig, disk_dir, tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "fsyncstudy", "sweep", "--profile", "quick", "--out", str(out), "--target",
           str(disk_dir), "--quiet"]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _rows_in(out / "trials.csv") < 4 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
    text = (out / "trials.csv").read_text()
    assert text.endswith("\n")  # every row whole: one write() per row
    kept = read_rows(out / "trials.csv")
    assert len(kept) >= 4 and len(kept) == text.count("\n") - 1
    if sig == signal.SIGINT:
        assert "resumes" in err
        assert leftovers(disk_dir) == []  # the interrupted trial removed its log
    s = run_sweep(out, profile=PROFILES["quick"].sweep, targets=[str(disk_dir)], progress=False)
    assert s.skipped == len(kept) and s.ran + s.skipped == s.planned
    assert leftovers(disk_dir) == []  # a killed run's log is cleaned up by the next
    keys = Counter((r["round"], r["config"]) for r in read_rows(out / "trials.csv"))
    assert len(keys) == s.planned and max(keys.values()) == 1


def test_resuming_a_dataset_with_other_columns_is_refused(disk_dir, tmp_path):
    out = tmp_path / "study"
    run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False, limit=1)
    path = out / "trials.csv"
    lines = path.read_text().split("\n", 1)
    path.write_text(lines[0].replace(",warnings", "") + "\n" + lines[1])  # as an older version wrote it
    with pytest.raises(ValueError, match="another version"):
        run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False)


def test_default_dataset_names_change_with_the_study_definition():
    from dataclasses import asdict
    def key(name):
        return catalog.key(asdict(PROFILES[name].sweep), SCHEMA)
    assert key("quick") != key("standard")
    assert catalog.default_out(KIND, "quick").name.endswith(key("quick"))
    # targets named explicitly are another dataset; the same ones, in any order, the same
    assert catalog.default_out(KIND, "quick", targets=["/a", "/b"]) == catalog.default_out(KIND, "quick",
                                                                                           targets=["/b", "/a"])
    assert catalog.default_out(KIND, "quick", targets=["/a"]) != catalog.default_out(KIND, "quick")


def test_the_report_pipeline_plans_its_time_from_each_phase():
    from fsyncstudy import profiles
    q = PROFILES["quick"]
    e = profiles.eta(q, targets=2, default_targets=2, kinds=("process",))
    def per_round(configs):
        return sum(q.sweep.duration_s(c) + profiles.SWEEP_OVERHEAD_S for c in configs)
    # 2 targets, 1 warm-up + 3 rounds; the write paths on the one that can be durable (not /dev/shm)
    assert e["sweep"] == pytest.approx(2 * 4 * per_round(q.sweep.configs()) + 4 * per_round(q.sweep.write_paths))
    # 3 strategies, 5 process cuts each, and 3 process cuts of batch_10ms with buffered writes
    assert e["crash"] == pytest.approx((3 * 5 + 3) * profiles.CUT_S)
    assert e["peers"] == pytest.approx(3 * 2 * profiles.PEER_ROUND_S["fio"])
    std = profiles.eta(PROFILES["standard"], 9, 2, ("power", "process"))
    # 100 power cuts for always and group_0ms, 40 for the 6 that may lose; 50 process cuts of always, 40 of 2;
    # the write paths: power 40 + 40 + 40 + 20 + 20, process 20 + 20
    assert std["crash"] == pytest.approx((2 * 100 + 6 * 40 + 50 + 2 * 40 + 160 + 40) * profiles.CUT_S)
    assert profiles.eta(PROFILES["standard"], 9, 2, ("process",))["crash"] == pytest.approx(
        (50 + 2 * 40 + 40) * profiles.CUT_S)
    # the real databases' power cuts are planned only where the power can be cut
    assert std["real databases"] > profiles.eta(PROFILES["standard"], 9, 2, ("process",))["real databases"] > 0


def test_each_round_runs_in_its_own_fresh_worker_process(disk_dir, tmp_path):
    import os
    out = tmp_path / "study"
    run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False)
    rows = read_rows(out / "trials.csv")
    pids = {}
    for r in rows:
        pids.setdefault(r["round"], set()).add(r["worker_pid"])
    assert all(len(p) == 1 for p in pids.values())                    # one process per round...
    assert len({next(iter(p)) for p in pids.values()}) == len(pids)   # ...a different one each round
    assert str(os.getpid()) not in {next(iter(p)) for p in pids.values()}
    assert len({r["run_id"] for r in rows}) == 1 and all(r["host"] and r["boot_id"] for r in rows)


def test_a_worker_that_dies_fails_its_trial_and_a_resume_runs_it_again(disk_dir, tmp_path, monkeypatch):
    from fsyncstudy import sweep
    real_start, calls = sweep.Worker._start, []

    def start(self):
        calls.append(1)
        if len(calls) == 2:     # the second round's worker dies before answering
            return subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
        return real_start(self)
    monkeypatch.setattr(sweep.Worker, "_start", start)
    out = tmp_path / "study"
    s = run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False)
    assert s.failed == 1 and any("WorkerDied" in e and "exit status 3" in e for e in s.errors)
    monkeypatch.setattr(sweep.Worker, "_start", real_start)
    again = run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False)
    assert again.ran == 1 and again.retried == 1 and again.failed == 0
    assert leftovers(disk_dir) == []


def test_a_sweep_stops_when_its_measuring_code_changes_under_it(disk_dir, tmp_path, monkeypatch):
    from fsyncstudy import dataset, sweep
    out = tmp_path / "study"
    # the study started under other code than the workers now load from disk
    monkeypatch.setattr(dataset, "engine_digest", lambda: "0123456789ab")
    with pytest.raises(sweep.EngineChanged, match="measuring code changed while this study ran"):
        run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False)
    assert read_rows(out / "trials.csv") == []   # nothing measured by the other code was kept
    assert leftovers(disk_dir) == []


@pytest.mark.parametrize("name", ["quick", "standard", "full"])
def test_every_group_commit_writer_count_has_always_with_the_same_writers(name):
    # like with like: group commit with W writers is compared with W writers each syncing their own entries
    configs = PROFILES[name].sweep.configs()
    group_writers = {c.writers for c in configs if c.strategy.startswith("group_")}
    always_writers = {c.writers for c in configs if c.strategy == "always" and c.prealloc == "append"}
    assert group_writers <= always_writers | {1}
    assert 1 in always_writers


def test_a_profile_field_added_later_is_left_out_of_the_plan_while_unset_so_older_datasets_resume():
    from dataclasses import replace

    from fsyncstudy import dataset
    assert "warmup_duration_s" not in dataset.plan_of(replace(TINY, warmup_duration_s=None))
    assert dataset.plan_of(TINY)["warmup_duration_s"] == 0.01


def test_the_write_paths_run_where_a_sync_can_be_durable_and_one_that_cannot_run_is_recorded_with_why(
        disk_dir, tmp_path, monkeypatch):
    from dataclasses import replace

    from fsyncstudy import sweep
    prof = replace(TINY, trials=1, warmup_rounds=0, batch_ms=(10,), group=(), prealloc_compare=(),
                   write_paths=(Config("always", sync_method="rwf_dsync"), Config("batch_10ms", write_mode="buffered"),
                                Config("always", sync_method="direct_dsync")),
                   device_paths=(Config("always", sync_method="direct_dsync", prealloc="fallocate"),))
    real = sweep.run_trial

    def no_direct_io(*args, **kw):   # the probe on a target that refuses O_DIRECT
        if kw.get("sync_method") == "direct_dsync" and kw.get("prealloc") == "append":
            raise OSError(22, "direct_dsync: this filesystem refuses O_DIRECT")
        return real(*args, **kw)
    monkeypatch.setattr(sweep, "run_trial", no_direct_io)
    targets = [str(disk_dir)] + ([str(SHM)] if SHM.is_dir() else [])
    out = tmp_path / "study"
    s = run_sweep(out, profile=prof, targets=targets, progress=False)
    assert s.failed == 0 and any("cannot run on" in n and "refuses O_DIRECT" in n for n in s.notes)
    df, meta = load(out)
    on_disk = set(df[df["target"] == str(disk_dir)]["config"])
    assert {"always/w1/append/rwf_dsync", "batch_10ms/w1/append/fdatasync/buffered",
            "always/w1/fallocate/direct_dsync"} <= on_disk
    assert "always/w1/append/direct_dsync" not in on_disk       # unavailable: not measured, and said why
    assert "refuses O_DIRECT" in meta["notes"]["unavailable"][str(disk_dir)]["always/w1/append/direct_dsync"]
    assert df[df["config"] == "batch_10ms/w1/append/fdatasync/buffered"]["write_mode"].eq("buffered").all()
    assert df[df["config"] == "always/w1/append/rwf_dsync"]["sync_method"].eq("rwf_dsync").all()
    if SHM.is_dir():   # a volatile target gets the plain grid only
        assert set(df[df["target"] == str(SHM)]["config"]) == {c.key for c in prof.configs()}
