"""Faults the engine must survive, injected for real through the lab's power-cut filesystem,
and a power-cut crash experiment small enough for CI."""
import errno
import io
import json

import pytest

from conftest import REPO, leftovers
from fsyncstudy import run_trial
from fsyncstudy.crash import load, run_crash
from fsyncstudy.engine import SyncFailed
from fsyncstudy.lab import Lab, clear_faults, inject, requirement, reset, status
from fsyncstudy.node import Node
from fsyncstudy.dataset import read_rows
from fsyncstudy.profiles import PROFILES
from fsyncstudy.sweep import Profile, run_sweep
from fsyncstudy.trial import TargetFull

REASON = requirement("powercut")
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"lab:powercut: {REASON}")


@pytest.fixture(scope="module")
def lab():
    import shutil
    import tempfile
    base = REPO / "build" / "lab-test"
    base.mkdir(parents=True, exist_ok=True)
    d = tempfile.mkdtemp(prefix="faults-", dir=base)
    with Lab(d, targets=["powercut"]) as lab:
        if lab.skipped():
            pytest.fail(f"lab:powercut did not come up although nothing is missing: {lab.skipped()}")
        yield lab
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pc(lab):
    mp = lab.directory("powercut")
    yield mp
    reset(mp)
    clear_faults(mp)
    for p in mp.iterdir():
        p.unlink()


def failed_syncs(mp) -> int:
    return status(mp)["stats"]["failed_syncs"]


@pytest.mark.parametrize("strategy, writers", [("always", 1), ("batch_0ms", 1), ("batch_5ms", 1), ("group_0ms", 4)])
def test_a_failed_sync_stops_the_writer_without_a_retry(pc, strategy, writers):
    before = failed_syncs(pc)
    inject(pc, fsync_eio="always", fsync_eio_after=3)  # the log's preparation and two more syncs succeed
    with pytest.raises(SyncFailed, match="not retrying") as e:
        run_trial(strategy, duration_s=30, directory=pc, writers=writers)  # would run 30 s if it did not stop
    assert e.value.errno == errno.EIO
    # exactly one sync failed: after it nothing tried again and counted the data as durable (fsyncgate)
    assert failed_syncs(pc) - before == 1
    assert leftovers(pc) == []


def test_the_node_answers_an_io_error_and_keeps_serving(pc):
    init = {"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}}
    req = lambda i: {"src": "c1", "dest": "n1", "body": {"type": "fsync_benchmark", "msg_id": i, "entries": 20,
                                                         "strategies": ["always", "none"]}}
    inject(pc, fsync_eio="always", fsync_eio_after=1)
    out = io.StringIO()
    Node(io.StringIO(json.dumps(init) + "\n" + json.dumps(req(2)) + "\n"), out, io.StringIO(), directory=pc).run()
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    err = replies[1]["body"]
    assert (err["type"], err["code"], err["in_reply_to"]) == ("error", 13, 2)
    assert "sync failed" in err["text"] and "not retrying" in err["text"]
    clear_faults(pc)
    out = io.StringIO()
    Node(io.StringIO(json.dumps(init) + "\n" + json.dumps(req(3)) + "\n"), out, io.StringIO(), directory=pc).run()
    assert json.loads(out.getvalue().splitlines()[1])["body"]["type"] == "fsync_benchmark_ok"
    assert leftovers(pc) == []


def test_enospc_names_the_target_and_the_space_and_removes_the_log(pc):
    inject(pc, enospc_after_bytes=20_000)
    with pytest.raises(TargetFull) as e:
        run_trial("batch_1ms", entries=5000, directory=pc)
    assert e.value.errno == errno.ENOSPC
    assert str(pc) in str(e.value) and "needed about" in str(e.value) and "removed" in str(e.value)
    assert leftovers(pc) == []


def test_a_sweep_on_a_full_target_keeps_every_result(pc, tmp_path):
    tiny = Profile("tiny", trials=1, warmup_rounds=0, min_duration_s=0.02, min_intervals=1, batch_ms=(1,),
                   group=(), prealloc_compare=())
    inject(pc, enospc_after_bytes=30_000)
    s = run_sweep(tmp_path / "s", profile=tiny, targets=[str(pc)], progress=False)
    rows = read_rows(tmp_path / "s" / "trials.csv")
    assert len(rows) == s.planned == 3
    failed = [r for r in rows if r["status"] == "error"]
    assert failed and all("TargetFull" in r["error"] or "No space" in r["error"] for r in failed)
    assert leftovers(pc) == []


def test_power_cuts_lose_nothing_acknowledged_by_always_or_group(lab, tmp_path):
    out = tmp_path / "crash"
    s = run_crash(out, PROFILES["quick"].crash, kinds=("power",), strategies=["always", "group_0ms", "batch_10ms", "none"],
                  cuts=3, lab_dir=lab.lab_dir, progress=False)
    assert s.failed == 0 and s.lost_by_durable == []
    df, _ = load(out)
    assert len(df) == 12 and not df["corrupt"].any()
    assert (df.loc[df["strategy"].isin(["always", "group_0ms"]), "lost_acked"] == 0).all()
    none = df[df["strategy"] == "none"]
    # the power-cut filesystem does no writeback: everything none acknowledged is gone
    assert (none["lost_acked"] == none["acked"]).all() and (none["acked"] > 0).all()
    batch = df[df["strategy"] == "batch_10ms"]
    assert (batch["recovered"] <= batch["acked"] + batch["unacked_recovered"]).all()
    assert leftovers(lab.directory("powercut")) == []
