"""Real databases, started and stopped by us: SQLite, PostgreSQL and Redis on a real directory, each
setting beside the strategy that predicts it, power cuts under them, and nothing left behind, also
after a failure, Ctrl-C, SIGTERM or SIGKILL.

`.ci/run` sets FSYNCSTUDY_REQUIRE_DATABASES=sqlite,postgres,redis, so there a missing database fails
instead of skipping (`make test` installs them).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, past_a_burst
from fsyncstudy import analysis, realdb, realstudy

MISSING = realdb.availability()
REQUIRED = set(filter(None, os.environ.get("FSYNCSTUDY_REQUIRE_DATABASES", "").split(",")))


def needs(db):
    if db in MISSING:
        if db in REQUIRED:
            pytest.fail(f"FSYNCSTUDY_REQUIRE_DATABASES names {db}, but: {MISSING[db]}")
        pytest.skip(f"{db}: {MISSING[db]}")


@pytest.fixture
def disk_dir(disk_dir):
    """A directory on disk that PostgreSQL's user can reach (mkdtemp makes it 0700; the way to it,
    conftest's scratch directory, is open to other users, wherever the clone is)."""
    disk_dir.chmod(0o755)
    return disk_dir


def ours(d: Path) -> list[str]:
    return sorted(p.name for p in Path(d).iterdir() if p.name.startswith(realdb.PREFIX))


def servers(where: Path) -> list[str]:
    """The processes working in our data directories in ``where``: postgres and redis-server both
    change into their data directory (and redis-server rewrites its command line)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cwd = os.readlink(p / "cwd")
            except OSError:
                continue
            if cwd.startswith(f"{where}/{realdb.PREFIX}"):
                out.append(f"{p.name}: {cwd}")
    return out


def socket_dirs(pid: int | None = None) -> set[str]:
    """Our socket directories, of the process ``pid`` (default: this one)."""
    import tempfile
    return {p.name for db in realdb.DATABASES
            for p in Path(tempfile.gettempdir()).glob(f"{realdb.SOCKET_PREFIX}{db}-{pid or os.getpid()}-*")}


def shared_memory() -> set[str]:
    """PostgreSQL's dynamic shared memory segments and System V segments on this machine."""
    ipcs = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout.splitlines()
    return ({p.name for p in Path("/dev/shm").glob("PostgreSQL.*")}
            | {f"sysv {line.split()[1]}" for line in ipcs if " postgres " in f" {line} "})


@pytest.mark.parametrize("db", realdb.DATABASES)
def test_each_database_starts_commits_and_stops_leaving_nothing(db, disk_dir):
    needs(db)
    s = realdb.settings(db)[0]
    before = shared_memory()
    with realdb.open_database(disk_dir, s) as d:
        assert ours(disk_dir) == [d.home.name]
        c = d.client()
        for _ in range(5):
            c.commit(b"x" * 128)
        assert c.count() == 5 and c.check() == "ok"
        c.close()
        if db != "sqlite":
            assert d.proc.poll() is None and servers(disk_dir)
        if db == "postgres":
            assert shared_memory() - before    # what the next assertion looks for is there while it runs
    assert ours(disk_dir) == [] and servers(disk_dir) == [] and socket_dirs() == set()
    # nor its shared memory (a server stopped by SIGKILL leaves it behind, in RAM, for good)
    assert shared_memory() - before == set()


def test_a_server_that_fails_to_start_leaves_nothing_and_says_why(disk_dir):
    needs("postgres")
    bad = realdb.Setting("postgres", "bad", (("synchronous_commit", "sometimes"),), 1, "always", 1, 128, "", 0.0, "")
    with pytest.raises(realdb.DatabaseError, match="synchronous_commit"):
        with realdb.open_database(disk_dir, bad):
            pass
    assert ours(disk_dir) == [] and servers(disk_dir) == [] and socket_dirs() == set()


def others_beside(dev, run):
    """``run()``'s workload, the device flushes per commit that were other processes', and their rate in the
    window before (flushes a second): the flush counter
    is device wide, so their rate is measured in a quiet window before and after, the larger counted over
    the run (on a disk we share, our run only slows them, so this does not undercount them)."""
    quiet = lambda: (realdb.quiet_flushes_per_sec(dev, window_s=0.2) or 0.0) if dev else 0.0  # noqa: E731
    before = quiet()
    w = run()
    return w, max(before, quiet()) * w.elapsed_s / w.commits, before


