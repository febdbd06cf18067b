"""Statistics over repeated trials: intervals, effect sizes, outliers.

Each trial is one independent run (a fresh file, its own timing window), summarised by
the engine into one number per metric (its ops/sec, its p99 ack latency, ...).  The
uncertainty we report is across trials of a configuration:

* ``mean_interval``: for positive metrics, the geometric mean with a 95% t interval on the log
  scale (never a negative bound), else the mean with its t interval;
* ``ratio_interval``: throughput relative to ``always`` on the same target, paired by round when
  the trials carry their round (the geometric mean of per-round ratios, t interval of the log
  ratios), else the ratio of geometric means with Welch's interval;
* a BCa bootstrap interval only from 20 values up: below that it covered 70-87% where it claimed
  95% (``tests/test_coverage.py`` has the simulation for the t intervals);
* outliers by Tukey's fences (below Q1 - 1.5 IQR or above Q3 + 1.5 IQR), counted and
  reported, never dropped.

The interval functions, and ``T_METHOD`` and ``RATIO_METHOD`` that name them in captions, live in
``intervals`` (standard library only) and are re-exported here.
Every table carries ``n`` and ``ci_method`` so a figure never loses where its interval came from.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as st

from .intervals import (RATIO_METHOD, T_METHOD, Interval, mean_interval, quantile_interval,  # noqa: F401
                        ratio_interval, zero_events_upper)

CONFIDENCE = 0.95
N_BOOT = 2000
BCA_METHOD = "95% BCa bootstrap over trials (from 20 trials)"
#: BCa intervals below this many values are not given (their coverage fell to 70-87%).
BCA_MIN_N = 20
#: Columns that describe a configuration, carried into every summary row.
CONFIG_COLUMNS = ["target", "target_label", "target_fstype", "target_durability", "config", "config_label",
                  "strategy", "kind", "interval_ms", "writers", "prealloc", "sync_method", "nominal_loss_window_ms",
                  "write_mode", "bytes_per_sync", "segment_bytes", "recycle"]


def tukey_outliers(values) -> tuple[int, int]:
    """How many values lie below Q1 - 1.5 IQR and above Q3 + 1.5 IQR."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 4:
        return 0, 0
    q1, q3 = np.percentile(x, [25, 75])
    iqr = q3 - q1
    return int((x < q1 - 1.5 * iqr).sum()), int((x > q3 + 1.5 * iqr).sum())


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return (np.nan, np.nan)
    m, se = x.mean(), x.std(ddof=1) / np.sqrt(n)
    if se == 0:
        return (m, m)
    return tuple(float(v) for v in st.t.interval(confidence, df=n - 1, loc=m, scale=se))


def bca_interval(values, seed: int = 0, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                 statistic=np.mean) -> tuple[float, float]:
    """BCa bootstrap interval of a statistic; (v, v) when every value is equal, NaN when n < 2."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return (np.nan, np.nan)
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))  # nothing varies, nothing to resample
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = st.bootstrap((x,), statistic, n_resamples=n_boot, confidence_level=confidence, method="BCa",
                           rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return (float(ci.low), float(ci.high))


def describe_values(values, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """n; ``mean`` (= ``estimate``), ``t_low``, ``t_high``: ``mean_interval``, so for positive values the
    geometric mean and its t interval on the log scale, else the mean and its t interval;
    ``arith_mean``, sd, median; BCa bounds from ``BCA_MIN_N`` values up (NaN below); Tukey outlier
    counts."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    lo_out, hi_out = tukey_outliers(x)
    iv = mean_interval(x.tolist())
    b_lo, b_hi = bca_interval(x, seed=seed, n_boot=n_boot) if n >= BCA_MIN_N else (np.nan, np.nan)
    return {"n": n, "mean": iv.estimate, "arith_mean": x.mean() if n else np.nan, "sd": x.std(ddof=1) if n > 1 else np.nan,
            "median": float(np.median(x)) if n else np.nan, "estimate": iv.estimate, "t_low": iv.low,
            "t_high": iv.high, "interval_method": iv.method, "bca_low": b_lo, "bca_high": b_hi,
            "outliers_low": lo_out, "outliers_high": hi_out, "outliers": lo_out + hi_out}


def summarize(df: pd.DataFrame, metrics=("ops_per_sec", "ack_latency_us_p99"), seed: int = 0,
              n_boot: int = N_BOOT) -> pd.DataFrame:
    """One row per (target, configuration, metric) with the statistics of ``describe_values``."""
    rows = []
    keys = [c for c in CONFIG_COLUMNS if c in df.columns]
    for _, g in df.groupby(["target", "config"], sort=False):
        first = g.iloc[0]
        for m in metrics:
            d = describe_values(g[m].to_numpy(), seed=seed, n_boot=n_boot)
            if d["n"] == 0:
                continue
            method = d["interval_method"] + (f"; {BCA_METHOD}" if d["n"] >= BCA_MIN_N else "")
            rows.append({**{k: first[k] for k in keys}, "metric": m, **d, "ci_method": method})
    out = pd.DataFrame(rows)
    return out.sort_values(["target", "kind", "interval_ms", "writers", "prealloc", "metric"],
                           na_position="first").reset_index(drop=True) if len(out) else out


