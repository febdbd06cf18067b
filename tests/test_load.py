"""Open-loop load: arrivals at a rate, latency from the intended arrival, saturation reported."""
import os
import statistics

import pytest

from conftest import SHM, leftovers, needs_shm
from fsyncstudy import load


def test_constant_and_poisson_schedules():
    c = load.schedule(1000, 0.5)
    assert len(c) == 500 and c[1] - c[0] == 1_000_000 and c[-1] == 499_000_000
    p = load.schedule(1000, 2.0, "poisson", seed=3)
    assert p == load.schedule(1000, 2.0, "poisson", seed=3) != load.schedule(1000, 2.0, "poisson", seed=4)
    gaps = [b - a for a, b in zip(p, p[1:])]
    assert statistics.fmean(gaps) == pytest.approx(1e6, rel=0.1)            # mean 1 ms at 1,000/s
    assert statistics.stdev(gaps) == pytest.approx(statistics.fmean(gaps), rel=0.15)  # exponential: sd = mean
    for bad in (0, -5, float("inf"), 1e7):
        with pytest.raises(ValueError, match="rate"):
            load.schedule(bad, 1.0)
    with pytest.raises(ValueError, match="arrivals"):
        load.schedule(10, 1.0, "bursty")


def test_a_rate_the_target_cannot_reach_is_reported_as_such(disk_dir):
    r = load.run_load_trial("always", 50_000, duration_s=0.3, directory=disk_dir)
    assert r.saturated and r.unserved > 0 and r.achieved_rate < 0.5 * r.offered_rate
    assert r.served + r.unserved == r.scheduled == 15_000
    # the queue grows: a client waits far longer than one write + sync takes
    assert r.latency_us_p99 > 20 * r.service_us_p99
    assert leftovers(disk_dir) == []


@needs_shm
def test_the_generators_lateness_is_measured_and_small_on_tmpfs():
    # stated bound (README): at 1,000 entries/s on tmpfs, the writer starts an entry within 1 ms of its
    # intended arrival at the median and within 10 ms at p99 (measured here: about 1.4 us and 2-30 us)
    r = load.run_load_trial("none", 1000, duration_s=1.0, directory=SHM)
    assert not r.saturated and r.served == 1000
    assert r.lateness_us_p50 < 1_000 and r.lateness_us_p99 < 10_000
    assert r.latency_us_p50 <= r.lateness_us_p50 + r.service_us_p50 + 50


# on tmpfs: what these two check is the clients' bookkeeping, which a disk slower than 2,000 syncs a second
# (a busy machine's) would hide behind entries left unserved at the deadline (seen 2026-12-07: 756 of 1,000)
@needs_shm
def test_group_commit_clients_share_the_rate_and_every_entry_is_acknowledged_once():
    seen = []
    r = load.run_load_trial("group_0ms", 2000, duration_s=0.5, clients=4, directory=SHM,
                            on_timeline=seen.append)
    assert (r.served, r.unserved, r.clients) == (1000, 0, 4)
    tl = seen[0]
    # in write order: four clients may write a little out of arrival order, but never before an arrival
    assert len(set(tl.intended)) == 1000 and all(s >= d for d, s in zip(tl.intended, tl.started))
    assert all(a >= s for a, s in zip(tl.acks, tl.started))
    assert r.exposure_ms_max is None and 0 < r.syncs <= 1000


@needs_shm
def test_always_with_several_clients_syncs_each_entry_itself_at_the_same_rate(monkeypatch):
    # group commit's baseline in the open loop: the same clients, each writing and syncing its own entries
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    seen = []
    r = load.run_load_trial("always", 1000, duration_s=0.5, clients=4, directory=SHM, on_timeline=seen.append)
    assert (r.served, r.unserved, r.clients) == (500, 0, 4)
    assert r.syncs == 500 == len(calls)          # one per entry, none shared
    tl = seen[0]
    assert all(a >= s for a, s in zip(tl.acks, tl.started)) and list(tl.sync_hi) == list(range(1, 501))


def test_batch_exposure_at_a_rate_and_the_final_covering_sync(disk_dir):
    r = load.run_load_trial("batch_20ms", 1000, duration_s=0.5, directory=disk_dir)
    assert r.served == 500 and r.syncs >= 10
    assert 5 <= r.exposure_ms_max <= 200   # about one interval plus a sync; never unbounded


@pytest.mark.parametrize("kwargs, match", [
    (dict(strategy="none", clients=2), "group commit"),
    (dict(strategy="always", clients=2, sync_method="open_dsync"), "several clients"),
    (dict(strategy="group_0ms", clients=0), "clients"),
    (dict(strategy="none", work_us=-1), "work_us"),
    (dict(strategy="none", duration_s=0), "duration_s"),
])
def test_bad_load_options_are_refused(kwargs, match, disk_dir):
    with pytest.raises(ValueError, match=match):
        load.run_load_trial(rate=100, directory=disk_dir, **{"duration_s": 0.1, **kwargs})



