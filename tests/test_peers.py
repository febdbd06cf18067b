"""Side by side with fio and pg_test_fsync: real peers where installed, on real files.

Ratios are benchmark figures, never asserted here: another benchmark may share the disk.
`.ci/run` sets FSYNCSTUDY_REQUIRE_PEERS=fio, so there a missing fio fails instead of skipping.
"""
import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fsyncstudy import analysis, dataset, intervals, peers, peertools, pgtest
from fsyncstudy.cli.peers import format_pairs, format_pgtest
from conftest import REPO, leftovers

DATA = Path(__file__).resolve().parent / "data"
REQUIRED = set(filter(None, os.environ.get("FSYNCSTUDY_REQUIRE_PEERS", "").split(",")))


def need(peer: str) -> str:
    try:
        return {"fio": peertools.find_fio, "pg_test_fsync": peertools.find_pg_test_fsync}[peer]()
    except peertools.PeerMissing as e:
        if peer in REQUIRED:
            pytest.fail(f"FSYNCSTUDY_REQUIRE_PEERS names {peer}, but: {e}")
        pytest.skip(f"{e} (make test installs it when run as root)")


def cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "fsyncstudy", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


# -- statistics -------------------------------------------------------------------------------------

def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 61)) + [80, 120, 500, 10_000]:
        assert intervals.t975(df) == pytest.approx(stats.t.ppf(0.975, df), rel=2e-6), df


def test_ratio_is_the_geometric_mean_of_paired_rounds_with_an_interval():
    r = intervals.paired_ratio_ci([100, 200, 400], [100, 100, 100])
    assert r.estimate == pytest.approx(2.0) and r.n == 3
    assert r.low < 2.0 < r.high and r.low > 0
    same = intervals.paired_ratio_ci([5.0, 7.0], [5.0, 7.0])
    assert same.estimate == 1.0 and same.low == same.high == 1.0
    one = intervals.paired_ratio_ci([3.0], [2.0])
    assert one.estimate == pytest.approx(1.5) and not one.has_interval()
    assert intervals.paired_ratio_ci([3.0, 4.0], [None, 2.0]).n == 1   # a round the peer could not run is left out


# -- fio ----------------------------------------------------------------------------------------------

def test_short_comparison_with_fio_runs_and_parses_real_fio_output(disk_dir):
    need("fio")
    res = peers.compare(disk_dir, rounds=2, peers=["fio"], entries=200, nosync_entries=5000)
    assert [p.pair for p in res] == ["fio-fdatasync", "fio-nosync"]
    sync, nosync = res
    for p in res:
        assert p.rounds == 2 and p.order == ["peer first", "ours first"]
        assert p.peer_version.startswith("fio-")
        assert all(isinstance(x, float) and x > 0 for x in p.peer_ops_per_sec + p.ours_ops_per_sec)
        for a, b in zip(p.peer_p50_us, p.peer_p99_us):
            assert isinstance(a, float) and 0 < a <= b            # parsed from fio's percentile block
        assert p.target_fstype and p.block_bytes == 144
        r = p.ratio()
        assert math.isfinite(r.estimate) and r.low <= r.estimate <= r.high
    # fio synced (n or n - 1 times), the no-sync job did not
    assert all(s in (199, 200) for s in sync.peer_syncs) and sync.ours_syncs == [200, 200]
    assert nosync.peer_syncs == [0, 0] and nosync.ours_syncs == [0, 0]
    assert sync.latency == "sync" and nosync.latency == "write"
    assert sync.verdict() in ("meets", "short", "unclear") and nosync.verdict() == ""
    rows = peers.to_rows(res)
    assert len(rows) == 2 * 2 * 2 and {r["side"] for r in rows} == {"ours", "peer"}
    assert {r["tool"] for r in rows} == {"fsyncstudy", "fio"}
    s = sync.summary()
    assert s["ratio"] == pytest.approx(sync.ratio().estimate) and s["peer_p99_us"] > 0
    json.dumps([p.as_dict() for p in res], allow_nan=False)   # plain data all the way down, None for no value
    assert leftovers(disk_dir) == []


