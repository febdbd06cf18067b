"""Statistics against hand-computed values."""
import math

import numpy as np
import pandas as pd
import pytest

from fsyncstudy import stats


def test_t_interval_matches_the_textbook():
    lo, hi = stats.t_interval([1, 2, 3, 4, 5])
    # mean 3, sd sqrt(2.5), se sqrt(0.5), t(0.975, 4) = 2.7764451
    half = 2.7764451 * math.sqrt(0.5)
    assert lo == pytest.approx(3 - half, abs=1e-6) and hi == pytest.approx(3 + half, abs=1e-6)
    assert stats.t_interval([7, 7, 7]) == (7, 7)
    assert all(math.isnan(v) for v in stats.t_interval([7]))


def test_tukey_fences_count_outliers_without_dropping_them():
    # Q1 = 2, Q3 = 4, IQR = 2: fences at -1 and 7
    assert stats.tukey_outliers([1, 2, 3, 4, 100]) == (0, 1)
    assert stats.tukey_outliers([-50, 2, 3, 4, 5]) == (1, 0)
    assert stats.tukey_outliers([1, 2, 3]) == (0, 0)
    d = stats.describe_values([1, 2, 3, 4, 100])
    assert (d["n"], d["arith_mean"], d["median"], d["outliers"]) == (5, 22, 3, 1)
    assert d["mean"] == d["estimate"] == pytest.approx((1 * 2 * 3 * 4 * 100) ** (1 / 5))


def test_bca_is_seeded_contains_the_mean_and_handles_degenerate_data():
    x = [10.0, 12.0, 11.0, 15.0, 9.0, 13.0]
    a = stats.bca_interval(x, seed=1)
    assert a == stats.bca_interval(x, seed=1)
    assert a[0] < np.mean(x) < a[1]
    assert stats.bca_interval([4.0, 4.0, 4.0]) == (4.0, 4.0)
    assert all(math.isnan(v) for v in stats.bca_interval([4.0]))


def test_ratio_interval_pairs_by_round_and_is_never_negative():
    iv = stats.ratio_interval([2, 2, 2], [1, 1, 1], pairs=True)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((2, 2, 2))
    # round 3 has two numerator trials (their geometric mean), round 4 only a numerator (left out)
    iv = stats.ratio_interval([20, 22, 21, 25, 30], [1, 1.1, 1.0], pairs=([1, 2, 3, 3, 4], [1, 2, 3]))
    assert iv.n == 3 and iv.estimate == pytest.approx((20 / 1 * 22 / 1.1 * math.sqrt(21 * 25) / 1.0) ** (1 / 3))
    assert 0 < iv.low < iv.estimate < iv.high
    assert iv.method == stats.RATIO_METHOD   # the captions' words are the interval's own
    with pytest.raises(ValueError):
        stats.ratio_interval([1, 2], [1, 2, 3], pairs=[1, 2])


def frame():
    rows = []
    for config, kind, vals in (("always/w1/append/fdatasync", "always", [100, 110, 90]),
                               ("none/w1/append/fdatasync", "none", [1000, 1100, 900])):
        for v in vals:
            rows.append({"target": "/t", "target_label": "ext4", "target_fstype": "ext4",
                         "target_durability": "durable", "config": config, "config_label": kind,
                         "strategy": kind, "kind": kind, "interval_ms": np.nan, "writers": 1, "prealloc": "append",
                         "sync_method": "fdatasync", "nominal_loss_window_ms": 0.0, "ops_per_sec": v,
                         "ack_latency_us_p99": v / 10})
    return pd.DataFrame(rows)


def test_summaries_carry_n_and_the_method():
    s = stats.summarize(frame())
    ops = stats.wide(s, "ops_per_sec").set_index("config")
    assert ops.loc["none/w1/append/fdatasync", "arith_mean"] == 1000
    assert ops.loc["none/w1/append/fdatasync", "n"] == 3
    assert ops.loc["always/w1/append/fdatasync", "sd"] == pytest.approx(10)
    # three trials each: the t interval on the log scale, and no BCa (it covered 70-87% at such n)
    assert s["ci_method"].str.contains("t interval on the log scale").all() and not s["ci_method"].str.contains("BCa").any()
    assert s["bca_low"].isna().all()
    assert all(stats.T_METHOD.startswith(m) for m in s["ci_method"])   # the caption says what the table did
    assert ops.loc["none/w1/append/fdatasync", "estimate"] == pytest.approx((1000 * 1100 * 900) ** (1 / 3))


def test_throughput_relative_to_always():
    r = stats.relative_to(frame()).set_index("config")
    assert r.loc["always/w1/append/fdatasync", "ratio"] == 1
    assert r.loc["none/w1/append/fdatasync", "ratio"] == pytest.approx(10)
    assert r.loc["none/w1/append/fdatasync", "ratio_low"] <= 10 <= r.loc["none/w1/append/fdatasync", "ratio_high"]


def test_pareto_front():
    pts = pd.DataFrame({"ops_per_sec": [10, 20, 15, 30, 30], "loss_window_ms": [0, 5, 10, 50, 60]})
    assert stats.pareto_front(pts).tolist() == [True, True, False, True, False]


def test_unpaired_ratio_is_welchs_interval_of_the_log_difference():
    from scipy import stats as st

    from fsyncstudy import intervals
    a, b = [10.0, 12.0, 11.0, 13.0], [20.0, 25.0, 22.0]
    r = intervals.ratio_interval(b, a)
    la, lb = np.log(a), np.log(b)
    assert r.estimate == pytest.approx(math.exp(lb.mean() - la.mean()))
    va, vb = la.var(ddof=1) / 4, lb.var(ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)
    half = st.t.ppf(0.975, int(df)) * math.sqrt(va + vb)   # df rounded down: a little wider, never narrower
    assert r.low == pytest.approx(math.exp(lb.mean() - la.mean() - half), rel=1e-5)
    assert r.high == pytest.approx(math.exp(lb.mean() - la.mean() + half), rel=1e-5)
    assert not intervals.ratio_interval([5.0], [2.0, 3.0]).has_interval()
    assert not intervals.ratio_interval([], [1.0]).has_estimate()


def test_variance_components_find_a_round_effect_and_its_size():
    rng = np.random.default_rng(3)
    rows = []
    rounds = rng.normal(0, 0.05, 12)            # each round moves every configuration by ~5%
    for c in range(20):
        for r in range(12):
            rows.append({"config": c, "round": r, "ops_per_sec": 1000 * (c + 1) * np.exp(rounds[r] + rng.normal(0, 0.02))})
    v = stats.variance_components(pd.DataFrame(rows))
    assert v["p"] < 1e-6 and v["units"] == 20 and v["blocks"] == 12
    assert v["sd_trial"] == pytest.approx(0.02, rel=0.15)
    assert v["sd_block"] == pytest.approx(np.std(rounds, ddof=1), rel=0.15) and v["block_share"] > 0.8
    # no round effect: the test says so, and the block's share is near 0
    flat = pd.DataFrame(rows)
    flat["ops_per_sec"] = [1000 * (c + 1) * np.exp(rng.normal(0, 0.02)) for c in flat["config"]]
    w = stats.variance_components(flat)
    assert w["p"] > 0.001 and w["block_share"] < 0.2
