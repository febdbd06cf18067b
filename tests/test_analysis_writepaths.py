"""The write paths' page (analysis.writepaths): each path beside its baseline, paired by round; the tail
pooled from histograms; what each kept at a cut; on frames shaped as a sweep's rows."""
import numpy as np
import pandas as pd
import pytest

from fsyncstudy import measures
from fsyncstudy.analysis import writepaths


def _rows(config, label, strategy, ops, rounds=(0, 1, 2), target="/t", **path):
    out = []
    for r, v in zip(rounds, ops):
        lat = [100_000.0] * 998 + [5_000_000.0] * 2      # ns: two slow acks in a thousand
        out.append({"round": r, "target": target, "target_label": "ext4 on vda", "config": config,
                    "config_label": label, "strategy": strategy, "kind": strategy.split("_")[0],
                    "ops_per_sec": v, "ack_latency_us_p50": 100.0, "ack_latency_us_p99": 100.0,
                    "ack_latency_us_max": 5000.0, "sync_method": path.get("sync_method", "fdatasync"),
                    "write_mode": path.get("write_mode", "per-entry"), "bytes_per_sync": path.get("bytes_per_sync", 0),
                    "segment_bytes": path.get("segment_bytes", 0), "roll_count": path.get("rolls", 0),
                    "roll_ack_us_p50": path.get("roll_us", np.nan), "roll_ack_us_max": path.get("roll_us", np.nan),
                    "process_exposure_ms_max": np.nan, "bound": "storage",
                    "ack_latency_hist": measures.encode_histogram(measures.histogram(sorted(int(x) for x in lat),
                                                                                     presorted=True))})
    return out


def test_each_path_is_set_beside_the_plain_path_it_changes_paired_by_round():
    assert writepaths.baseline_config("always/w1/append/rwf_dsync") == "always/w1/append/fdatasync"
    assert writepaths.baseline_config("batch_10ms/w1/append/fdatasync/buffered") == "batch_10ms/w1/append/fdatasync"
    # a preallocated direct_dsync beside direct_dsync appending: the hazard, like with like
    assert writepaths.baseline_config("always/w1/fallocate/direct_dsync") == "always/w1/append/direct_dsync"
    df = pd.DataFrame(_rows("always/w1/append/fdatasync", "always", "always", [1000, 2000, 1500])
                      + _rows("always/w1/append/rwf_dsync", "always (rwf_dsync)", "always", [2000, 4000, 3000],
                              sync_method="rwf_dsync")
                      + _rows("always/w1/zero-fill/fdatasync", "always (zero-fill)", "always", [900, 900, 900]))
    t = writepaths.paths_table(df)
    assert list(t["config"]) == ["always/w1/append/rwf_dsync"]     # the plain path and preallocation are not paths
    r = t.iloc[0]
    # every round twice as fast: the paired ratio is exactly 2 with no spread (unpaired it would not be)
    assert r["ratio"] == pytest.approx(2.0) and r["ratio_low"] == pytest.approx(2.0) == r["ratio_high"]
    # p99.9 pools every ack: two in a thousand took 5 ms, so the pooled p99.9 is their bucket, not the p50
    assert 4_900 < r["p999_us"] < 5_400 and r["p50_us"] == 100.0


def test_a_segment_roll_is_told_against_the_median_ack_and_one_file():
    df = pd.DataFrame(_rows("always/w1/append/fdatasync", "always", "always", [1000, 1000, 1000])
                      + _rows("always/w1/append/fdatasync/seg32768", "always (32 KiB segments)", "always",
                              [900, 900, 900], segment_bytes=32768, rolls=3, roll_us=2500.0))
    lines = writepaths.roll_lines(writepaths.paths_table(df))
    assert len(lines) == 1 and "rolled 3.0 times a trial" in lines[0] and "2,500 µs" in lines[0]


def test_what_each_path_kept_at_a_cut_with_its_bound_or_its_window():
    cuts = pd.DataFrame([{"kind": "power", "strategy": "always", "path": "rwf_dsync", "error": "", "acked": 50,
                          "lost_acked": 0, "oldest_lost_age_ms": np.nan} for _ in range(10)]
                        + [{"kind": "process", "strategy": "batch_10ms", "path": "buffered", "error": "", "acked": 80,
                            "lost_acked": k % 2 * 3, "oldest_lost_age_ms": 4.0 if k % 2 else np.nan} for k in range(4)]
                        + [{"kind": "power", "strategy": "always", "path": "", "error": "", "acked": 9,
                            "lost_acked": 0, "oldest_lost_age_ms": np.nan}])
    k = writepaths.keeps_table(cuts).set_index(["kind", "path"])
    assert len(k) == 2                                  # the plain path's cuts are page 04's
    safe = k.loc[("power", "rwf_dsync")]
    assert safe["lost_acked"] == 0 and 0.25 < safe["zero_loss_upper"] < 0.27    # 10 cuts, none lost: at most 26%
    lossy = k.loc[("process", "buffered")]
    assert lossy["cuts_losing"] == 2 and lossy["lost_acked"] == 6 and lossy["window_ms_max"] == 4.0
    assert writepaths.keeps_table(None).empty and writepaths.keeps_table(cuts.drop(columns="path")).empty


def test_the_table_reads_in_the_indexs_order_of_targets_not_in_the_order_the_shuffled_rounds_ran():
    def on(target, label):
        rows = (_rows("none/w1/append/fdatasync", "none", "none", [9, 9, 9], target=target)
                + _rows("none/w1/append/fdatasync/bps1048576", "none (sync_file_range every 1 MiB)", "none", [9, 9, 9],
                        target=target, bytes_per_sync=1 << 20)
                + _rows("always/w1/append/fdatasync", "always", "always", [1, 1, 1], target=target)
                + _rows("always/w1/append/rwf_dsync", "always (rwf_dsync)", "always", [1, 1, 1], target=target,
                        sync_method="rwf_dsync"))
        return [{**r, "target_label": label} for r in rows]
    # the lab's emulation first in the rows, then a lab filesystem, then the machine's own disk
    df = pd.DataFrame(on("/lab/hdd", "lab:hdd-emulated (EMULATED)") + on("/lab/xfs", "lab:xfs") + on("/", "ext4 on vda"))
    t = writepaths.paths_table(df)
    assert list(zip(t["target_label"], t["config_label"])) == [
        ("ext4 on vda", "always (rwf_dsync)"), ("ext4 on vda", "none (sync_file_range every 1 MiB)"),
        ("lab:xfs", "always (rwf_dsync)"), ("lab:xfs", "none (sync_file_range every 1 MiB)"),
        ("lab:hdd-emulated (EMULATED)", "always (rwf_dsync)"),
        ("lab:hdd-emulated (EMULATED)", "none (sync_file_range every 1 MiB)")]