def test_a_comparison_fills_its_dataset_by_target_through_the_runner_and_resumes(disk_dir, tmp_path, monkeypatch):
    need("fio")
    monkeypatch.setattr(peertools, "PG_BIN_GLOB", "/nonexistent/*/bin/pg_test_fsync")
    if peertools.shutil.which("pg_test_fsync"):
        pytest.skip("pg_test_fsync is on PATH here: it cannot be made missing")
    out = tmp_path / "peers"
    s = peers.run_comparison(out, targets=[str(disk_dir)], rounds=2, peers=("fio", "pg_test_fsync"))
    assert (s.planned, s.ran, s.skipped, s.failed) == (1, 1, 0, 0)
    assert "apt-get install postgresql" in s.missing["pg_test_fsync"]
    df, meta = peers.load(out)
    # one row per pair, round and side, each with its target
    assert len(df) == 2 * 2 * 2 and set(df["target"]) == {str(disk_dir)} and set(df["tool"]) == {"fsyncstudy", "fio"}
    assert "pg_test_fsync" in meta["notes"]["missing_peers"]
    assert "pairs" not in meta["plan"]          # the default pairs: planned as before there was a choice
    again = peers.run_comparison(out, targets=[str(disk_dir)], rounds=2, peers=("fio", "pg_test_fsync"))
    assert (again.ran, again.skipped) == (0, 1) and len(peers.load(out)[0]) == 8
    assert leftovers(disk_dir) == []


def test_compare_command_prints_the_table_and_json(disk_dir):
    need("fio")
    out = cli("compare", "--peers", "fio", "--rounds", "1", "--entries", "100", "--target", str(disk_dir))
    assert out.returncode == 0, out.stderr
    assert "fio-fdatasync" in out.stdout and "ours/peer ratio [95% CI]" in out.stdout
    assert "--fallocate=native" in out.stdout
    out = cli("compare", "--peers", "fio", "--rounds", "1", "--entries", "100", "--prealloc", "append",
              "--target", str(disk_dir), "--json")
    assert out.returncode == 0, out.stderr
    env, doc = json.loads(out.stdout)["fsyncstudy"], json.loads(out.stdout)["pairs"]
    assert env["target"]["path"] == str(disk_dir) and env["command"].startswith("python -m fsyncstudy compare")
    assert [d["pair"] for d in doc] == ["fio-fdatasync", "fio-nosync"]
    assert doc[0]["prealloc"] == "append" and "--fallocate=none" in doc[0]["peer_command"]
    assert doc[0]["summary"]["peer_ops_per_sec"] > 0
    assert leftovers(disk_dir) == []


@pytest.mark.parametrize("prealloc", ["append", "fallocate", "zero-fill"])
def test_fio_lays_the_file_out_as_our_preallocation_does(prealloc, disk_dir):
    fio = need("fio")
    run = peertools.run_fio(disk_dir, block_bytes=144, writes=100, sync=True, prealloc=prealloc, fio=fio)
    assert run.writes == 100 and run.block_bytes == 144 and run.runtime_ms > 0
    assert run.ops_per_sec == pytest.approx(100 / (run.runtime_ms / 1e3))  # writes over fio's runtime
    assert set(peertools.PREALLOC_TO_FIO[prealloc]) <= set(run.command)
    assert "--fdatasync=1" in run.command and run.syncs in (99, 100)
    assert run.sync_p(99) >= run.sync_p(50) > 0
    assert leftovers(disk_dir) == []