def tiny_profile(**kw):
    from fsyncstudy.loadstudy import LoadProfile
    return LoadProfile("tiny", rates=(300, 3000), strategies=(("always", 1), ("batch_10ms", 1)), trials=2,
                       lab_targets=(), **{"busy": (), "warmup_rounds": 1, "duration_s": 0.15, **kw})


def test_the_load_study_is_durable_and_resumable_and_its_advice_follows(disk_dir, tmp_path):
    from fsyncstudy import analysis, loadstudy
    out = tmp_path / "load"
    first = loadstudy.run_load_study(out, tiny_profile(), [str(disk_dir)], progress=False, limit=5)
    assert first.ran == 5 and first.planned == 2 * 2 * 3
    second = loadstudy.run_load_study(out, tiny_profile(), [str(disk_dir)], progress=False)
    assert (second.skipped, second.ran, second.failed) == (5, 7, 0)
    df, meta = loadstudy.load(out)
    assert len(df) == 8 and meta["kind"] == "load" and set(df["rate"]) == {300.0, 3000.0}
    assert df["latency_hist"].str.len().min() > 20            # the histogram is kept, encoded
    k = analysis.knees(df)
    assert set(k["config"]) == {"always/c1", "batch_10ms/c1"} and (k["rounds"] == 2).all()
    assert leftovers(disk_dir) == []


def test_the_load_and_advise_commands(disk_dir, tmp_path):
    import json
    import subprocess
    import sys

    from conftest import REPO
    run = lambda *a: subprocess.run([sys.executable, "-m", "fsyncstudy", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=REPO, timeout=120)
    p = run("load", "--strategy", "always", "--strategy", "none", "--rate", "500,50000", "--duration", "0.2",
            "--target", str(disk_dir))
    assert p.returncode == 0, p.stderr
    assert "SATURATED" in p.stdout and "keeps up" in p.stdout and "latency p50 ms" in p.stdout
    doc = json.loads(run("load", "--strategy", "none", "--rate", "1000", "--duration", "0.2", "--target", str(disk_dir),
                         "--json").stdout)
    assert doc["results"][0]["offered_rate"] > 0 and doc["fsyncstudy"]["target"]["path"] == str(disk_dir)
    from fsyncstudy import loadstudy
    # 0.4 s trials: a trial's achieved rate counts the acknowledgements within its duration, so at 300/s the
    # entries still syncing at its end (a few ms' worth when this disk is slow) must be a small share of it
    # a burst of other work on this disk (make test runs two files at a time) can stall a trial at 300/s into
    # "cannot keep up": the study runs again, up to 3 times; advice that never names always fails every time
    from conftest import past_a_burst

    def study_and_advice():
        out = tmp_path / f"l{len(list(tmp_path.glob('l*')))}"
        loadstudy.run_load_study(out, tiny_profile(duration_s=0.4), [str(disk_dir)], progress=False)
        p = run("advise", "--rate", "300", "--loss-budget-ms", "0", "--dataset", str(out))
        assert p.returncode == 0, p.stderr
        return p
    p = past_a_burst(study_and_advice, lambda p: "<- advised" in p.stdout)
    assert "<- advised" in p.stdout and "always" in p.stdout, p.stdout
    p = run("load", "--rate", "100")
    assert p.returncode == 2 and "give --strategy and --rate" in p.stderr


def test_a_busy_writer_is_measured_beside_an_idle_one(disk_dir, tmp_path):
    from fsyncstudy import analysis, loadstudy
    prof = tiny_profile(busy=(("batch_10ms", 1),), busy_rate=300, busy_work_us=(2000.0,))
    loadstudy.run_load_study(tmp_path / "l", prof, [str(disk_dir)], progress=False)
    df, _ = loadstudy.load(tmp_path / "l")
    assert set(df.loc[df["busy"], "config"]) == {"batch_10ms/c1/w2000"}
    assert "batch_10ms/c1/w2000" not in set(analysis.knees(df)["config"])     # not part of the rate sweep
    b = analysis.busy_summary(df)
    assert list(b["work_us"]) == [0.0, 2000.0] and b["cpu_busy_share"].iloc[1] == pytest.approx(0.6)
    busy = df[df["busy"]]
    assert (busy["cpu_us_per_entry"] >= 1500).all()     # the work shows in the CPU per entry


def test_trial_histograms_pool_into_the_percentiles_of_all_their_entries(disk_dir):
    a = load.run_load_trial("always", 300, duration_s=0.3, directory=disk_dir)
    b = load.run_load_trial("none", 300, duration_s=0.3, directory=disk_dir)
    h = load.pooled([a.latency_hist, b.latency_hist])
    assert h.get_total_count() == a.served + b.served
    assert b.latency_us_p50 <= h.get_value_at_percentile(50) <= a.latency_us_p50 * 1.01
    assert h.get_max_value() >= max(a.latency_us_max, b.latency_us_max) * 0.99
