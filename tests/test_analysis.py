"""The notebooks' tables and figures on small frames whose answers are known by hand."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fsyncstudy import analysis, plots, stats  # noqa: E402
from fsyncstudy.strategies import parse  # noqa: E402

#: (config, ops/sec per trial, worst exposure ms per trial or None when never synced)
CONFIGS = [
    ("always/w1/append/fdatasync", [100, 110, 90], [0, 0, 0]),
    ("always/w1/zero-fill/fdatasync", [150, 165, 135], [0, 0, 0]),
    ("batch_10ms/w1/append/fdatasync", [10_000, 11_000, 9_000], [14, 15, 16]),
    ("batch_50ms/w1/append/fdatasync", [9_000, 10_000, 8_000], [60, 61, 62]),   # slower and longer: dominated
    ("group_0ms/w4/append/fdatasync", [300, 330, 270], [0, 0, 0]),
    ("none/w1/append/fdatasync", [20_000, 22_000, 18_000], [None, None, None]),
]


def sweep_frame(target="/t", label="ext4 on vda, durable", durability="durable") -> pd.DataFrame:
    rows = []
    for config, ops, exp in CONFIGS:
        strategy, w, prealloc, method = config.split("/")
        st = parse(strategy)
        for k, (v, e) in enumerate(zip(ops, exp)):
            rows.append({"round": k + 1, "target": target, "target_label": label, "target_fstype": "ext4",
                         "target_durability": durability, "config": config,
                         "config_label": strategy + ("" if prealloc == "append" else f" ({prealloc})"),
                         "strategy": strategy, "kind": st.kind, "interval_ms": st.interval_ms, "writers": int(w[1:]),
                         "prealloc": prealloc, "sync_method": method,
                         "nominal_loss_window_ms": st.nominal_loss_window_ms, "ops_per_sec": float(v),
                         "ack_latency_us_p99": 1e6 / v, "exposure_ms_p99": None if e is None else e * 0.9,
                         "exposure_ms_max": e, "sync_latency_us_p50": 50.0, "writeback_expire_s": 30.0,
                         "writeback_interval_s": 5.0})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def df():
    return sweep_frame()


@pytest.fixture(scope="module")
def summ(df):
    return analysis.summary(df, n_boot=200)


def test_the_task_table_has_the_three_strategies_in_order_with_their_ratio(df, summ):
    rel = stats.relative_to(df, n_boot=200)
    t = analysis.task_table(summ, rel)
    assert list(t["strategy"]) == ["always", "batch_10ms", "none"]
    row = t.set_index("strategy")
    assert row.loc["always", "ops_per_sec"] == pytest.approx((100 * 110 * 90) ** (1 / 3)) and row.loc["none", "× always"] == pytest.approx(200)
    assert row.loc["batch_10ms", "measured max exposure ms"] == pytest.approx((14 * 15 * 16) ** (1 / 3))
    assert row.loc["batch_10ms", "durability"] == "every_10ms" and row.loc["none", "data_loss_window"] == "seconds"
    assert np.isnan(row.loc["none", "measured max exposure ms"])  # never synced: nothing measured


def test_preallocation_is_a_ratio_of_means_over_the_same_strategy_appending(df):
    pre = analysis.prealloc_table(df, n_boot=200)
    assert len(pre) == 1
    r = pre.iloc[0]
    assert (r["strategy"], r["prealloc"], r["n"]) == ("always", "zero-fill", 3)
    assert r["ratio"] == pytest.approx(1.5) and r["ratio_low"] <= 1.5 <= r["ratio_high"]


def test_interval_curves_hold_batch_and_group_by_family(summ):
    c = analysis.interval_curves(summ)
    assert set(c["family"]) == {"batch (1 writer)", "group commit (4 writers)"}
    batch = c[c["kind"] == "batch"]
    assert list(batch["interval_ms"]) == [10, 50]
    refs = analysis.reference_rows(summ)
    assert set(refs["strategy"]) == {"always", "none"}


def test_the_frontier_keeps_what_nothing_beats_and_draws_none_at_the_kernel_bound(df, summ):
    pts = analysis.frontier_points(summ, df).set_index("config")
    assert pts.loc["none/w1/append/fdatasync", "window_source"] == "kernel bound"
    assert pts.loc["none/w1/append/fdatasync", "loss_window_ms"] == 35_000  # (30 + 5) s
    front = set(pts.index[pts["pareto"] & (pts["writers"] == 1)])
    # like with like: group_0ms with 4 writers is faster than every one-writer zero-loss point, but it is not one
    # writer's option, so one writer's frontier starts at the zero-filled always (which beats always appending);
    # batch_50ms is beaten by batch_10ms
    assert front == {"always/w1/zero-fill/fdatasync", "batch_10ms/w1/append/fdatasync", "none/w1/append/fdatasync"}
    assert pts.loc["group_0ms/w4/append/fdatasync", "writers"] == 4 and pts.loc["group_0ms/w4/append/fdatasync", "pareto"]
    # and the page's sentence names one writer's frontier, then the answer per writer count
    (claim,) = analysis.frontier_claims(pts.reset_index(), analysis.answer(df))
    assert "one writer: the frontier of the estimates is `always (zero-fill)`, `batch_10ms`, `none`" in claim.text
    assert "with 4 writers, `group_0ms" in claim.text and claim.premises["trials"] == "3 a point"
    crash = pd.DataFrame({"kind": ["power", "power"], "strategy": ["batch_10ms", "none"], "window_p99_ms": [12.5, 396.0]})
    with_crash = analysis.frontier_points(summ, df, crash=crash, crash_target="/t").set_index("config")
    assert with_crash.loc["batch_10ms/w1/append/fdatasync", "crash_window_ms"] == 12.5
    assert np.isnan(with_crash.loc["always/w1/append/fdatasync", "crash_window_ms"])
    # none's "window" in a power cut is the cut's moment, not a loss window: never drawn
    assert np.isnan(with_crash.loc["none/w1/append/fdatasync", "crash_window_ms"])
    # the cuts ran on lab:powercut: another target's panel gets none of them
    assert analysis.frontier_points(summ, df, crash=crash)["crash_window_ms"].isna().all()


def test_none_has_no_kernel_bound_where_nothing_writes_back():
    fuse = sweep_frame(target="lab:powercut", label="lab:powercut")
    fuse["target_fstype"] = "fuse.fsyncstudy"
    pts = analysis.frontier_points(analysis.summary(fuse, n_boot=200), fuse).set_index("config")
    assert pts.loc["none/w1/append/fdatasync", "window_source"] == "unbounded"
    assert pts.loc["none/w1/append/fdatasync", "loss_window_ms"] == np.inf
    assert pts.loc["batch_10ms/w1/append/fdatasync", "window_source"] == "measured exposure"
    tmp = sweep_frame(target="/dev/shm", label="tmpfs", durability="volatile")
    tmp["target_fstype"] = "tmpfs"
    pts = analysis.frontier_points(analysis.summary(tmp, n_boot=200), tmp)
    # on a volatile target even always loses everything at a power cut: no window is 0 there
    assert (pts["window_source"] == "volatile").all() and (pts["loss_window_ms"] == np.inf).all()
    assert "ever reaches durable" in analysis.writeback_phrase("tmpfs", "volatile", 35)
    assert "FUSE" in analysis.writeback_phrase("fuse.fsyncstudy", "durable", 35)
    assert "about 35 s" in analysis.writeback_phrase("ext4", "uncertain", 35)


def test_the_uncertain_frontier_keeps_what_is_not_beaten_beyond_doubt():
    pts = pd.DataFrame({"ops_per_sec": [100, 104, 200, 90], "ops_low": [95, 99, 190, 85],
                        "ops_high": [105, 109, 210, 95], "loss_window_ms": [0, 0, 10, 0],
                        "window_low": [0, 0, 8, 0], "window_high": [0, 0, 12, 0]})
    # 104 beats 100 on the estimates; their intervals overlap, so both may be on the frontier;
    # 90 (85-95) is beaten beyond doubt by 104 (99-109) at the same zero window
    assert stats.pareto_front(pts).tolist() == [False, True, True, False]
    assert stats.pareto_front_uncertain(pts).tolist() == [True, True, True, False]


def test_none_against_batch_says_which_way_it_went(df, summ):
    ops = stats.wide(summ, "ops_per_sec")
    t = analysis.none_vs_batch(df, ops, n_boot=200)
    assert t.iloc[0]["none / batch_10ms"] == pytest.approx(2.0) and t.iloc[0]["verdict"] == "none faster"
    same = df.copy()
    same.loc[same["config"] == analysis.TASK[2], "ops_per_sec"] = [11_000.0, 9_000.0, 10_000.0]
    assert analysis.none_vs_batch(same, ops, n_boot=200).iloc[0]["verdict"] == "no significant difference"


def cut_frame() -> pd.DataFrame:
    rows = []
    for strategy, lost, ages in (("always", [0, 0, 0, 0], [None] * 4), ("batch_10ms", [0, 5, 7, 3], [None, 12, 15, 9])):
        st = parse(strategy)
        for k, (n, age) in enumerate(zip(lost, ages)):
            rows.append({"kind": "power", "strategy": strategy, "cut": k, "acked": 100, "recovered": 100 - n,
                         "lost_acked": n, "oldest_lost_age_ms": age, "torn": k == 1, "corrupt": False,
                         "unacked_recovered": 1, "error": "", "nominal_loss_window_ms": st.nominal_loss_window_ms,
                         "skind": st.kind, "interval_ms": st.interval_ms})
    rows.append({**rows[-1], "cut": 9, "lost_acked": 99, "oldest_lost_age_ms": 999.0, "error": "RuntimeError: x"})
    return pd.DataFrame(rows)


def test_the_crash_table_counts_cuts_and_losses_and_leaves_failed_cuts_out():
    t = analysis.crash_table(cut_frame(), n_boot=200).set_index("strategy")
    assert t.loc["always", "lost_acked"] == 0 and t.loc["always", "cuts_losing"] == 0
    b = t.loc["batch_10ms"]
    assert (b["cuts"], b["acked"], b["lost_acked"], b["cuts_losing"], b["torn"]) == (4, 400, 15, 3, 1)
    # nearest-rank median of 4 cuts; 4 cuts are too few for a 95% interval of the median, and the max never gets one
    assert b["window_max_ms"] == 15 and b["window_median_ms"] == 9
    assert np.isnan(b["window_median_low"]) and np.isnan(b["window_max_low"]) and "maximum" in b["window_max_method"]
    # no cut of always lost anything: 4 cuts bound the share of losing cuts below 1 - 0.05 ** (1 / 4)
    assert t.loc["always", "cuts_losing_upper95"] == pytest.approx(1 - 0.05 ** 0.25)
    assert np.isnan(b["cuts_losing_upper95"])


def rounds_frame(ours_fio, fio, ours_pg, pg) -> pd.DataFrame:
    rows = []
    for pair, peer, a, b in (("fio-fdatasync", "fio", ours_fio, fio), ("pg-fdatasync", "pg_test_fsync", ours_pg, pg)):
        for r, (x, y) in enumerate(zip(a, b)):
            for side, v in (("ours", x), ("peer", y)):
                rows.append({"target": "/t", "target_label": "ext4", "pair": pair, "peer": peer, "round": r,
                             "side": side, "config": f"{side} {pair}", "ops_per_sec": v, "p50_us": 10.0,
                             "p99_us": 20.0, "aim": ""})
    return pd.DataFrame(rows)


def test_the_peers_summary_gives_the_paired_ratio_and_each_pairs_verdict():
    s = analysis.peers_summary(rounds_frame([100, 200, 400], [100, 200, 400], [90, 90, 90], [100, 101, 99]),
                               {"/t": "durable"}).set_index("pair")
    fio, pg = s.loc["fio-fdatasync"], s.loc["pg-fdatasync"]
    assert fio["ratio"] == pytest.approx(1.0) and fio["verdict"] == "meets" and fio["target_durability"] == "durable"
    assert pg["ratio"] == pytest.approx(0.9, rel=1e-3) and pg["verdict"] == "below"   # 90% CI below 0.95
    assert pg["peer_half_width"] == pytest.approx((pg["peer_high"] - pg["peer_ops"]) / pg["peer_ops"])
    assert pg["peer_ops"] == pytest.approx((100 * 101 * 99) ** (1 / 3))
    short = analysis.peers_summary(rounds_frame([80, 81, 79], [100, 100, 100], [100, 101, 99], [100, 101, 99]))
    assert list(short["verdict"]) == ["short", "equivalent"]


def test_machine_and_targets_tables_read_the_meta_shape():
    meta = {"created_at": "2026-01-01T00:00:00Z",
            "environment": {"host": "h", "kernel": "6.1", "cpu": "c", "cores": 2, "memory_bytes": 2 ** 33,
                            "versions": {"python": "3.11", "fsyncstudy": "0.1.0"},
                            "git": {"commit": "abcdef1234567", "dirty": True},
                            "targets": {"/t": {"fstype": "ext4", "block_device": "vda", "source": "/dev/vda",
                                               "rotational": False, "write_cache": "write back",
                                               "durability": "uncertain", "reason": "virtual disk"}}},
            "plan": {"profile": {"name": "quick", "trials": 3, "warmup_rounds": 1}, "seed": 4},
            "notes": {"trial_rule": "each trial runs at least 0.15 s", "skipped_targets": {"lab:xfs": "no mkfs.xfs"}}}
    m = analysis.machine_table(meta)["value"]
    assert m["memory"] == "8 GiB" and "uncommitted changes" in m["fsyncstudy"] and "seed 4" in m["profile"]
    t = analysis.targets_table(meta)
    assert list(t["target"]) == ["/t", "lab:xfs"] and list(t["verdict"]) == ["uncertain", "skipped"]


# -- figures ----------------------------------------------------------------------------------------

def test_the_figures_draw_what_their_tables_hold(df, summ):
    ops = stats.wide(summ, "ops_per_sec")
    fig = plots.strategies_by_target(ops, analysis.TASK, "title")
    ax = fig.axes[0]
    heights = sorted(round(p.get_height()) for p in ax.patches)
    # each bar is the geometric mean of its trials, the centre of its interval
    assert heights == [round(g) for g in ((100 * 110 * 90) ** (1 / 3), (10_000 * 11_000 * 9_000) ** (1 / 3),
                                          (20_000 * 22_000 * 18_000) ** (1 / 3))] and ax.get_yscale() == "log"

    pts = analysis.frontier_points(summ, df)
    fig, axes = plots.facets(1)
    plots.durability_vs_throughput(pts, "/t", axes[0])
    step = [line for line in axes[0].get_lines() if line.get_drawstyle().startswith("steps")]
    # the line is one writer's frontier; group commit's 4 writers are drawn hollow beside it, not joined to it
    assert len(step) == 1 and len(step[0].get_xdata()) == int((pts["pareto"] & (pts["writers"] == 1)).sum()) == 3
    hollow = [c for c in axes[0].collections if isinstance(c, matplotlib.collections.PathCollection)
              and len(c.get_offsets()) and c.get_facecolors().size == 0]
    assert len(hollow) == 1 and hollow[0].get_offsets()[0][0] == pytest.approx((300 * 330 * 270) ** (1 / 3))
    plots.finish(fig, axes, "the finding", handles=plots.durability_legend())
    assert fig._suptitle.get_text() == "the finding"

    summ_peers = analysis.peers_summary(rounds_frame([100, 90, 95], [100, 100, 100], [90, 90, 90], [100, 100, 101]))
    fig = plots.peer_ratios(summ_peers, 0.95, "t")
    xs = sorted(line.get_xdata()[0] for line in fig.axes[0].get_lines() if len(set(line.get_xdata())) == 1)
    assert 0.95 in xs and 1 in xs
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["fio-fdatasync · ext4", "pg-fdatasync · ext4"]

    table = analysis.crash_table(cut_frame(), n_boot=200)
    ax = plots.loss_window_vs_nominal(table[table["skind"] == "batch"], "t")
    assert len(ax.get_legend().get_texts()) == 4   # median, p99, max and the nominal line
    assert "n = 3" in plots.caption([3, 3]) and "n = 3–5" in plots.caption([3, 5])
    matplotlib.pyplot.close("all")


# -- two runs side by side --------------------------------------------------------------------------

def test_two_runs_are_paired_by_directory_else_label_else_one_to_one(df):
    moved = df.assign(target="/elsewhere")
    assert analysis.pair_targets(df, moved) == {"/t": "/elsewhere"}          # same label
    other = df.assign(target="/x", target_label="xfs on sdb, durable")
    assert analysis.pair_targets(df, other) == {"/t": "/x"}                  # one target each
    two = pd.concat([other, df.assign(target="/y", target_label="btrfs on sdc, durable")])
    assert analysis.pair_targets(df, two) == {}                              # nothing says which
    assert analysis.pair_targets(df, df) == {"/t": "/t"}


def test_diff_runs_gives_each_side_the_ratio_and_the_verdict(df):
    faster = df.copy()
    faster.loc[faster["config"] == analysis.TASK[0], "ops_per_sec"] *= 2
    d = analysis.diff_runs(df, faster).set_index("config")
    assert d.loc[analysis.TASK[0], "ratio"] == pytest.approx(2.0) and d.loc[analysis.TASK[0], "verdict"] == "B higher"
    same = d.loc[analysis.TASK[2]]
    # the same values on both sides: ratio 1, but two runs share no rounds, so each side's spread counts
    assert same["ratio"] == pytest.approx(1.0) and same["ratio_low"] < 1 < same["ratio_high"]
    assert same["verdict"] == "no significant difference"
    assert (same["n_a"], same["n_b"]) == (3, 3) and same["mean_a"] == pytest.approx((20_000 * 22_000 * 18_000) ** (1 / 3))
    noisy = df.copy()
    noisy.loc[noisy["config"] == analysis.TASK[1], "ops_per_sec"] = [9_500.0, 12_000.0, 8_600.0]
    assert analysis.diff_runs(df, noisy).set_index("config").loc[analysis.TASK[1], "verdict"] == \
        "no significant difference"


def test_diff_opens_with_its_answer_and_sorts_by_effect(df):
    b = df.copy()
    b.loc[b["config"] == analysis.TASK[0], "ops_per_sec"] *= 2      # a large rise
    b.loc[b["config"] == analysis.TASK[2], "ops_per_sec"] *= 0.5    # a large fall
    d = analysis.diff_runs(df, b)
    lines = analysis.diff_summary(d)
    assert "1 higher in B, 1 lower" in lines[0] and "largest rise `always` 2.00×" in lines[0]
    assert "largest fall `none` 0.50×" in lines[0] and "by chance alone" in lines[-1]
    ranked = analysis.diff_sorted(d)
    assert set(ranked["config"].iloc[:2]) == {analysis.TASK[0], analysis.TASK[2]}   # the biggest moves first


def test_the_exploration_view_follows_what_is_picked(df, summ):
    from fsyncstudy import explore
    c = explore.choices(df)
    assert c["target"] == ["ext4 on vda"] and "batch" in c["kind"] and c["prealloc"] == ["any", "append", "zero-fill"]
    fig, table = explore.sweep_view(summ, "ext4 on vda", kind="batch")
    assert list(table["configuration"]) == ["batch_10ms", "batch_50ms"] and len(fig.axes[0].patches) == 2
    _, table = explore.sweep_view(summ, "ext4 on vda", metric="exposure_ms_max", prealloc="append")
    assert "worst exposure per trial (ms)" in table.columns and "always (zero-fill)" not in set(table["configuration"])
    box = explore.sweep(df, summ)
    assert [w.description for w in box.children[0].children] == ["target", "metric", "kind"]
    matplotlib.pyplot.close("all")


# -- at your rate -----------------------------------------------------------------------------------

def load_frame() -> pd.DataFrame:
    """Two strategies on one target: always saturates above 2,000/s, batch keeps up everywhere."""
    rows = []
    for rnd in (1, 2, 3):
        for rate in (500, 1000, 2000, 5000):
            for kind, config in (("always", "always/c1"), ("batch", "batch_10ms/c1")):
                sat = kind == "always" and rate == 5000
                p99 = (400 + rnd if rate < 2000 else 900 if rate == 2000 else 300_000) if kind == "always" else 50 + rnd
                rows.append({"round": rnd, "target": "/t", "target_label": "ext4 on vda", "target_durability": "uncertain",
                             "config": config, "config_label": config.split("/")[0], "strategy": config.split("/")[0],
                             "kind": kind, "rate": float(rate), "achieved_rate": 2500.0 if sat else float(rate),
                             "offered_rate": float(rate), "unserved": 900 if sat else 0, "saturated": sat,
                             "latency_us_p50": p99 / 2, "latency_us_p99": p99, "latency_us_p999": p99 * 1.2,
                             "service_us_p50": (180.0 if kind == "always" else 3.0), "service_us_p99": 300.0,
                             "exposure_ms_max": None if kind == "always" else 10.0 + rnd / 10,
                             "lateness_us_p99": 3.0, "cpu_us_per_entry": 20.0})
    return pd.DataFrame(rows)


def test_the_knee_is_the_last_rate_within_twice_the_unloaded_p99_and_keeping_up():
    k = analysis.knees(load_frame()).set_index("config")
    # 900 us at 2,000/s: more than twice the unloaded 401 us, but within its 1 ms floor; 5,000/s saturates
    assert (k.loc["always/c1", "knee_rate"], k.loc["always/c1", "next_rate"]) == (2000, 5000)
    strict = analysis.knees(load_frame(), floor_us=0).set_index("config")
    assert (strict.loc["always/c1", "knee_rate"], strict.loc["always/c1", "next_rate"]) == (1000, 2000)
    assert k.loc["batch_10ms/c1", "knee_rate"] == 5000 and k.loc["batch_10ms/c1", "knee_low"] == 5000
    assert k.loc["always/c1", "unloaded_p99_us"] == pytest.approx(402, rel=0.01)


def test_advice_picks_the_fastest_strategy_within_both_budgets_and_says_why_not_the_others():
    df = load_frame()
    adv = analysis.advise(df, 1500, loss_budget_ms=0).set_index("config")
    assert adv.loc["always/c1", "measured_at"] == 2000 and adv.loc["always/c1", "verdict"] == "meets both"
    assert adv.loc["always/c1", "advised"] and adv.loc["batch_10ms/c1", "verdict"] == "loses too much"
    assert adv.loc["always/c1", "knee_per_s"] == 2000 and adv.loc["always/c1", "writers"] == 1
    adv = analysis.advise(df, 2000, loss_budget_ms=20).set_index("config")
    # the loss column is the largest exposure measured at that rate (10.3 ms, round 3's), not an average
    assert adv.loc["batch_10ms/c1", "advised"] and adv.loc["batch_10ms/c1", "window_ms"] == pytest.approx(10.3)
    assert adv.loc["batch_10ms/c1", "entries_at_risk"] == pytest.approx(20.6) and adv.loc["batch_10ms/c1", "window_trials"] == 3
    assert analysis.advise(df, 2000, loss_budget_ms=10.2).set_index("config").loc["batch_10ms/c1", "verdict"] == "loses too much"
    adv = analysis.advise(df, 3000, loss_budget_ms=0, p99_budget_ms=1)
    assert adv.set_index("config").loc["always/c1", "verdict"] == "cannot keep up" and not adv["advised"].any()
    assert "no strategy measured both keeps up at 3,000/s" in analysis.advice_lines(adv, 3000, 0)[0]
    assert "not measured" in analysis.advise(df, 9000, 0)["verdict"].iloc[0]


def test_a_rate_above_the_knee_is_never_advised_even_where_no_trial_saturated():
    # always's p99 at 2,000/s is far past twice the unloaded one, but no trial there left entries queued:
    # the knee is 1,000/s, so 1,500/s (measured at 2,000/s) cannot be advised
    df = load_frame()
    df.loc[(df["kind"] == "always") & (df["rate"] == 2000), "latency_us_p99"] = 9000.0
    adv = analysis.advise(df, 1500, loss_budget_ms=0).set_index("config")
    assert adv.loc["always/c1", "knee_per_s"] == 1000 and adv.loc["always/c1", "verdict"] == "cannot keep up"
    assert not adv["advised"].any()
    assert analysis.keeps_up(1000, 1000) and not analysis.keeps_up(1000, 1001) and not analysis.keeps_up(None, 1)


def test_an_advice_whose_p99_interval_overlaps_another_candidates_is_not_resolved():
    df = load_frame()
    df["exposure_ms_max"] = df["exposure_ms_max"].where(df["kind"] != "batch", 1.0)   # batch within a 5 ms budget
    df.loc[df["kind"] == "batch", "latency_us_p99"] = df.loc[df["kind"] == "batch", "round"] * 300.0 + 200
    adv = analysis.advise(df, 1000, loss_budget_ms=5)
    best = adv[adv["advised"]].iloc[0]
    assert not best["resolved"] and best["tied"]
    assert "not resolved" in analysis.advice_lines(adv, 1000, 5)[0]


def power_cuts_of(strategy: str, cuts: int, losing: int = 0) -> pd.DataFrame:
    """Power cuts of one strategy on lab:powercut, the first ``losing`` of them losing 3 entries 12 ms old."""
    return pd.DataFrame([{"kind": "power", "strategy": strategy, "cut": i, "acked": 100, "error": "",
                          "lost_acked": 3 if i < losing else 0, "oldest_lost_age_ms": 12.0 if i < losing else None,
                          "target": "lab:powercut"} for i in range(cuts)])


def test_a_durable_strategys_zero_loss_cites_its_power_cuts_and_a_losing_cut_replaces_the_zero():
    df = load_frame()
    adv = analysis.advise(df, 1500, loss_budget_ms=0, cuts=power_cuts_of("always", 100)).set_index("config")
    row = adv.loc["always/c1"]
    assert row["power_cuts"] == 100 and row["power_cuts_losing"] == 0 and row["advised"]
    assert row["power_cuts_losing_upper95"] == pytest.approx(0.0295, abs=1e-3)
    line = analysis.advice_lines(adv.reset_index(), 1500, 0)[0]
    assert "100 power cuts of `always` on lab:powercut lost none (95% upper bound: 3.0% of cuts)" in line
    # without crash data the zero is by definition, and the sentence says no cut shows it
    plain = analysis.advise(df, 1500, loss_budget_ms=0)
    assert "no power cut of `always`" in analysis.advice_lines(plain, 1500, 0)[0]
    # a cut that lost an acknowledged entry of a durable strategy is a window, not a zero: never advised at 0 ms
    lost = analysis.advise(df, 1500, loss_budget_ms=0, cuts=power_cuts_of("always", 50, losing=2)).set_index("config")
    assert lost.loc["always/c1", "window_ms"] == 12.0 and lost.loc["always/c1", "verdict"] == "loses too much"
    assert not lost["advised"].any() and "2 of 50 power cuts" in lost.loc["always/c1", "window_source"]


def test_the_latency_figure_marks_the_knee(df):
    lf = load_frame()
    summ, k = analysis.load_summary(lf), analysis.knees(lf)
    fig, axes = plots.facets(1)
    plots.latency_vs_rate(summ, k, "/t", axes[0])
    assert axes[0].get_xscale() == axes[0].get_yscale() == "log"
    knee_marks = [c for c in axes[0].collections if isinstance(c, matplotlib.collections.PathCollection)]
    assert len(knee_marks) == 2   # a knee per strategy
    matplotlib.pyplot.close("all")


def test_cpu_bound_results_are_said_to_measure_the_loop_not_the_storage(df):
    assert analysis.cpu_bound_text(df, "/t", analysis.TASK[1:]) == ""   # no CPU accounting: nothing claimed
    d = df.copy()
    d["bound"], d["cpu_us_per_entry"] = "storage", 50.0
    pick = d["config"].isin(analysis.TASK[1:])
    d.loc[pick, "bound"], d.loc[pick, "cpu_us_per_entry"] = "cpu", 1.5
    text = analysis.cpu_bound_text(d, "/t", analysis.TASK[1:])
    assert "CPU-bound in all 6 trials" in text and "1.50 µs" in text and "not the storage" in text
    d.loc[d.index[pick][0], "bound"] = "storage"
    assert analysis.cpu_bound_text(d, "/t", analysis.TASK[1:]).endswith("CPU-bound in 5 of 6 trials.")


def peers_frame(label="ext4 on vda, durable", fio=(800_000.0, 900_000.0, 850_000.0), block=144) -> pd.DataFrame:
    rows = []
    for k, v in enumerate(fio):
        for side, ops in (("peer", v), ("ours", v * 0.9)):
            rows.append({"target": "/t", "target_label": label, "pair": "fio-nosync", "round": k, "side": side,
                         "ops_per_sec": ops, "block_bytes": block, "prealloc": "fallocate"})
        rows.append({"target": "/t", "target_label": label, "pair": "fio-fdatasync", "round": k, "side": "peer",
                     "ops_per_sec": 5.0, "block_bytes": block, "prealloc": "fallocate"})
    return pd.DataFrame(rows)


def test_write_ceiling_is_fio_nosync_peer_side_and_ratios_match_by_label_and_size():
    ceiling = analysis.write_ceiling(peers_frame())
    assert list(ceiling.index) == ["ext4 on vda, durable"]
    row = ceiling.iloc[0]
    # the geometric mean of the peer side of fio-nosync only (not ours at 0.9x, not the sync pair at 5)
    assert row["ops_per_sec"] == pytest.approx((800_000 * 900_000 * 850_000) ** (1 / 3))
    assert row["low"] < row["ops_per_sec"] < row["high"] and row["rounds"] == 3
    df = sweep_frame()
    df["record_bytes"] = 144
    r = analysis.ceiling_ratios(df, ceiling, "/t", ["none/w1/append/fdatasync", "batch_10ms/w1/append/fdatasync"])
    none_geo = (20_000 * 22_000 * 18_000) ** (1 / 3)
    assert r["none/w1/append/fdatasync"].estimate == pytest.approx(none_geo / row["ops_per_sec"])
    text = analysis.ceiling_text(df, ceiling, "/t", ["none/w1/append/fdatasync"], "peers-x")
    assert "144-byte" in text and "ceiling" not in text.replace("not a ceiling", "")
    # our own no-sync loop in the same pair, paired by round: 0.9x here; a rate we can exceed is no ceiling
    assert row["ours_ratio"] == pytest.approx(0.9) and "0.90" in text and "not like with like" in text
    faster = analysis.write_ceiling(peers_frame(fio=(800_000.0, 900_000.0, 850_000.0)).assign(
        ops_per_sec=lambda d: d["ops_per_sec"].where(d["side"] != "ours", d["ops_per_sec"] / 0.9 * 1.1))).iloc[0]
    assert faster["ours_ratio"] == pytest.approx(1.1)
    # another record size or another target: no ceiling, and no sentence
    df["record_bytes"] = 200
    assert analysis.ceiling_ratios(df, ceiling, "/t", ["none/w1/append/fdatasync"]) == {}
    assert analysis.ceiling_text(sweep_frame(label="xfs on vdb"), ceiling, "/t", ["none/w1/append/fdatasync"], "p") == ""
    assert analysis.write_ceiling(pd.DataFrame()).empty


def test_throughput_panel_draws_the_ceiling_only_when_given():
    import matplotlib.pyplot as plt
    summ = analysis.summary(sweep_frame(), n_boot=50)
    curves, refs = analysis.interval_curves(summ), analysis.reference_rows(summ)
    fig, ax = plt.subplots()
    plots.throughput_vs_interval(curves, refs, "/t", ax)
    without = len(ax.get_lines())
    ceiling = analysis.write_ceiling(peers_frame())
    plots.throughput_vs_interval(curves, refs, "/t", ax, ceiling.iloc[0])
    labels = [line.get_label() for line in ax.get_lines()]
    assert "C loop, no sync (fio)" in labels and len(ax.get_lines()) > 2 * without
    plt.close(fig)


def _sides(ratios, base=1000.0):
    d = pd.DataFrame({"round": range(len(ratios)), "commits_per_sec": [base * r for r in ratios]})
    p = pd.DataFrame({"round": range(len(ratios)), "commits_per_sec": [base] * len(ratios)})
    return d, p


def test_a_prediction_verdict_is_computed_by_two_one_sided_tests():
    assert analysis.prediction_verdict(*_sides([1.01, 0.99, 1.02, 0.98, 1.0]))["verdict"] == "predicts"
    v = analysis.prediction_verdict(*_sides([0.50, 0.52, 0.49]))["verdict"]
    assert v.startswith("does not predict") and "0.50×" in v
    v = analysis.prediction_verdict(*_sides([0.80, 1.30, 1.00]))["verdict"]     # near 1, but too spread at n = 3
    assert v.startswith("undecided at n = 3") and "rounds would decide" in v


def test_a_disturbed_round_is_flagged():
    from fsyncstudy.analysis.realdb import _disturbed_rounds
    d = pd.DataFrame({"round": [1, 2, 3], "client_cpu_us_per_commit": [300.0, 290.0, 1100.0],
                      "server_cpu_us_per_commit": [None, None, None]})
    assert _disturbed_rounds(d) == [3]
    assert _disturbed_rounds(d.iloc[:2]) == []      # two rounds: no median to be far from


def test_a_busy_writers_larger_window_is_the_loss_column_and_can_rule_batch_out():
    df = load_frame().assign(busy=False, work_us=0.0, clients=1)
    extra = df[(df["kind"] == "batch") & (df["rate"] == 2000)].copy()
    extra = extra.assign(busy=True, work_us=300.0, exposure_ms_max=30.0, config="batch_10ms/c1/w300")
    both = pd.concat([df, extra], ignore_index=True)
    adv = analysis.advise(both, 2000, loss_budget_ms=20).set_index("config")
    # idle, batch's largest window is 10.3 ms; with 300 us of work an entry it reached 30 ms: over a 20 ms budget
    assert adv.loc["batch_10ms/c1", "window_ms"] == pytest.approx(30.0) and adv.loc["batch_10ms/c1", "window_work_us"] == 300
    assert adv.loc["batch_10ms/c1", "verdict"] == "loses too much" and adv.loc["always/c1", "advised"]
    adv = analysis.advise(both, 2000, loss_budget_ms=40)
    best = adv[adv["advised"]].iloc[0]
    assert best["config"] == "batch_10ms/c1"
    line = analysis.advice_lines(adv, 2000, 40)[0]
    assert ("the largest exposure measured at 2,000/s was 30.0 ms, with 300 µs of work an entry in the writer "
            "(10.3 ms with an idle writer), over 6 trials") in line and "not a bound" in line


def test_advice_that_needs_several_writers_says_what_one_writer_gets():
    df = load_frame().assign(clients=1)
    four = df[df["kind"] == "always"].copy()
    # always with 4 clients keeps up everywhere (its p99 stays at 500 us); always with one saturates at 5,000/s
    four = four.assign(clients=4, config="always/c4", config_label="always (4 clients)", latency_us_p99=500.0,
                       saturated=False, unserved=0)
    adv = analysis.advise(pd.concat([df, four], ignore_index=True), 5000, loss_budget_ms=0)
    line = analysis.advice_lines(adv, 5000, 0)[0]
    assert "`always (4 clients)` if your service has at least 4 concurrent writers" in line
    assert "with one writer, none measured meets both budgets: `always` cannot keep up; `batch_10ms` loses too much" in line


def test_page_02_compares_group_commit_with_always_at_the_same_writers_or_says_they_differ(df, summ):
    rel = stats.relative_to(df, n_boot=200).set_index(["target", "config"])
    (claim,) = analysis.interval_claims(df, summ, rel, pd.DataFrame())
    # the frame has group_0ms with 4 writers and always with one only: the sentence says the writers differ
    assert "with 4 writers, `group_0ms (4 writers)`" in claim.text or "with 4 writers, `group_0ms`" in claim.text
    assert "this dataset has no `always` with 4 writers: the writers differ" in claim.text
    # with always at 4 writers beside it, the ratio is against that, paired by round
    four = df[df["config"] == "always/w1/append/fdatasync"].assign(config="always/w4/append/fdatasync", writers=4,
                                                                     ops_per_sec=[150.0, 165.0, 135.0])
    both = pd.concat([df, four], ignore_index=True)
    s2 = analysis.summary(both, n_boot=200)
    rel2 = stats.relative_to(both, n_boot=200).set_index(["target", "config"])
    (claim,) = analysis.interval_claims(both, s2, rel2, pd.DataFrame())
    assert "2.00× (95% CI 2.00–2.00) `always` with 4 writers" in claim.text and "the writers differ" not in claim.text
    assert claim.premises["group against always"].startswith("the same writers")


def test_page_05s_sentences_carry_their_verdicts_and_premises():
    rows = rounds_frame([100, 200, 400], [100, 200, 400], [90, 90, 90], [100, 101, 99]).assign(notes="")
    s = analysis.peers_summary(rows, {"/t": "durable"})
    claims = analysis.peers_claims(s, rows)
    first = claims[0]
    assert first.text.startswith("**ext4**: `fio-fdatasync` 1.00×") and ": meets the 0.95 aim" in first.text
    assert "`pg-fdatasync` 0.90×" in first.text and ": below, by more than 5%" in first.text
    assert first.premises["rounds"].startswith("3,") and "pg_test_fsync pairs" in first.premises
    # a comparison with fio only names no pg_test_fsync premise, and no equivalence-test sentence
    fio_only = rows[rows["peer"] == "fio"]
    only = analysis.peers_claims(analysis.peers_summary(fio_only, {"/t": "durable"}), fio_only)
    assert "pg_test_fsync pairs" not in only[0].premises and not any("equivalence test" in c.text for c in only)


def test_page_05_judges_the_write_path_pairs_against_fio_with_their_median():
    rows = rounds_frame([100, 200, 400], [100, 200, 400], [90, 90, 90], [100, 101, 99]).assign(notes="")
    paths = rows[rows["pair"] == "fio-fdatasync"].assign(pair="fio-dsync", block_bytes=144, prealloc="fallocate")
    short = paths.assign(pair="fio-direct-dsync", block_bytes=4096, prealloc="zero-fill",
                         ops_per_sec=[80.0, 100.0, 81.0, 100.0, 79.0, 100.0])
    rows = pd.concat([rows, paths, short], ignore_index=True)
    s = analysis.peers_summary(rows, {"/t": "durable"}).set_index("pair")
    assert s.loc["fio-dsync", "verdict"] == "meets" and s.loc["fio-direct-dsync", "verdict"] == "short"
    assert s.loc["fio-direct-dsync", "ratio_median"] == pytest.approx(0.80)
    (claim, *_) = analysis.peers_claims(s.reset_index(), rows)
    assert "`fio-direct-dsync` 0.80× (95% CI" in claim.text and "median of rounds 0.80): short of the 0.95 aim" in claim.text
    assert "`fio-dsync` 1.00×" in claim.text and ": meets the 0.95 aim" in claim.text
    assert "zero-fill" in claim.premises["fio-direct-dsync"] and "4096-byte" in claim.premises["fio-direct-dsync"]
    assert "RWF_DSYNC" in claim.premises["fio-dsync"] and "144-byte" in claim.premises["fio-dsync"]


def test_page_06s_knees_are_sentences_with_their_clients_and_rounds():
    claims = analysis.knee_claims(analysis.knees(load_frame().assign(clients=1)), 500)
    always = next(c for c in claims if c.text.startswith("`always`"))
    assert always.text == "`always` on **ext4 on vda** keeps up to 2,000/s, not at 5,000/s."
    assert always.premises["clients"] == 1 and always.premises["rounds"] == 3 and "median round" in always.premises["keeps up"]


def test_a_write_paths_zero_loss_cites_the_cuts_of_that_path_and_names_it():
    df = load_frame()
    df["path"] = ""
    on = df["kind"] == "always"
    df.loc[on, "config"], df.loc[on, "config_label"], df.loc[on, "path"] = "always/c1/rwf_dsync", "always [rwf_dsync]", "rwf_dsync"
    cuts = power_cuts_of("always", 40).assign(path="rwf_dsync")
    line = analysis.advice_lines(analysis.advise(df, 1500, loss_budget_ms=0, cuts=cuts), 1500, 0)[0]
    assert "40 power cuts of `always` with rwf_dsync on lab:powercut lost none" in line
    # cuts of the plain path only are not this path's: the sentence says it has none
    plain_cuts = power_cuts_of("always", 100).assign(path="")
    line = analysis.advice_lines(analysis.advise(df, 1500, loss_budget_ms=0, cuts=plain_cuts), 1500, 0)[0]
    assert "no power cut of `always` with rwf_dsync" in line