def test_verdicts_follow_the_interval_not_just_the_point():
    def pair(name, peer, ours, theirs):
        return peers.PairResult(pair=name, peer=peer, peer_test="", ours="", strategy="always", sync_method=None,
                                prealloc="fallocate", overwrite_offset0=False, block_bytes=144, entries=1,
                                seconds=None, latency="sync", aim="", peer_command=[], peer_version="",
                                target_path="", target_fstype="", target_durability="",
                                ours_ops_per_sec=ours, peer_ops_per_sec=theirs)
    assert pair("fio-fdatasync", "fio", [99, 98, 100], [100, 100, 100]).verdict() == "meets"
    assert pair("fio-fdatasync", "fio", [80, 82, 81], [100, 100, 100]).verdict() == "short"
    assert pair("fio-fdatasync", "fio", [70, 120, 95], [100, 100, 100]).verdict() == "unclear"
    # pg pairs: an equivalence test with a 5% margin on the paired ratio
    assert pair("pg-fsync", "pg_test_fsync", [100, 101, 99, 100], [99, 102, 100, 101]).verdict() == "equivalent"
    assert pair("pg-fsync", "pg_test_fsync", [50, 51], [99, 100]).verdict() == "below"
    assert pair("pg-fsync", "pg_test_fsync", [130, 131, 129], [99, 100, 101]).verdict() == "above"
    # within pg's interval on the means, but too noisy to show equivalence: not a pass
    assert pair("pg-fsync", "pg_test_fsync", [90, 110, 100], [100, 100, 100]).verdict() == "unclear"
    assert pair("fio-nosync", "fio", [1, 2], [1, 2]).verdict() == ""


def test_fio_json_with_leading_noise_is_still_read():
    doc = {"fio version": "fio-3.33", "jobs": [{
        "error": 0, "job options": {"bs": "144"},
        "write": {"io_bytes": 1440, "total_ios": 10, "runtime": 2, "iops": 5000.0,
                  "clat_ns": {"N": 10, "mean": 900.0, "percentile": {"50.000000": 800, "99.000000": 2000}}},
        "sync": {"total_ios": 0, "lat_ns": {"N": 9, "mean": 90000.0,
                                            "percentile": {"50.000000": 85000, "99.000000": 150000}}}}]}
    run = peertools.parse_fio_json("fio: some warning\n" + json.dumps(doc))
    assert run.ops_per_sec == 5000.0 and run.syncs == 9
    assert run.sync_p(50) == 85.0 and run.sync_p(99) == 150.0 and run.write_p(99) == 2.0
    with pytest.raises(peertools.PeerFailed):
        peertools.parse_fio_json("fio: engine sync not loadable\n")


# -- pg_test_fsync ----------------------------------------------------------------------------------

def check_pg_report(run: peertools.PgTestRun) -> None:
    assert {x.section for x in run.lines} == {1, 2, 3, 4, 5}
    labels = [(x.section, x.label) for x in run.lines]
    for s in (1, 2):
        for m in ("open_datasync", "fdatasync", "fsync", "fsync_writethrough", "open_sync"):
            assert (s, m) in labels
    assert (3, "16 *  1kB open_sync writes") in labels and (5, "write") in labels
    assert len(run.lines) == 18
    wt = run.get(1, "fsync_writethrough")
    assert wt.ops_per_sec is None and wt.na == "n/a"
    for x in run.lines:
        if not x.na:
            assert isinstance(x.ops_per_sec, float) and x.ops_per_sec > 0 and x.usecs_per_op >= 0


def test_parse_a_recorded_pg_test_fsync_report():
    run = peertools.parse_pg_test_fsync((DATA / "pg_test_fsync-15.txt").read_text())
    check_pg_report(run)
    assert run.secs_per_test == 1 and run.direct_io.startswith("O_DIRECT supported")
    assert run.get(1, "fdatasync").ops_per_sec == pytest.approx(1231110.529)


def test_parse_n_a_star_where_direct_io_is_refused():
    text = (DATA / "pg_test_fsync-15.txt").read_text().replace(
        "        open_datasync                   1429330.979 ops/sec       1 usecs/op",
        "        open_datasync                                 n/a*")
    text += "* This file system and its mount options do not support direct\n  I/O, e.g. ext4 in journaled mode.\n"
    run = peertools.parse_pg_test_fsync(text)
    x = run.get(1, "open_datasync")
    assert x.na == "n/a*" and x.ops_per_sec is None and len(run.lines) == 18


@pytest.mark.slow
def test_real_pg_test_fsync_output_parses(disk_dir):
    exe = need("pg_test_fsync")
    run = peertools.run_pg_test_fsync(disk_dir, secs_per_test=1, pg_test_fsync=exe)   # about 16 s
    check_pg_report(run)
    assert run.secs_per_test == 1 and "PostgreSQL" in run.version
    assert leftovers(disk_dir) == []