@pytest.mark.parametrize("db", realdb.DATABASES)
def test_the_workload_counts_every_commit_and_what_reached_the_device(db, disk_dir):
    needs(db)
    from fsyncstudy.targets import describe
    dev = describe(disk_dir).block_device
    s = realdb.BY_KEY[{"sqlite": "sqlite/wal-full", "postgres": "postgres/on", "redis": "redis/always"}[db]]
    with realdb.open_database(disk_dir, s) as d:
        # a WAL synced twice per commit would be over the bound in every attempt (``past_a_burst``)
        runs = []

        def attempt():
            runs.append(others_beside(dev, lambda: realdb.run_workload(d.client, 2, 0.3, server_pids=d.pids,
                                                                        block_device=dev)))
            return runs[-1]
        w, others, _ = past_a_burst(attempt, lambda r: not (dev and db == "sqlite")
                                    or r[0].device_flushes_per_commit - r[1] <= 1.3)
        c = d.client()
        assert c.count() == sum(r.commits for r, _, _ in runs) > 0      # every acknowledged commit is in the database
        c.close()
    assert w.commits_per_sec == pytest.approx(w.commits / w.elapsed_s)
    assert 0.3 <= w.elapsed_s < 1.5 and w.latency_us_p50 > 0 and w.latency_hist
    if dev and db == "sqlite":
        # each commit syncs the WAL once (two clients: no sharing in SQLite, one writer at a time)
        assert w.device_flushes_per_commit >= 0.9
        assert w.device_flushes_per_commit - others <= 1.3, (w.device_flushes_per_commit, others, len(runs))
    if db != "sqlite":
        assert w.server_cpu_us_per_commit > 0 and w.server_write_calls_per_commit > 0


def test_a_neighbour_syncing_on_the_same_disk_is_measured_and_not_counted_as_ours(disk_dir, neighbour):
    needs("sqlite")
    from fsyncstudy.targets import describe
    dev = describe(disk_dir).block_device
    if not dev:
        pytest.skip(f"{disk_dir} has no block device to count flushes on")
    with realdb.open_database(disk_dir, realdb.BY_KEY["sqlite/wal-full"]) as d:
        w, others, quiet = past_a_burst(
            lambda: others_beside(dev, lambda: realdb.run_workload(d.client, 2, 0.3, block_device=dev)),
            lambda r: r[0].device_flushes_per_commit - r[1] <= 1.3)
    assert neighbour.syncs() > 10 and quiet > 10   # the quiet window sees the neighbour's flushes
    assert w.device_flushes_per_commit >= 0.9 and w.device_flushes_per_commit - others <= 1.3, \
        (w.device_flushes_per_commit, others)


def test_an_open_loop_offers_its_rate_and_says_when_it_cannot_keep_up(disk_dir):
    with realdb.open_database(disk_dir, realdb.BY_KEY["sqlite/wal-off"]) as d:
        light = realdb.run_workload(d.client, 1, 0.5, rate=400, seed=3)
        c = d.client()
        assert c.count() == light.commits
        c.close()
    assert 300 <= light.offered_rate <= 500            # Poisson: about 200 arrivals in 0.5 s
    assert light.saturated is False and light.unserved == 0
    assert light.achieved_rate == pytest.approx(light.offered_rate, rel=0.05)
    with realdb.open_database(disk_dir, realdb.BY_KEY["sqlite/rollback-full"]) as d:
        heavy = realdb.run_workload(d.client, 1, 0.3, rate=200_000, seed=3)   # far beyond a synced commit's rate
    assert heavy.saturated is True and heavy.achieved_rate < 0.5 * heavy.offered_rate
    # commits that waited in the queue are timed from their arrival: far longer than one commit's call
    assert heavy.latency_us_p50 > 10 * light.latency_us_p50
    with realdb.open_database(disk_dir, realdb.BY_KEY["sqlite/wal-off"]) as d:
        closed = realdb.run_workload(d.client, 1, 0.1)
    assert closed.offered_rate is None and closed.saturated is None


def test_a_target_postgres_cannot_reach_is_a_clear_error_and_leaves_nothing(tmp_path):
    needs("postgres")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(realdb.DatabaseError, match="cannot reach"):
        with realdb.open_database(closed, realdb.BY_KEY["postgres/on"]):
            pass
    assert ours(closed) == [] and socket_dirs() == set()


