"""The commands' text, from small results made here: each formatter takes results and returns text, so
what a user reads is checked without running a command or measuring anything."""
from types import SimpleNamespace

import pandas as pd

from fsyncstudy import analysis
from fsyncstudy.cli.bench import format_bench, format_devices
from fsyncstudy.cli.crash import format_crash
from fsyncstudy.cli.load import format_load
from fsyncstudy.cli.realdb import format_predictions, format_side_by_side
from fsyncstudy.cli.report import format_diff
from fsyncstudy.targets import Target

DISK = Target(path="/data/runs", fstype="ext4", mount_point="/data", mount_options="rw,relatime", source="/dev/vda1",
              block_device="vda", durability="durable", reason="a real block device")


def row_of(text: str, *first: str) -> list[str]:
    """The cells of the table row whose first cells are ``first`` (cells are two or more spaces apart)."""
    rows = ([c.strip() for c in ln.split("  ") if c.strip()] for ln in text.splitlines())
    return next(r for r in rows if r[:len(first)] == list(first))


def cut(kind, strategy, lost=0, age=None, acked=5000, error=""):
    return {"kind": kind, "strategy": strategy, "skind": strategy.split("_")[0], "interval_ms": 10,
            "nominal_loss_window_ms": 10.0, "acked": acked, "lost_acked": lost, "torn": 0, "corrupt": 0,
            "unacked_recovered": 0, "oldest_lost_age_ms": age, "error": error}


def test_crash_shows_the_analysis_table_with_the_failed_cuts_beside_it():
    cuts = pd.DataFrame([cut("power", "batch_10ms", lost=3, age=8.0), cut("power", "batch_10ms"),
                         cut("power", "batch_10ms", lost=1, age=2.0), cut("power", "batch_10ms", error="boom"),
                         cut("power", "always"), cut("power", "always"),
                         cut("process", "none", error="ENOSPC"), cut("process", "none", error="ENOSPC")])
    errors = {key: int((g["error"] != "").sum()) for key, g in cuts.groupby(["kind", "strategy"], sort=False)}
    text = format_crash(analysis.crash_table(cuts), errors)
    header = text.splitlines()[0].split()
    assert header[:5] == ["kind", "strategy", "path", "cuts", "acked"] and header[-1] == "errors"
    # the loss window is the report's: over every cut that counted, 0 where nothing was lost (median 2.0)
    assert row_of(text, "power", "batch_10ms") == ["power", "batch_10ms", "plain", "3", "15,000", "4", "2", "-", "2.00",
                                                    "8.00", "0", "0", "1"]
    # no cut lost: the 95% upper bound on the share of cuts that would (2 cuts: 77.6%)
    assert row_of(text, "power", "always") == ["power", "always", "plain", "2", "10,000", "0", "0", "77.6% of cuts",
                                                "0.00", "0.00", "0", "0", "0"]
    # every cut of it failed: a row all the same, saying so
    assert row_of(text, "process", "none") == ["process", "none", "plain", "0", "0", "0", "0", "-", "-", "-", "0", "0",
                                                "2"]
    assert text.splitlines()[-1].startswith("(zero-loss bound: the 95% upper bound")


def test_crash_shows_each_write_path_of_a_strategy_on_its_own_row():
    cuts = pd.DataFrame([{**cut("process", "batch_10ms"), "path": ""},
                         {**cut("process", "batch_10ms", lost=40, age=9.0), "path": "buffered"}])
    errors = {key: 0 for key, _ in cuts.groupby(["kind", "strategy", "path"], sort=False)}
    text = format_crash(analysis.crash_table(cuts), errors)
    assert row_of(text, "process", "batch_10ms", "plain")[3:6] == ["1", "5,000", "0"]
    assert row_of(text, "process", "batch_10ms", "buffered")[3:6] == ["1", "5,000", "40"]


def trial(strategy, kind, ops, **kw):
    base = dict(strategy=strategy, kind=kind, ops_per_sec=ops, entries=10_000, elapsed_s=10_000 / ops, syncs=10_000,
                ack_latency_us_p50=40.0, ack_latency_us_p99=90.5, sync_latency_us_p50=38.0, sync_latency_us_p99=88.0,
                exposure_ms_p99=0.04, exposure_ms_max=0.05, data_loss_window="0 ms", writeback_expire_s=30.0,
                writeback_interval_s=5.0)
    return SimpleNamespace(**{**base, **kw})


def test_bench_prints_the_target_how_trials_ran_and_one_row_per_strategy():
    results = [trial("always", "always", 2500.0), trial("none", "none", 800_000.0, syncs=0, data_loss_window="OS")]
    text = format_bench(results, DISK, sync_method="fdatasync", prealloc="append", payload_bytes=128, entries=10_000,
                        duration=None)
    lines = text.splitlines()
    assert lines[0] == "target: /data/runs (ext4 on vda), durable: a real block device"
    assert "each trial runs at least 10,000 entries, and batch_<N>ms and group_<N>ms at least 5 intervals" in lines[1]
    assert lines[2] == ""
    assert row_of(text, "always")[:3] == ["always", "2,500", "10,000"]
    # none's bound is the kernel's write-back: dirty_expire + dirty_writeback
    assert row_of(text, "none")[-1] == "<= 35 s"
    assert lines[-2:] == ["", "none: nothing was synced; the kernel writes dirty pages back once they are dirty_expire "
                              "old, checking every dirty_writeback (the bound shown)."]
    assert "none: nothing" not in format_bench(results[:1], DISK, "fdatasync", "append", 128, None, 2.0)
    assert "each trial runs at least 2 s," in format_bench(results[:1], DISK, "fdatasync", "append", 128, None, 2.0)