def test_pg_pairs_match_each_sync_method(disk_dir, tmp_path, monkeypatch):
    # a stand-in pg_test_fsync that prints a recorded report, so the pairing is tested in seconds
    fake = tmp_path / "pg_test_fsync"
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && echo 'pg_test_fsync (PostgreSQL) 15.0' && exit 0\n"
                    f"cat '{DATA / 'pg_test_fsync-15.txt'}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    res = peers.compare(disk_dir, rounds=1, peers=["pg_test_fsync"], secs_per_test=1)
    assert [p.pair for p in res] == ["pg-open_datasync", "pg-fdatasync", "pg-fsync", "pg-open_sync"]
    assert [p.sync_method for p in res] == ["open_dsync", "fdatasync", "fsync", "open_sync"]
    for p in res:
        assert p.block_bytes == 8192 and p.overwrite_offset0 and p.prealloc == "zero-fill"
        assert p.peer_ops_per_sec[0] > 0 and p.ours_ops_per_sec[0] > 0 and p.peer_p99_us == [None]
        assert p.ours_syncs == [p.entries] and p.peer_version.endswith("15.0")
        assert not p.ratio().has_interval()    # one round: no interval
        assert p.summary()["ratio_ci_low"] is None   # and None in JSON, which has no NaN
    assert res[1].peer_ops_per_sec == [pytest.approx(1231110.529)]
    assert any("O_DIRECT" in n for n in res[0].notes)
    assert leftovers(disk_dir) == []


# -- missing peers ------------------------------------------------------------------------------------

def test_missing_fio_says_how_to_install_it(disk_dir):
    env = {**os.environ, "PATH": "/nonexistent"}
    out = cli("compare", "--peers", "fio", "--target", str(disk_dir), env=env)
    assert out.returncode == 3
    assert "fio is not installed" in out.stderr and "apt-get install fio" in out.stderr
    assert "--peers pg_test_fsync" in out.stderr
    assert leftovers(disk_dir) == []


