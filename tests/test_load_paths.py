"""The open loop on the write paths real WALs use (docs/load.md#write-paths): each path's trial runs the
path's own calls, acknowledges where the path does, and records which path it was; the load study measures
a profile's path cells as configurations of their own, and older load datasets read as the plain path."""
import os

import pytest

from conftest import REPO, leftovers
from fsyncstudy import analysis, dataset, load, loadstudy
from fsyncstudy.trial import PathOptions


@pytest.fixture
def calls(monkeypatch):
    """Counts os.write, os.pwrite, os.pwritev and os.fdatasync calls (each still made)."""
    got = {"write": [], "pwrite": [], "pwritev": [], "fdatasync": []}
    for name in got:
        real = getattr(os, name)

        def counting(*a, _real=real, _name=name):
            got[_name].append(a[1:])
            return _real(*a)
        monkeypatch.setattr(os, name, counting)
    return got


@pytest.mark.parametrize("strategy,clients,path", [
    ("always", 1, PathOptions("rwf_dsync")), ("always", 1, PathOptions("direct_dsync")),
    ("group_0ms", 4, PathOptions("rwf_dsync")), ("always", 3, PathOptions("rwf_dsync")),
    ("batch_10ms", 1, PathOptions(write_mode="buffered")), ("none", 1, PathOptions(write_mode="buffered")),
    ("none", 1, PathOptions(bytes_per_sync=4096)), ("always", 1, PathOptions(segment_bytes=4096, recycle=1))])
def test_a_load_trial_runs_each_write_path_and_records_it(strategy, clients, path, disk_dir, calls, monkeypatch):
    from fsyncstudy import writepaths
    real_call, ranges, rolls = writepaths.sync_file_range_call(), [], []
    monkeypatch.setattr(writepaths, "sync_file_range_call",
                        lambda: lambda fd, off, n, flags: (ranges.append(off), real_call(fd, off, n, flags))[1])
    real_next = writepaths.Segments._next_segment
    monkeypatch.setattr(writepaths.Segments, "_next_segment", lambda self: (rolls.append(1), real_next(self))[1])
    r = load.run_load_trial(strategy, 400, duration_s=0.2, clients=clients, directory=disk_dir, **path._asdict())
    assert r.served + r.unserved == r.scheduled and r.served > 0
    assert (r.sync_method, r.write_mode, r.bytes_per_sync, r.segment_bytes, r.recycle) == tuple(path)
    dsync = [c for c in calls["pwritev"] if c[-1] == os.RWF_DSYNC]
    if path.sync_method == "rwf_dsync":           # the path's own write syncs: no fdatasync at all
        timed = dsync[1:]                         # after the probe
        assert calls["fdatasync"] == [] and sum(len(c[0][0]) for c in timed) == r.served * 144
        if strategy == "group_0ms":               # the leader's one write commits its group
            assert 0 < len(timed) <= r.syncs
        else:                                     # one a write
            assert len(timed) == r.served
    elif path.sync_method == "direct_dsync":      # whole aligned blocks, the tail block written again
        assert calls["fdatasync"] == [] and all(len(c[0]) % 4096 == 0 for c in calls["pwrite"])
        assert len(calls["pwrite"]) == r.served
    elif path.write_mode == "buffered":           # entries reach the kernel many to a write()
        assert 0 < len(calls["write"]) < r.served / 2
    elif path.bytes_per_sync:                     # writeback started every 4 KiB written (and the probe)
        assert len(ranges) - 1 == r.served * 144 // 4096
    elif path.segment_bytes:                      # 28 records a 4 KiB segment: a roll every 28 entries
        assert len(rolls) == -(-r.served // 28) and r.syncs == r.served
    assert leftovers(disk_dir) == []


def test_the_load_study_measures_a_profile_s_write_paths_as_configurations_of_their_own(disk_dir, tmp_path):
    prof = loadstudy.LoadProfile("tiny", rates=(300, 600), strategies=(("batch_10ms", 1),), trials=1, warmup_rounds=0,
                                 duration_s=0.15, lab_targets=(), busy=(), path_rates=(600,),
                                 paths=(("batch_10ms", 1, PathOptions(write_mode="buffered")),))
    out = tmp_path / "load"
    s = loadstudy.run_load_study(out, prof, [str(disk_dir)], progress=False)
    assert (s.planned, s.ran, s.failed) == (3, 3, 0)
    df, meta = loadstudy.load(out)
    assert sorted(zip(df["config"], df["rate"], df["path"])) == [
        ("batch_10ms/c1", 300.0, ""), ("batch_10ms/c1", 600.0, ""), ("batch_10ms/c1/buffered", 600.0, "buffered")]
    assert meta["plan"]["profile"]["path_rates"] == [600] and dataset.check(out, loadstudy.KIND).ok
    a = analysis.advise(df, 600, 1000)
    assert set(a["config_label"]) == {"batch_10ms", "batch_10ms [buffered]"}
    claims = [c.text for c in analysis.knee_claims(analysis.knees(df), 300)]
    assert any("[buffered]" in c and "the one rate it was measured at" in c for c in claims), claims
    # a profile without path cells plans as it did before them
    assert "paths" not in dataset.plan_of(loadstudy.LoadProfile("q", rates=(1,)))


def test_older_load_datasets_load_as_the_plain_path():
    from conftest import written_before_the_write_paths
    older = written_before_the_write_paths("load-*")
    assert older                                  # the committed ones from before the write paths
    for d in older:
        df, _ = loadstudy.load(d)
        assert set(df["path"]) == {""} and set(df["write_mode"]) == {"per-entry"}, d


def test_the_load_command_runs_a_write_path_one_off_and_refuses_one_beside_a_profile(disk_dir):
    import json

    from conftest import run_here
    ran = run_here("load", "--strategy", "batch_10ms", "--write", "buffered", "--rate", 300, "--duration", 0.1,
                   "--target", disk_dir, "--json")
    assert ran.returncode == 0, ran.stderr
    [r] = json.loads(ran.stdout)["results"]
    assert r["write_mode"] == "buffered" and r["served"] > 0
    ran = run_here("load", "--profile", "quick", "--sync-method", "rwf_dsync")
    assert ran.returncode == 2 and "--sync-method" in ran.stderr and ran.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["quick", "standard"])
def test_every_durable_path_the_load_study_runs_is_power_cut_in_the_same_profile(name):
    # advise may call a configuration that acknowledges after its sync "loses nothing": the profile's crash
    # plan cuts the power under each such one the load study runs (its strategy on its path), so that
    # the claim rests on cuts of it (test_answer checks the advice on the committed datasets)
    from fsyncstudy.profiles import PROFILES
    from fsyncstudy.strategies import KINDS, parse
    prof = PROFILES[name]
    cut = {(s, "") for s in prof.crash.power[0]} | {(s, p.label) for k, s, p, _ in prof.crash.paths if k == "power"}
    ran = {(s, p.label) for s, _, _, _, p in prof.load.cells() if KINDS[parse(s).kind].acks_durable}
    if name == "standard":
        assert ("group_0ms", "rwf_dsync") in ran         # what the check is about is there
    assert ran <= cut, ran - cut
