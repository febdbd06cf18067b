"""A fleet (notebook 09): hosts side by side per target role and configuration, the outlier host,
and the host as a variance level."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats
from .load import geomean


FLEET_METHOD = "geometric mean over a host's trials, 95% t interval of the logs"


def fleet_roles(df: pd.DataFrame, meta: dict) -> pd.Series:
    """Each trial's target as a role that hosts share, to set them side by side: ``tmpfs`` for a volatile
    target, else ``durable 1``, ``durable 2``, ... in the order of that host's targets in the plan."""
    plan = meta["plan"].get("fleet") or {}
    volatile = df.groupby("target")["target_durability"].first().eq("volatile")
    role = {}
    for host, dirs in plan.items():
        k = 0
        for d in dirs:
            key = f"{host}:{d}"
            if volatile.get(key, False):
                role[key] = "tmpfs"
            else:
                k += 1
                role[key] = f"durable {k}"
    return df["target"].map(role).fillna(df["target_label"])


def fleet_hosts(meta: dict) -> pd.DataFrame:
    """One row per host of a fleet dataset: its name, machine, kernel, CPU and versions (meta.json)."""
    rows = []
    envs = meta["notes"].get("hosts", {})
    for host, f in sorted(meta["notes"].get("fleet", {}).items()):
        env = envs.get(host, {})
        rows.append({"host": host, "hostname": f.get("hostname"), "kernel": f.get("kernel"),
                     "cpu": env.get("cpu"), "cores": env.get("cores"), "fsyncstudy": f.get("fsyncstudy"),
                     "python": f.get("python"), "targets": len(meta["plan"]["fleet"].get(host, []))})
    return pd.DataFrame(rows, columns=["host", "hostname", "kernel", "cpu", "cores", "fsyncstudy", "python",
                                       "targets"])


def fleet_cells(df: pd.DataFrame, meta: dict, metric: str = "ops_per_sec") -> pd.DataFrame:
    """Per target role, configuration and host: trials, geometric mean of ``metric`` and its 95% t
    interval (FLEET_METHOD).  Failed trials are left out."""
    d = df[df["status"] == "ok"].assign(role=lambda x: fleet_roles(x, meta))
    rows = []
    for (role, config, host), g in d.groupby(["role", "config_label", "host"]):
        e = geomean(g[metric])
        rows.append({"role": role, "config_label": config, "host": host, "n": e.n, "mean": e.estimate,
                     "low": e.low, "high": e.high, "target_label": g["target_label"].iloc[0]})
    return pd.DataFrame(rows, columns=["role", "config_label", "host", "n", "mean", "low", "high", "target_label"])


def fleet_spread(cells: pd.DataFrame) -> pd.DataFrame:
    """Per target role and configuration, across hosts: the fastest and slowest host, their ratio,
    whether their intervals are apart, and the outlier: the host farthest (in log) from the median
    of the others (only with 3 hosts or more; with 2 there is no "other" majority)."""
    rows = []
    for (role, config), g in cells.dropna(subset=["mean"]).groupby(["role", "config_label"]):
        g = g.set_index("host")
        fast, slow = g["mean"].idxmax(), g["mean"].idxmin()
        apart = bool(g.loc[fast, "low"] > g.loc[slow, "high"])   # False where either bound is missing (NaN)
        outlier, dev = None, np.nan
        if len(g) >= 3:
            logs = np.log(g["mean"].astype(float))
            devs = {h: abs(logs[h] - logs.drop(h).median()) for h in g.index}
            outlier = max(devs, key=devs.get)
            dev = float(np.exp(devs[outlier]))
        rows.append({"role": role, "config_label": config, "hosts": len(g), "fastest": fast, "slowest": slow,
                     "ratio": float(g.loc[fast, "mean"] / g.loc[slow, "mean"]), "apart": apart,
                     "outlier": outlier, "outlier_factor": dev})
    return pd.DataFrame(rows, columns=["role", "config_label", "hosts", "fastest", "slowest", "ratio", "apart",
                                       "outlier", "outlier_factor"])


def fleet_outlier(spread: pd.DataFrame) -> dict:
    """Which host stands out, and how often: with 3 hosts or more the host most often the outlier;
    with 2, the host most often slowest with the intervals apart.  {} when no host stands out."""
    if spread.empty:
        return {}
    if (spread["hosts"] >= 3).any():
        counts = spread["outlier"].dropna().value_counts()
        how = "the outlier"
    else:
        counts = spread.loc[spread["apart"], "slowest"].value_counts()
        how = "slower, its interval apart from the other host's"
    if counts.empty:
        return {}
    return {"host": counts.index[0], "cells": int(counts.iloc[0]), "of": len(spread), "how": how}


def fleet_variance(df: pd.DataFrame, meta: dict, metric: str = "ops_per_sec") -> dict:
    """Host as a variance level: how much of the spread of log ``metric`` between (role, configuration)
    cells measured on every host comes from the host (``stats.variance_components`` with the host as
    the block, each host's mean over its trials per cell)."""
    d = df[df["status"] == "ok"].assign(role=lambda x: fleet_roles(x, meta))
    d = d.assign(cell=d["role"] + " / " + d["config_label"])
    return stats.variance_components(d, metric=metric, block="host", unit="cell")
