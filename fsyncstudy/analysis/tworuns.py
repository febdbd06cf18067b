"""Two runs side by side (notebooks 01-02 and 07): the C loop's write ceiling from a comparison run
beside a sweep, and run B against run A."""
from __future__ import annotations

import pandas as pd

from .. import intervals
from .sweep import target_rank


def write_ceiling(peers_df: pd.DataFrame) -> pd.DataFrame:
    """A C loop's no-sync write rate per target, from a comparison dataset: fio's no-sync writes
    (``--rw=write --ioengine=sync``, the ``fio-nosync`` pair's peer side), indexed by target label,
    with the geometric mean over rounds and its 95% t interval, the record size, the raw values
    (``values``) to build ratios from, and our ``none`` in the same pair against it (``ours_ratio``,
    ``ours_low``, ``ours_high``: same records, same preallocation, paired by round).  It is a reference
    rate, not a ceiling: our own no-sync loop can exceed it.  Empty when the dataset has no such pair."""
    rows = []
    has = len(peers_df) and {"pair", "side", "target_label"} <= set(peers_df.columns)
    pair = peers_df[peers_df["pair"] == "fio-nosync"] if has else None
    for label, g in pair.groupby("target_label", sort=False) if pair is not None else ():
        peer, ours = g[g["side"] == "peer"], g[g["side"] == "ours"]
        iv = intervals.mean_interval(peer["ops_per_sec"].tolist())
        us = intervals.ratio_interval(ours["ops_per_sec"].tolist(), peer["ops_per_sec"].tolist(),
                                      pairs=(ours["round"].tolist(), peer["round"].tolist()))
        rows.append({"target_label": label, "ops_per_sec": iv.estimate, "low": iv.low, "high": iv.high,
                     "rounds": len(peer), "block_bytes": int(peer["block_bytes"].iloc[0]),
                     "prealloc": str(peer["prealloc"].iloc[0]), "values": peer["ops_per_sec"].tolist(),
                     "ours_ratio": us.estimate, "ours_low": us.low, "ours_high": us.high})
    return pd.DataFrame(rows, columns=["target_label", "ops_per_sec", "low", "high", "rounds", "block_bytes",
                                       "prealloc", "values", "ours_ratio", "ours_low", "ours_high"]).set_index("target_label")


def ceiling_ratios(df: pd.DataFrame, ceiling: pd.DataFrame, target: str, configs: list[str]) -> dict:
    """Each configuration's ops/sec on ``target`` over fio's no-sync rate on the same target
    (matched by target label and record size), as ``intervals.ratio_interval`` of two independent
    samples (the sweep and the comparison are separate runs: nothing pairs them).  {} when the
    ceiling was not measured there or with another record size."""
    g = df[df["target"] == target]
    if g.empty or ceiling.empty:
        return {}
    label = g["target_label"].iloc[0]
    if label not in ceiling.index:
        return {}
    c = ceiling.loc[label]
    out = {}
    for config in configs:
        x = g[g["config"] == config]
        if len(x) and "record_bytes" in x.columns and int(x["record_bytes"].iloc[0]) == int(c["block_bytes"]):
            out[config] = intervals.ratio_interval(x["ops_per_sec"].tolist(), c["values"])
    return out


def pair_targets(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, str]:
    """Which target of run B stands for each target of run A: the same directory, else the same label,
    else, when each run has one target, that one."""
    ta, tb = list(dict.fromkeys(a["target"])), list(dict.fromkeys(b["target"]))
    la = dict(zip(a["target"], a["target_label"]))
    lb = {label: t for t, label in zip(b["target"], b["target_label"])}
    out = {t: t for t in ta if t in tb}
    for t in ta:
        if t not in out and la[t] in lb and lb[la[t]] not in out.values():
            out[t] = lb[la[t]]
    if not out and len(ta) == 1 and len(tb) == 1:
        out[ta[0]] = tb[0]
    return out


def _planned(df: pd.DataFrame):
    """Trials per configuration a run's plan asked for (its ``planned`` column, ``catalog.load_run``), or None."""
    if "planned" not in df.columns or df.empty or pd.isna(df["planned"].iloc[0]):
        return None
    return int(df["planned"].iloc[0])


def n_text(n: int, planned) -> str:
    """A side's trial count, with its plan's when it is short of it: "n = 2 of 5 planned"."""
    return f"n = {n} of {planned} planned" if planned is not None and n < planned else f"n = {n}"


