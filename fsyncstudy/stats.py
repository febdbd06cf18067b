"""Statistics over repeated trials: intervals, effect sizes, outliers.

Each trial is one independent run (a fresh file, its own timing window), summarised by
the engine into one number per metric (its ops/sec, its p99 ack latency, ...).  The
uncertainty we report is across trials of a configuration:

* a 95% Student t-interval for the mean (assumes roughly normal per-trial values);
* a 95% BCa bootstrap interval for the mean (``scipy.stats.bootstrap``, fixed seed), which
  does not assume normality but is itself rough at small n;
* throughput relative to ``always`` on the same target as a ratio of means, with a 95%
  bootstrap interval that resamples both configurations' trials independently;
* outliers by Tukey's fences (below Q1 - 1.5 IQR or above Q3 + 1.5 IQR), counted and
  reported, never dropped.

Every table carries ``n`` and ``ci_method`` so a figure never loses where its interval came from.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as st

CONFIDENCE = 0.95
N_BOOT = 2000
T_METHOD = "95% Student t-interval over trials"
BCA_METHOD = "95% BCa bootstrap over trials"
RATIO_METHOD = "ratio of means, 95% bootstrap over trials (BCa, both sides resampled)"
#: Columns that describe a configuration, carried into every summary row.
CONFIG_COLUMNS = ["target", "target_label", "target_fstype", "target_durability", "config", "config_label",
                  "strategy", "kind", "interval_ms", "writers", "prealloc", "sync_method", "nominal_loss_window_ms"]


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
    """n, mean, sd, median, t and BCa 95% intervals of the mean, Tukey outlier counts."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    lo_out, hi_out = tukey_outliers(x)
    t_lo, t_hi = t_interval(x)
    b_lo, b_hi = bca_interval(x, seed=seed, n_boot=n_boot)
    return {"n": n, "mean": x.mean() if n else np.nan, "sd": x.std(ddof=1) if n > 1 else np.nan,
            "median": float(np.median(x)) if n else np.nan, "t_low": t_lo, "t_high": t_hi,
            "bca_low": b_lo, "bca_high": b_hi, "outliers_low": lo_out, "outliers_high": hi_out,
            "outliers": lo_out + hi_out}


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
            rows.append({**{k: first[k] for k in keys}, "metric": m, **d, "ci_method": f"{T_METHOD}; {BCA_METHOD}"})
    out = pd.DataFrame(rows)
    return out.sort_values(["target", "kind", "interval_ms", "writers", "prealloc", "metric"],
                           na_position="first").reset_index(drop=True) if len(out) else out


def wide(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of one metric, one row per (target, configuration)."""
    return summary[summary["metric"] == metric].reset_index(drop=True)


def ratio_of_means_ci(x, y, seed: int = 0, n_boot: int = N_BOOT, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(x) / mean(y) with a bootstrap interval resampling x and y independently."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    est = x.mean() / y.mean()
    if len(x) < 2 or len(y) < 2:
        return est, np.nan, np.nan
    if np.all(x == x[0]) and np.all(y == y[0]):
        return est, est, est

    def ratio(a, b, axis=-1):
        return a.mean(axis=axis) / b.mean(axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = st.bootstrap((x, y), ratio, vectorized=True, paired=False, n_resamples=n_boot,
                           confidence_level=confidence, method="BCa", rng=np.random.default_rng(seed))
    return est, float(res.confidence_interval.low), float(res.confidence_interval.high)


def relative_to(df: pd.DataFrame, baseline: str = "always/w1/append/fdatasync", metric: str = "ops_per_sec",
                seed: int = 0, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Each configuration's mean ``metric`` over the baseline configuration's on the same target."""
    rows = []
    keys = [c for c in CONFIG_COLUMNS if c in df.columns]
    for _, tg in df.groupby("target", sort=False):
        base = tg.loc[tg["config"] == baseline, metric].to_numpy(dtype=float)
        if len(base) == 0:
            continue
        for _, g in tg.groupby("config", sort=False):
            est, lo, hi = ratio_of_means_ci(g[metric].to_numpy(dtype=float), base, seed=seed, n_boot=n_boot)
            rows.append({**{k: g.iloc[0][k] for k in keys}, "metric": metric, "baseline": baseline, "ratio": est,
                         "ratio_low": lo, "ratio_high": hi, "n": len(g), "n_baseline": len(base),
                         "ci_method": RATIO_METHOD})
    return pd.DataFrame(rows)


def pareto_front(points: pd.DataFrame, x: str = "ops_per_sec", y: str = "loss_window_ms") -> pd.Series:
    """True for points no other point beats: at least as fast and at most as exposed, better in one."""
    xs, ys = points[x].to_numpy(dtype=float), points[y].to_numpy(dtype=float)
    keep = []
    for i in range(len(points)):
        dominated = ((xs >= xs[i]) & (ys <= ys[i]) & ((xs > xs[i]) | (ys < ys[i]))).any()
        keep.append(not dominated)
    return pd.Series(keep, index=points.index)


QUANTILE_METHOD = "95% percentile bootstrap over cuts"


def quantile_ci(values, q: float, seed: int = 0, n_boot: int = N_BOOT,
                confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """A quantile (q in 0..100; 100 = the maximum) with a percentile-bootstrap interval.

    BCa is not used here: quantiles of data with ties (many cuts lose nothing, window 0)
    make its acceleration estimate degenerate.  For the maximum the bootstrap interval's
    upper end is the sample maximum itself: the true worst case may be worse, and no
    resampling can show it.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (np.nan, np.nan, np.nan)
    est = float(np.percentile(x, q))
    if len(x) < 2 or np.all(x == x[0]):
        return (est, est, est)
    rng = np.random.default_rng(seed)
    boot = np.percentile(rng.choice(x, size=(n_boot, len(x)), replace=True), q, axis=1)
    a = (1 - confidence) / 2
    return est, float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))