def test_missing_pg_test_fsync_says_how_to_install_it(disk_dir, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(peertools, "PG_BIN_GLOB", "/nonexistent/*/bin/pg_test_fsync")
    with pytest.raises(peertools.PeerMissing, match="apt-get install postgresql") as e:
        peers.compare(disk_dir, peers=["pg_test_fsync"])     # refused before anything runs
    assert e.value.peer == "pg_test_fsync"
    assert leftovers(disk_dir) == [] and list(disk_dir.iterdir()) == []


def test_unknown_peer_is_an_error(disk_dir):
    with pytest.raises(ValueError, match="unknown peer"):
        peers.compare(disk_dir, peers=["iozone"])


# -- the etcd preset ----------------------------------------------------------------------------------

def test_etcd_preset_prints_fio_shaped_json(disk_dir):
    out = cli("bench", "--preset", "etcd", "--json", "--dir", str(disk_dir))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    job = doc["jobs"][0]
    n = (22 << 20) // 2300
    assert job["job options"]["bs"] == "2300" and job["write"]["total_ios"] == n
    lat = job["sync"]["lat_ns"]
    assert lat["N"] == n and job["sync"]["total_ios"] == n
    pct = lat["percentile"]
    assert set(pct) == {f"{p:.6f}" for p in peertools.FIO_PERCENTILES}
    assert all(isinstance(v, int) and v > 0 for v in pct.values())
    assert pct["50.000000"] <= pct["99.000000"] <= lat["max"]
    assert job["write"]["clat_ns"]["N"] == n
    ours = doc["fsyncstudy"]
    assert ours["sync_p99_ms"] == pytest.approx(pct["99.000000"] / 1e6, rel=1e-6)
    assert ours["passes"] == (ours["sync_p99_ms"] < 10)
    assert ours["result"]["record_bytes"] == 2300 and ours["result"]["prealloc"] == "fallocate"
    assert ours["envelope"]["version"] and ours["envelope"]["target"]["path"] == str(disk_dir)
    assert leftovers(disk_dir) == []


def test_etcd_preset_percentile_keys_are_the_ones_real_fio_prints(disk_dir):
    need("fio")
    run = peertools.run_fio(disk_dir, block_bytes=2300, writes=50)
    assert set(run.sync_lat_us) == {f"{p:.6f}" for p in peertools.FIO_PERCENTILES}


def test_etcd_preset_text_and_its_fixed_workload(disk_dir):
    out = cli("bench", "--preset", "etcd", "--dir", str(disk_dir))
    assert out.returncode == 0, out.stderr
    assert "p99 fdatasync" in out.stdout and ("PASS" in out.stdout or "FAIL" in out.stdout)
    assert "10 ms" in out.stdout and "--bs=2300" in out.stdout
    bad = cli("bench", "--preset", "etcd", "--strategy", "none", "--dir", str(disk_dir))
    assert bad.returncode == 2 and "drop --strategy" in bad.stderr


# -- the pg_test_fsync preset --------------------------------------------------------------------------

def test_pgtest_prints_pg_test_fsyncs_sections_and_lines(disk_dir):
    rep = pgtest.run_suite(disk_dir, secs_per_test=0.2, trials=2)
    text = format_pgtest(rep)
    # our report reads back with the parser of pg_test_fsync's own output: same sections, labels, format
    run = peertools.parse_pg_test_fsync(text)
    check_pg_report(run)
    for t in rep.tests:
        if t.how != "n/a":
            assert len(t.ops_per_sec) == 2 and all(x > 0 for x in t.ops_per_sec)
    assert "95% CI" in text and "O_DIRECT is not used" in text
    fd = next(t for t in rep.tests if t.section == 1 and t.label == "fdatasync")
    assert fd.how == "engine always/fdatasync" and fd.sync_p99_us[0] > 0
    assert len(rep.to_rows()) == 2 * sum(t.how != "n/a" for t in rep.tests)
    json.dumps(rep.as_dict(), allow_nan=False)
    assert leftovers(disk_dir) == []


def test_compare_and_pgtest_are_off_the_node_start_path():
    mods = ("fsyncstudy.peers", "fsyncstudy.peertools", "fsyncstudy.pgtest", "fsyncstudy.etcd", "fsyncstudy.cli")
    code = f"import sys, fsyncstudy, fsyncstudy.node; print(any(m in sys.modules for m in {mods!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "False", out.stderr


def test_peer_versions_come_from_the_binaries_that_run():
    from fsyncstudy.peertools import find_fio, peer_versions
    v = peer_versions({"fio": find_fio(), "nothing": "/nonexistent/peer"})
    assert v["fio"].startswith("fio-") and v["nothing"] == ""


# -- the write paths' pairs (issue 25) ----------------------------------------------------------------

@pytest.fixture
def calls(monkeypatch):
    """Counts the calls our side makes that decide how a write is made durable (each still made)."""
    got = {"fdatasync": 0, "pwritev": [], "pwrite": []}

    def count(name):
        real = getattr(os, name)

        def counting(*a):
            if name == "fdatasync":
                got[name] += 1
            else:
                got[name].append(a[1:] if name == "pwritev" else len(a[1]))
            return real(*a)
        monkeypatch.setattr(os, name, counting)
    for name in got:
        count(name)
    return got


def test_write_path_pairs_do_the_same_on_both_sides(disk_dir, calls):
    need("fio")
    res = peers.compare(disk_dir, rounds=2, peers=["fio"], pairs=["write-paths"], entries=60)
    assert [p.pair for p in res] == ["fio-dsync", "fio-direct-dsync"]
    dsync, direct = res
    for p in res:
        assert p.rounds == 2 and p.order == ["peer first", "ours first"] and not p.unavailable
        assert p.strategy == "always" and p.entries == 60 and p.aim == "ours/fio >= 0.95"
        # each write synchronous on both sides: no sync call on fio's side, one synchronous write per op
        assert p.ours_syncs == [60, 60] and p.peer_syncs == [60, 60]
        assert all(0 < a <= b for a, b in zip(p.peer_p50_us, p.peer_p99_us))   # fio's write clat, read
        assert all(x > 0 for x in p.ours_ops_per_sec + p.peer_ops_per_sec)
        assert p.verdict() in ("meets", "short", "unclear") and math.isfinite(p.ratio_median())
        assert "--fdatasync=1" not in p.peer_command and "--sync=dsync" in p.peer_command
    # fio: O_DSYNC appends of our record; ours: a pwritev2(RWF_DSYNC) per entry, never fdatasync
    assert dsync.sync_method == "rwf_dsync" and dsync.block_bytes == 144 and "--direct=1" not in dsync.peer_command
    assert "--fallocate=native" in dsync.peer_command and dsync.prealloc == "fallocate"
    rwf = [a for a in calls["pwritev"] if a[-1] == os.RWF_DSYNC]
    assert len(rwf) >= 2 * 60 and calls["fdatasync"] < 60    # (the fdatasyncs left are the logs' preparation)
    # fio: a new 4096-byte block per op, direct, in a file laid out written; ours: the tail block rewritten
    assert direct.sync_method == "direct_dsync" and direct.block_bytes == 4096 and direct.prealloc == "zero-fill"
    assert {"--direct=1", "--bs=4096", "--overwrite=1"} <= set(direct.peer_command)
    blocks = [n for n in calls["pwrite"] if n % 4096 == 0]
    assert len(blocks) == 2 * 60 + 1 and set(blocks) == {4096, 8192}    # + the O_DIRECT probe's block
    assert blocks.count(8192) == 2 * peers.tail_block_writes(144, 60)
    assert f"{peers.tail_block_writes(144, 60)} of 60 records" in " ".join(direct.notes)
    assert leftovers(disk_dir) == []


def test_tail_block_writes_counts_records_across_a_block_boundary():
    assert peers.tail_block_writes(144, 28) == 0                  # 28 * 144 = 4032: all in the first block
    assert peers.tail_block_writes(144, 29) == 1                  # the 29th crosses 4096
    assert peers.tail_block_writes(4096, 5) == 0 and peers.tail_block_writes(2048 + 1024, 2) == 1
    assert peers.tail_block_writes(144, 256) == 8                 # 9 blocks; the 256th ends exactly on one


def test_a_target_without_o_direct_records_the_direct_pair_unavailable(disk_dir, tmp_path, monkeypatch):
    need("fio")
    # tmpfs has taken O_DIRECT since Linux 6.6; where a filesystem refuses it, fcntl says EINVAL

    def refused(fd):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    monkeypatch.setattr("fsyncstudy.log.set_direct", refused)
    fio_runs = []
    real_run_fio = peers.run_fio
    monkeypatch.setattr(peers, "run_fio", lambda *a, **kw: fio_runs.append(kw["sync"]) or real_run_fio(*a, **kw))
    out = tmp_path / "peers"
    s = peers.run_comparison(out, targets=[str(disk_dir)], rounds=2, peers=("fio",),
                             pairs=("fio-fdatasync", "fio-direct-dsync"))
    assert (s.ran, s.failed) == (1, 0)
    assert fio_runs == ["fdatasync"] * 2       # never run buffered (or at all) in direct's place
    df, meta = peers.load(out)
    assert meta["plan"]["pairs"] == ["fio-fdatasync", "fio-direct-dsync"]
    got = dataset.check(out, schema=peers.SCHEMA)
    assert got.problems == [] and got.short == []
    gone = df[df["pair"] == "fio-direct-dsync"]
    assert len(gone) == 2 * 2 and gone["ops_per_sec"].isna().all()     # a row per round and side, no values
    summ = analysis.peers_summary(df).set_index("pair")
    assert summ.loc["fio-direct-dsync", "verdict"] == "unavailable"
    assert "refuses O_DIRECT" in summ.loc["fio-direct-dsync", "unavailable"]
    assert summ.loc["fio-fdatasync", "verdict"] in ("meets", "short", "unclear")
    claims = " ".join(c.text for c in analysis.peers_claims(analysis.peers_summary(df), df))
    assert "`fio-direct-dsync` unavailable:" in claims and "refuses O_DIRECT" in claims
    assert leftovers(disk_dir) == []


def test_a_kernel_without_rwf_dsync_records_the_dsync_pair_unavailable(disk_dir, monkeypatch):
    need("fio")

    def refused(*a):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
    monkeypatch.setattr(os, "pwritev", refused)
    [p] = peers.compare(disk_dir, rounds=2, peers=["fio"], pairs=["fio-dsync"], entries=50)
    assert p.verdict() == "unavailable" and p.notes[0].startswith(peers.UNAVAILABLE + "rwf_dsync")
    assert p.ours_ops_per_sec == p.peer_ops_per_sec == [None, None] and p.summary()["ratio"] is None
    assert "unavailable" in format_pairs([p]) and leftovers(disk_dir) == []


def test_pairs_are_chosen_by_name_or_group(disk_dir):
    assert peers.select_pairs(["fio", "pg_test_fsync"]) == ["fio-fdatasync", "fio-nosync", "pg-open_datasync",
                                                            "pg-fdatasync", "pg-fsync", "pg-open_sync"]
    assert peers.select_pairs(["fio", "pg_test_fsync"], ["write-paths"]) == ["fio-dsync", "fio-direct-dsync"]
    assert peers.select_pairs(["fio"], ["all"]) == list(peers.PAIRS["fio"])
    assert peers.select_pairs(["pg_test_fsync"], ["write-paths"]) == []
    with pytest.raises(ValueError, match="unknown pair 'fio-sync'"):
        peers.select_pairs(["fio"], ["fio-sync"])
    with pytest.raises(ValueError, match="pair pg-fsync is pg_test_fsync's"):
        peers.select_pairs(["fio"], ["pg-fsync"])
    with pytest.raises(ValueError, match="no pair among write-paths"):
        peers.compare(rounds=1, peers=["pg_test_fsync"], pairs=["write-paths"])
    out = cli("peers", "--peers", "fio", "--pairs", "fio-dsync,nonsense")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        next(line for line in out.stderr.splitlines() if "unknown pair 'nonsense'" in line)]
    if peertools.shutil.which("fio"):
        out = cli("peers", "--peers", "fio", "--pairs", "fio-dsync", "--rounds", "1", "--entries", "30",
                  "--target", str(disk_dir), "--json")
        assert out.returncode == 0, out.stderr
        assert [d["pair"] for d in json.loads(out.stdout)["pairs"]] == ["fio-dsync"]
        assert leftovers(disk_dir) == []