def wide(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of one metric, one row per (target, configuration)."""
    return summary[summary["metric"] == metric].reset_index(drop=True)


def relative_to(df: pd.DataFrame, baseline: str = "always/w1/append/fdatasync", metric: str = "ops_per_sec",
                seed: int = 0, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Each configuration's ``metric`` over the baseline configuration's on the same target
    (``ratio_interval``: paired by round when the trials have a ``round`` column)."""
    rows = []
    keys = [c for c in CONFIG_COLUMNS if c in df.columns]
    for _, tg in df.groupby("target", sort=False):
        bt = tg.loc[tg["config"] == baseline]
        if len(bt) == 0:
            continue
        for _, g in tg.groupby("config", sort=False):
            iv = paired_by_round(g, bt, metric)
            rows.append({**{k: g.iloc[0][k] for k in keys}, "metric": metric, "baseline": baseline,
                         "ratio": iv.estimate, "ratio_low": iv.low, "ratio_high": iv.high, "n": len(g),
                         "n_baseline": len(bt), "n_pairs": iv.n, "ci_method": iv.method})
    return pd.DataFrame(rows)


def paired_by_round(num: pd.DataFrame, den: pd.DataFrame, metric: str = "ops_per_sec") -> Interval:
    """``ratio_interval`` of two groups of trials, paired by their ``round`` when both have one."""
    x, y = num[metric].to_numpy(dtype=float), den[metric].to_numpy(dtype=float)
    if "round" in num.columns and "round" in den.columns:
        return ratio_interval(x, y, pairs=(num["round"].tolist(), den["round"].tolist()))
    return ratio_interval(x, y)


def pareto_front(points: pd.DataFrame, x: str = "ops_per_sec", y: str = "loss_window_ms") -> pd.Series:
    """True for points no other point beats: at least as fast and at most as exposed, better in one."""
    xs, ys = points[x].to_numpy(dtype=float), points[y].to_numpy(dtype=float)
    keep = []
    for i in range(len(points)):
        dominated = ((xs >= xs[i]) & (ys <= ys[i]) & ((xs > xs[i]) | (ys < ys[i]))).any()
        keep.append(not dominated)
    return pd.Series(keep, index=points.index)


def pareto_front_uncertain(points: pd.DataFrame, x: str = "ops_per_sec", y: str = "loss_window_ms",
                           x_low: str = "ops_low", x_high: str = "ops_high", y_low: str = "window_low",
                           y_high: str = "window_high") -> pd.Series:
    """True for points that no other point beats with confidence: another beats a point only if its
    x interval lies wholly above the point's (faster beyond doubt) and its y is no larger even at the
    ends of the intervals (its upper end at or below the point's lower end; a missing interval is the
    estimate), or the same the other way round (exposed less beyond doubt, no slower).  Where the
    intervals overlap, both stay: frontier membership that rests on overlapping intervals is not
    decided by the estimates alone."""
    xl = points[x_low].fillna(points[x]).to_numpy(dtype=float)
    xh = points[x_high].fillna(points[x]).to_numpy(dtype=float)
    yl = points[y_low].fillna(points[y]).to_numpy(dtype=float)
    yh = points[y_high].fillna(points[y]).to_numpy(dtype=float)
    keep = []
    for i in range(len(points)):
        faster = (xl > xh[i]) & (yh <= yl[i])
        safer = (yh < yl[i]) & (xl >= xh[i])
        keep.append(not (faster | safer).any())
    return pd.Series(keep, index=points.index)


def variance_components(df: pd.DataFrame, metric: str = "ops_per_sec", block: str = "round",
                        unit: str = "config") -> dict:
    """How much of the spread of log ``metric`` comes from the block (a round: one process, one stretch
    of time) and how much from the trial within it, from a two-way additive model without replication
    (every ``unit`` measured once per ``block``): log y = unit effect + block effect + residual.

    Returns the block and residual standard deviations on the log scale (0.01 = 1%), the block's share
    of the variance of one trial, the F test of "no block effect" with its p-value, and the numbers of
    units and blocks.  Only units measured in every block take part.
    """
    d = df[[unit, block, metric]].dropna()
    d = d[d[metric] > 0]
    blocks = sorted(d[block].unique())
    counts = d.groupby(unit)[block].nunique()
    d = d[d[unit].isin(counts[counts == len(blocks)].index)]
    if d.empty or len(blocks) < 2:
        return {"sd_block": np.nan, "sd_trial": np.nan, "block_share": np.nan, "F": np.nan, "p": np.nan,
                "units": 0, "blocks": len(blocks)}
    y = np.log(d.pivot_table(index=unit, columns=block, values=metric, aggfunc="mean").to_numpy(float))
    u, b = y.shape
    grand = y.mean()
    ss_block = u * ((y.mean(axis=0) - grand) ** 2).sum()
    resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + grand
    ss_resid = (resid ** 2).sum()
    df_b, df_r = b - 1, (u - 1) * (b - 1)
    if df_r == 0:
        return {"sd_block": np.nan, "sd_trial": np.nan, "block_share": np.nan, "F": np.nan, "p": np.nan,
                "units": u, "blocks": b}
    ms_b, ms_r = ss_block / df_b, ss_resid / df_r
    var_block = max(0.0, (ms_b - ms_r) / u)
    F = ms_b / ms_r if ms_r > 0 else np.inf
    return {"sd_block": float(np.sqrt(var_block)), "sd_trial": float(np.sqrt(ms_r)),
            "block_share": float(var_block / (var_block + ms_r)) if var_block + ms_r > 0 else 0.0,
            "F": float(F), "p": float(st.f.sf(F, df_b, df_r)), "units": u, "blocks": b}


#: How the crash table's quantiles over cuts get their intervals (``quantile_interval``).
QUANTILE_METHOD = ("95% distribution-free intervals from order statistics, over cuts, where the number of "
                   "cuts allows one; none for the max")