def test_bad_workload_input_is_a_clear_error():
    with pytest.raises(ValueError, match="duration"):
        realdb.run_workload(lambda: None, 1, -1)
    with pytest.raises(ValueError, match="clients"):
        realdb.run_workload(lambda: None, 0, 0.1)
    with pytest.raises(ValueError, match="unknown database"):
        realdb.settings("mysql")
    with pytest.raises(ValueError, match="unknown setting"):
        realdb.settings("redis", ["sometimes"])


def test_every_setting_names_a_strategy_and_a_promise_that_fit():
    from fsyncstudy.strategies import parse
    for s in realdb.SETTINGS:
        st = parse(s.predict)
        # durable at commit is predicted by a strategy that acknowledges after the sync, and the other way round
        assert (s.promise_ms == 0) == st.acks_durable, s.key
        assert s.mapping and s.promise
    assert {s.db for s in realdb.SETTINGS} == set(realdb.DATABASES)


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "fsyncstudy", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _wait_for_server(target: Path, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ours(target) and servers(target):
            return
        time.sleep(0.05)
    raise AssertionError("the server never came up")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_stops_the_server_and_removes_its_files(sig, disk_dir):
    needs("postgres")
    p = _cli("realdb", "--db", "postgres", "--setting", "on", "--duration", "60", "--target", str(disk_dir))
    _wait_for_server(disk_dir)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "Traceback" not in err
    assert ours(disk_dir) == [] and servers(disk_dir) == [] and socket_dirs(p.pid) == set()


def test_a_killed_run_takes_its_server_along_and_the_next_run_removes_its_files(disk_dir):
    needs("redis")
    p = _cli("realdb", "--db", "redis", "--setting", "no", "--duration", "60", "--target", str(disk_dir))
    _wait_for_server(disk_dir)
    p.kill()
    p.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while servers(disk_dir) and time.monotonic() < deadline:   # PR_SET_PDEATHSIG: the kernel kills it
        time.sleep(0.05)
    assert servers(disk_dir) == []
    left = ours(disk_dir)
    assert left and socket_dirs(p.pid)   # SIGKILL leaves no chance to clean up...
    assert realdb.remove_stale(disk_dir) == left   # ...so the next run does
    assert ours(disk_dir) == [] and socket_dirs(p.pid) == set()


def test_the_study_pairs_each_setting_with_its_prediction_and_resumes(tmp_path, disk_dir):
    keys = [k for k in ("sqlite/wal-full", "redis/no") if k.split("/")[0] not in MISSING]
    plan = realstudy.RealPlan("tiny", trials=2, warmup_rounds=0, duration_s=0.1, settings=tuple(keys),
                              rates=(300.0,), rate_settings=("sqlite/wal-full",))
    out = tmp_path / "rd"
    s = realstudy.run_real_study(out, plan, [str(disk_dir)], progress=False)
    assert s.ran == s.planned == 2 * 2 * (len(keys) + 1) and s.failed == 0
    df, meta = realstudy.load(out)
    assert set(meta["notes"]["settings"]) == set(keys)
    at = analysis.realdb_at_rate(df)
    assert list(at["key"]) == ["sqlite/wal-full"] and list(at["rate"]) == [300.0] and at["trials"].iloc[0] == 2
    df = df[df["rate"] == 0]
    for key, g in df.groupby("key"):
        assert sorted(g["side"]) == ["db", "db", "prediction", "prediction"]
        # the side that went first alternates by round
        assert set(g["first"]) == {"db", "prediction"}
    pred = analysis.realdb_predictions(df, meta["notes"]["settings"])
    assert len(pred) == len(keys) and (pred["rounds"] == 2).all() and pred["ratio"].gt(0).all()
    again = realstudy.run_real_study(out, plan, [str(disk_dir)], progress=False)
    assert again.ran == 0 and again.skipped == s.planned
    assert ours(disk_dir) == []


def test_a_missing_database_is_recorded_with_its_reason_and_the_rest_goes_on(tmp_path, disk_dir, monkeypatch):
    monkeypatch.setattr(realdb, "availability", lambda: {"redis": "redis-server is not installed (test)"})
    plan = realstudy.RealPlan("tiny", trials=1, warmup_rounds=0, duration_s=0.1,
                              settings=("sqlite/wal-off", "redis/no"))
    s = realstudy.run_real_study(tmp_path / "rd", plan, [str(disk_dir)], progress=False)
    df, meta = realstudy.load(tmp_path / "rd")
    assert set(df["db"]) == {"sqlite"} and meta["notes"]["missing"] == {"redis": "redis-server is not installed (test)"}
    assert s.missing == meta["notes"]["missing"]


# -- the analysis, on frames whose answers are known by hand -------------------------------------------

def test_predictions_pair_by_round_and_losses_judge_against_the_promise():
    rows = []
    for rnd, (db, pr) in enumerate([(100.0, 200.0), (120.0, 240.0), (90.0, 180.0)]):
        for side, v in (("db", db), ("prediction", pr)):
            rows.append({"target": "/t", "target_label": "ext4", "key": "x/y", "db": "x", "setting": "y",
                         "strategy": "always", "clients": 1, "side": side, "round": rnd, "commits_per_sec": v,
                         "latency_us_p50": 1.0, "device_flushes_per_commit": 4.0 if side == "db" else 1.0,
                         "device_bytes_per_commit": 4096.0, "client_cpu_us_per_commit": 10.0,
                         "server_cpu_us_per_commit": None, "server_write_calls_per_commit": None})
    p = analysis.realdb_predictions(pd.DataFrame(rows)).iloc[0]
    assert p["ratio"] == pytest.approx(0.5) and p["ratio_high"] - p["ratio_low"] < 1e-9  # the same ratio each round
    assert "flushes per commit 4.00 against 1.00" in analysis.prediction_why(p)
    cuts = pd.DataFrame([
        {"key": "a/durable", "db": "a", "setting": "durable", "error": "", "opened": True, "acked": 10, "lost_acked": 0,
         "oldest_lost_age_ms": None, "promise_ms": 0.0},
        {"key": "a/sec", "db": "a", "setting": "sec", "error": "", "opened": True, "acked": 10, "lost_acked": 3,
         "oldest_lost_age_ms": 900.0, "promise_ms": 1000.0},
        {"key": "a/late", "db": "a", "setting": "late", "error": "", "opened": True, "acked": 10, "lost_acked": 3,
         "oldest_lost_age_ms": 1100.0, "promise_ms": 1000.0},
        {"key": "a/none", "db": "a", "setting": "none", "error": "", "opened": True, "acked": 10, "lost_acked": 10,
         "oldest_lost_age_ms": 50.0, "promise_ms": None},
        {"key": "a/broken", "db": "a", "setting": "broken", "error": "", "opened": False, "acked": 10,
         "lost_acked": None, "oldest_lost_age_ms": None, "promise_ms": 0.0},
    ])
    v = analysis.realdb_losses(cuts).set_index("key")["verdict"].to_dict()
    assert v == {"a/durable": "kept its promise", "a/sec": "kept its promise", "a/late": "broke its promise",
                 "a/none": "no promise in time", "a/broken": "did not reopen"}


def test_flushes_other_processes_made_are_said_and_not_put_on_the_database():
    def frame(quiet):
        rows = []
        for rnd in range(3):
            for side, flushes in (("db", 2.8), ("prediction", 1.9)):
                rows.append({"target": "/t", "target_label": "ext4", "key": "x/y", "db": "x", "setting": "y",
                             "strategy": "always", "clients": 1, "side": side, "round": rnd, "commits_per_sec": 500.0,
                             "commits": 250, "elapsed_s": 0.5, "latency_us_p50": 1.0,
                             "device_flushes_per_commit": flushes, "device_bytes_per_commit": 4096.0,
                             "device_quiet_flushes_per_sec": quiet, "client_cpu_us_per_commit": 10.0,
                             "server_cpu_us_per_commit": None, "server_write_calls_per_commit": None})
        return analysis.realdb_predictions(pd.DataFrame(rows))
    busy = frame(450.0)                       # 450 flushes/s * 0.5 s / 250 commits = 0.9 per commit
    row = busy.iloc[0]
    assert row["predicted_others_flushes_per_commit"] == pytest.approx(0.9)
    assert "not compared (0.90 per commit came from other processes)" in analysis.prediction_why(row)
    (said,) = analysis.flush_attribution(busy)
    assert "On ext4 other processes were flushing the same device" in said and "0.90 flushes per commit" in said
    quiet = frame(2.0)                        # 0.004 per commit: the counter is ours
    assert analysis.flush_attribution(quiet) == []
    assert "flushes per commit 2.80 against 1.90" in analysis.prediction_why(quiet.iloc[0])
    check = analysis.Checks()
    check(True, "a check that held")
    check(False, "a check whose premise failed", unless="others flushed the device")
    with pytest.raises(AssertionError, match="a check that failed: does not hold"):
        check(False, "a check that failed")
    text = check._repr_markdown_()
    assert "**1 checks on this data hold**: a check that held." in text
    assert "**1 not checked**" in text and "a check whose premise failed (others flushed the device)" in text


# -- power cuts ----------------------------------------------------------------------------------------

from fsyncstudy.lab import Lab, requirement  # noqa: E402

REASON = requirement("powercut")


@pytest.fixture(scope="module")
def powercut(scratch_base):
    if REASON is not None:
        pytest.skip(f"lab:powercut: {REASON}")
    # a lab of its own in the tests' scratch directory, outside the clone: PostgreSQL's user must reach
    # the mount inside (the lab opens its directory to other users)
    with Lab.for_run(targets=["powercut"], parent=scratch_base) as lab:
        if lab.skipped():
            pytest.fail(f"lab:powercut did not come up although nothing is missing: {lab.skipped()}")
        yield lab


@pytest.mark.parametrize("key,loses", [("sqlite/wal-full", False), ("sqlite/wal-off", True),
                                       ("redis/always", False), ("redis/no", True),
                                       ("postgres/on", False), ("postgres/off-200ms", True)])
def test_a_power_cut_loses_only_what_the_setting_did_not_sync(key, loses, powercut, tmp_path, monkeypatch):
    needs(key.split("/")[0])
    from fsyncstudy import cuts
    from fsyncstudy.cuts import PowerCut
    seen, run_cut = [], cuts.run_cut
    monkeypatch.setattr(cuts, "run_cut", lambda *a, **k: seen.append(run_cut(*a, **k)) or seen[-1])
    power = PowerCut("lab:powercut", powercut.lab_dir)
    mount = power.mount
    with realdb.CutSession(realdb.BY_KEY[key], power) as session:
        results = [session.cut(k, seed=1) for k in range(2)]
    assert ours(mount) == [] and len(seen) == 2
    for r, obs in zip(results, seen):
        assert r.error == "" and r.opened, r
        assert r.acked > 0
        # the cut never comes before its moment; on a busy machine it may come later
        since_ready_ms = (obs.t_cut - obs.t_ready) / 1e6
        assert since_ready_ms >= r.cut_after_ms
        if loses:
            # nothing it acknowledged was synced by then (the cut comes within its window): the newest
            # acknowledged commit at least is gone, and its age is the measured window, never older than
            # the client's readiness (2026-12-07, under load: a cut 92 ms late, so not cut_after_ms + 50)
            assert r.lost_acked > 0 and 0 <= r.oldest_lost_age_ms <= since_ready_ms
        else:
            assert r.lost_acked == 0 and r.recovered >= r.acked


def test_the_crash_study_records_each_cut_and_resumes(powercut, tmp_path):
    needs("redis")
    # a setting that may lose gets the plan's lossy_cuts; one that promises no loss gets all its cuts
    plan = realstudy.RealPlan("tiny", cuts=2, lossy_cuts=1, cut_settings=("sqlite/wal-full", "redis/everysec"))
    out = tmp_path / "cuts"
    s = realstudy.run_real_crash(out, plan, lab_dir=powercut.lab_dir, progress=False)
    assert s.ran == 3 and s.failed == 0 and s.lost_by_durable == []
    cuts, meta = realstudy.load_crash(out)
    assert sorted(cuts["key"]) == ["redis/everysec"] + ["sqlite/wal-full"] * 2
    assert meta["plan"]["cut_window_ms"]["redis/everysec"] == [30.0, 3000.0]
    assert meta["plan"]["cuts_per_setting"] == {"sqlite/wal-full": 2, "redis/everysec": 1}
    again = realstudy.run_real_crash(out, plan, lab_dir=powercut.lab_dir, progress=False)
    assert again.ran == 0 and again.skipped == 3
