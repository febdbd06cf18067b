"""The answer at a glance (the report's index, and what ``report`` prints): per durable target, what
``always`` sustains, the fastest choice that loses nothing acknowledged, and ``batch_10ms`` against it."""
from __future__ import annotations

import pandas as pd

from .. import intervals
from ..strategies import KINDS
from .sweep import TASK, display_label


def _paired_by_round(df: pd.DataFrame, target: str, num: str, den: str, metric: str = "ops_per_sec"):
    """num / den on one target, paired by round (both ran in every round, in shuffled order)."""
    g = df[df["target"] == target].pivot_table(index="round", columns="config", values=metric, aggfunc="mean")
    if num not in g or den not in g:
        return intervals.Interval(intervals.NAN, intervals.NAN, intervals.NAN, "a side was not measured here", 0)
    if num == den:   # the best is the baseline itself (no group configuration beat it)
        n = int(g[num].notna().sum())
        return intervals.Interval(1.0, 1.0, 1.0, "the baseline itself", n)
    g = g[[num, den]].dropna()
    return intervals.paired_ratio_ci(g[num].tolist(), g[den].tolist())


def headline(df: pd.DataFrame) -> list[dict]:
    """Per target that can be durable: what ``always`` sustains, the fastest configuration that loses
    nothing acknowledged (always or group commit), and ``batch_10ms`` against ``always`` with how long
    it left an acknowledged entry exposed; each with its 95% interval (means: t over trials; ratios:
    paired by round, t of the log ratios)."""
    out = []
    durable = df[df["target_durability"] != "volatile"]
    # the machine's own disks first, then the lab's filesystems, then its emulations
    order = sorted(dict.fromkeys(durable["target"]),
                   key=lambda t: (durable.loc[durable["target"] == t, "target_label"].iloc[0].startswith("lab:"),
                                  "EMULATED" in durable.loc[durable["target"] == t, "target_label"].iloc[0]))
    for target in order:
        g = durable[durable["target"] == target]
        always = g.loc[g["config"] == TASK[0], "ops_per_sec"]
        if always.empty:
            continue
        zero = g[g["kind"].isin([k for k, row in KINDS.items() if row.acks_durable]) & (g["prealloc"] == "append")]
        best = zero.groupby("config")["ops_per_sec"].mean().idxmax()
        b = g.loc[g["config"] == TASK[1]]
        out.append({
            "target": target, "target_label": display_label(g["target_label"].iloc[0]),
            "durability": g["target_durability"].iloc[0], "n": len(always),
            "always": intervals.mean_interval(always.tolist()),
            "best_zero_loss": best, "best_zero_loss_label": zero.loc[zero["config"] == best, "config_label"].iloc[0],
            "best_zero_loss_ops": intervals.mean_interval(zero.loc[zero["config"] == best, "ops_per_sec"].tolist()),
            "best_zero_loss_ratio": _paired_by_round(df, target, best, TASK[0]),
            "batch10_ratio": _paired_by_round(df, target, TASK[1], TASK[0]),
            "batch10_exposure_ms": intervals.mean_interval(b["exposure_ms_max"].tolist()),
            "batch10_exposure_max_ms": float(b["exposure_ms_max"].max()) if len(b) else None,
        })
    return out