def diff_runs(a: pd.DataFrame, b: pd.DataFrame, metric: str = "ops_per_sec") -> pd.DataFrame:
    """Run B against run A, per target and configuration both hold: each side's mean with its 95% t
    interval and its trial count (``n_a``, with ``planned_a`` when the run says what its plan asked for),
    the ratio B/A of geometric means with Welch's 95% interval (the runs share no rounds), and whether B
    is significantly higher, lower, or neither.  Rows of trials that failed must be left out before
    (``sweep.load`` does)."""
    rows = []
    for ta, tb in pair_targets(a, b).items():
        ga, gb = a[a["target"] == ta], b[b["target"] == tb]
        for config in dict.fromkeys(ga["config"]):
            xa = ga.loc[ga["config"] == config, metric].dropna().tolist()
            xb = gb.loc[gb["config"] == config, metric].dropna().tolist()
            if not xa or not xb:
                continue
            ea, eb = intervals.mean_interval(xa), intervals.mean_interval(xb)
            r = intervals.ratio_interval(xb, xa)
            verdict = ("too few trials for an interval" if not r.has_interval() else
                       "B higher" if r.low > 1 else "B lower" if r.high < 1 else "no significant difference")
            first = ga[ga["config"] == config].iloc[0]
            rows.append({"target_a": ta, "target_b": tb, "target_label": first["target_label"], "config": config,
                         "config_label": first["config_label"], "metric": metric,
                         "n_a": ea.n, "planned_a": _planned(a), "mean_a": ea.estimate, "low_a": ea.low,
                         "high_a": ea.high, "n_b": eb.n, "planned_b": _planned(b), "mean_b": eb.estimate,
                         "low_b": eb.low, "high_b": eb.high,
                         "ratio": r.estimate, "ratio_low": r.low, "ratio_high": r.high, "verdict": verdict,
                         "ci_method": "ratio of geometric means, Welch's 95% t interval of the log difference"})
    return pd.DataFrame(rows)


def diff_summary(diff: pd.DataFrame) -> list[str]:
    """``diff``'s answer first, one sentence per target (in the table's order): how many configurations
    moved up, down, or within noise, and the largest move each way; then how many of all the
    comparisons 95% intervals would call different by chance alone."""
    lines = []
    if diff.empty:
        return ["The two runs share no target and configuration: nothing to compare."]
    diff = diff_sorted(diff)
    for side in ("a", "b"):
        planned = diff.get(f"planned_{side}")
        if planned is None:
            continue
        short = diff[planned.notna() & (diff[f"n_{side}"] < planned.fillna(0))]
        if len(short):
            low = short.loc[(short[f"n_{side}"] / short[f"planned_{side}"]).idxmin()]
            lines.append(f"Run {side.upper()} is short of its plan in {len(short)} of {len(diff)} configurations "
                         f"(as few as {n_text(int(low[f'n_{side}']), int(low[f'planned_{side}']))}): its intervals "
                         "there are wider, and a run that stopped early may not have met every condition the "
                         "others did.")
    for label, g in diff.groupby("target_label", sort=False):
        up, down = g[g["verdict"] == "B higher"], g[g["verdict"] == "B lower"]
        same = len(g) - len(up) - len(down)
        text = f"**{label}**: of {len(g)} configurations, {len(up)} higher in B, {len(down)} lower, {same} within noise"
        moves = []
        if len(up):
            top = up.loc[up["ratio"].idxmax()]
            moves.append(f"largest rise `{top['config_label']}` {top['ratio']:.2f}× "
                         f"(95% CI {top['ratio_low']:.2f}–{top['ratio_high']:.2f})")
        if len(down):
            low = down.loc[down["ratio"].idxmin()]
            moves.append(f"largest fall `{low['config_label']}` {low['ratio']:.2f}× "
                         f"(95% CI {low['ratio_low']:.2f}–{low['ratio_high']:.2f})")
        lines.append(text + ("; " + "; ".join(moves) if moves else ""))
    tested = int(diff["ratio_low"].notna().sum())
    lines.append(f"Each comparison has its own 95% interval: of {tested}, about {0.05 * tested:.0f} would show a "
                 "difference by chance alone if nothing had changed, so read a lone move as a lead, not a finding.")
    return lines


def diff_sorted(diff: pd.DataFrame) -> pd.DataFrame:
    """``diff``'s rows by target (the machine's own disks first, then the lab's filesystems, then its
    emulations), the largest effects first (|log B/A|)."""
    import numpy as np
    if diff.empty:
        return diff
    labels = sorted(dict.fromkeys(diff["target_label"]), key=lambda t: (*target_rank(t), t))
    order = {t: k for k, t in enumerate(labels)}
    return (diff.assign(_t=diff["target_label"].map(order), _e=-np.abs(np.log(diff["ratio"].astype(float))))
            .sort_values(["_t", "_e"]).drop(columns=["_t", "_e"]).reset_index(drop=True))