def test_devices_lists_each_filesystem_with_its_advice_and_the_machine_last():
    text = format_devices([DISK], ["CPU frequency governor: performance: good for measuring"])
    assert row_of(text, "/data")[:3] == ["/data", "ext4", "vda"]
    assert "  /data: a real block device" in text.splitlines()
    assert any(ln.startswith("    - ext4 commit=5 s, data=ordered") for ln in text.splitlines())
    assert text.splitlines()[-2:] == ["this machine:", "  - CPU frequency governor: performance: good for measuring"]


def load_result(strategy, clients, offered, achieved, saturated):
    return SimpleNamespace(strategy=strategy, clients=clients, offered_rate=offered, achieved_rate=achieved,
                           saturated=saturated, latency_us_p50=120.0, latency_us_p99=2500.0, latency_us_p999=None,
                           service_us_p99=900.0, exposure_ms_max=None, lateness_us_p99=15.25)


def test_load_marks_a_saturated_trial_and_shows_latency_in_ms():
    results = [load_result("group_0ms", 4, 2000.0, 1999.0, False), load_result("always", 1, 50_000.0, 3100.0, True)]
    text = format_load(results, DISK, "poisson", 1.0)
    assert text.splitlines()[1].startswith("poisson arrivals for 1 s;")
    assert row_of(text, "group_0ms x4") == ["group_0ms x4", "2,000", "1,999", "keeps up", "0.120", "2.500", "-", "0.900",
                                            "-", "15.2"]
    assert row_of(text, "always")[3] == "SATURATED"
    assert text.splitlines()[-2] == "" and text.splitlines()[-1].startswith("SATURATED: the target did not keep up")
    assert "SATURATED:" not in format_load(results[:1], DISK, "constant", 0.5)


def test_realdb_shows_each_setting_beside_its_prediction():
    side = {"commits_per_sec": 1800.0, "latency_us_p50": 450.0, "latency_us_p99": 1200.0,
            "device_flushes_per_commit": 1.02}
    rows = [{"setting": "sqlite/wal-full", "clients": 1, "db": side, "prediction": {"strategy": "always", **side,
                                                                                     "commits_per_sec": 2000.0},
             "ratio": 0.9},
            {"setting": "redis/always", "clients": 1, "db": side, "prediction": {"strategy": "always", **side,
                                                                                  "commits_per_sec": 0.0},
             "ratio": None}]
    text = format_side_by_side(rows, DISK, rate=None, duration_s=0.5)
    assert "closed loop, 0.5 s each side" in text.splitlines()[1]
    assert row_of(text, "sqlite/wal-full") == ["sqlite/wal-full", "1", "1,800", "0.450", "1.200", "1.02", "always",
                                               "2,000", "0.900"]
    assert row_of(text, "redis/always")[-1] == "-"
    assert "open loop at 2,000 commits/s" in format_side_by_side(rows, DISK, rate=2000.0, duration_s=0.5)
    pred = pd.DataFrame([{"key": "postgres/on", "target_label": "ext4 on vda", "db_commits_per_sec": 950.0,
                          "strategy": "group_0ms", "predicted_per_sec": 1000.0, "ratio": 0.95, "ratio_low": 0.9,
                          "ratio_high": 1.01, "db_flushes_per_commit": 1.0, "db_bytes_per_commit": 8192.0,
                          "db_cpu_us_per_commit": 55.55}])
    assert row_of(format_predictions(pred), "postgres/on") == [
        "postgres/on", "ext4 on vda", "950", "group_0ms", "1,000", "0.950 (0.900-1.010)", "1.00", "8,192", "55.5"]


def test_diff_names_both_runs_and_gives_each_side_its_interval():
    diff = pd.DataFrame([{"target_label": "ext4 on vda", "config_label": "always", "metric": "ops_per_sec",
                          "mean_a": 1000.0, "low_a": 900.0, "high_a": 1100.0, "n_a": 5, "mean_b": 1500.0,
                          "low_b": 1400.0, "high_b": 1600.0, "n_b": 5, "ratio": 1.5, "ratio_low": 1.3,
                          "ratio_high": 1.7, "verdict": "B faster",
                          "ci_method": "ratio of geometric means, Welch's 95% t interval of the log difference"}])
    text = format_diff(diff, "run-a", "run-b")
    assert text.splitlines()[:3] == ["A: run-a", "B: run-b", ""]
    assert row_of(text, "ext4 on vda") == ["ext4 on vda", "always", "1,000 [900, 1,100] n = 5",
                                           "1,500 [1,400, 1,600] n = 5", "1.500 [1.300, 1.700]", "B faster"]
    # a side short of its plan says so on its row and above the table
    short = format_diff(diff.assign(n_b=2, planned_a=5, planned_b=5), "run-a", "run-b")
    assert row_of(short, "ext4 on vda")[3] == "1,500 [1,400, 1,600] n = 2 of 5 planned"
    assert "Run B is short of its plan in 1 of 1 configurations (as few as n = 2 of 5 planned)" in short
    # the answer first (per target: how many moved, the largest moves), then the table
    assert text.splitlines()[3].startswith("- ext4 on vda: of 1 configurations")
    assert any("A ops_per_sec [95% CI]" in line for line in text.splitlines()[4:])
    assert text.splitlines()[-1].endswith("each side's interval: 95% t over its trials")