def test_the_plan_and_its_estimate_count_the_write_path_pairs():
    from fsyncstudy.profiles import PeersPlan, peer_round_s, PEER_WRITE_PATHS_ROUND_S
    old, new = PeersPlan(rounds=3), PeersPlan(rounds=3, pairs=("default", "write-paths"))
    assert old == PeersPlan(rounds=3, peers=("fio", "pg_test_fsync"), secs_per_test=1)   # older plans unchanged
    assert PEER_WRITE_PATHS_ROUND_S > 0
    assert peer_round_s(new) == pytest.approx(peer_round_s(old) + PEER_WRITE_PATHS_ROUND_S)
    assert peer_round_s(PeersPlan(rounds=3, peers=("pg_test_fsync",), pairs=("all",))) == \
        peer_round_s(PeersPlan(rounds=3, peers=("pg_test_fsync",)))          # no fio: no write-path pairs


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "data").glob("peers-*")))
def test_committed_comparisons_still_load_with_their_verdicts(name):
    df, meta = peers.load(REPO / "data" / name)
    # the write-path pairs where the plan named them (since 2026-12-07), and only there
    wanted = "write-paths" in meta["plan"].get("pairs", ())
    assert (set(df["pair"]) >= set(peers.WRITE_PATH_PAIRS)) if wanted else not set(df["pair"]) & set(peers.WRITE_PATH_PAIRS)
    summ = analysis.peers_summary(df)
    assert (summ["unavailable"] == "").all() and "unavailable" not in set(summ["verdict"])
    fio = summ[summ["pair"] == "fio-fdatasync"]
    assert fio["verdict"].isin(["meets", "short", "unclear"]).all() and fio["ratio_median"].notna().all()
    got = dataset.check(REPO / "data" / name, schema=peers.SCHEMA)   # what `python -m fsyncstudy check` runs
    assert got.problems == [] and got.short == []
