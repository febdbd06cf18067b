"""The study's figures.  Intervals are computed in ``fsyncstudy.stats`` and drawn here with
matplotlib (seaborn cannot draw externally computed intervals); seaborn sets the style.

Targets are shown side by side: one panel per target, titled with its label, one legend
per figure.  Every figure's caption line (``caption``) states n and the CI method.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from . import stats

sns.set_theme(style="whitegrid", context="notebook")
PALETTE = sns.color_palette("colorblind")


def caption(n_values, method: str = stats.T_METHOD) -> str:
    n = sorted({int(v) for v in n_values})
    ns = f"n = {n[0]}" if len(n) == 1 else f"n = {n[0]}–{n[-1]}"
    return f"Error bars / bands: {method}; {ns} trials per point (warm-up round excluded)."


def targets_of(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(target, label) pairs in the order they appear."""
    return list(dict.fromkeys(zip(frame["target"], frame["target_label"])))


def facets(n: int, ncols: int = 3, panel=(4.6, 3.4)):
    """A figure with one panel per target; the flat list of the panels used."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols + 2.2, panel[1] * nrows + 0.6), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def finish(fig, axes, title: str, handles=None) -> None:
    """One legend for the figure (right of the panels) and the finding as its title."""
    if handles is None:
        handles, labels = axes[0].get_legend_handles_labels()
    else:
        labels = [h.get_label() for h in handles]
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize="small", frameon=False)
    fig.suptitle(title, fontsize="large", x=0.02, ha="left")
    fig.tight_layout()


def _yerr(frame: pd.DataFrame, mean="mean", low="t_low", high="t_high") -> np.ndarray:
    return np.vstack([(frame[mean] - frame[low]).clip(lower=0), (frame[high] - frame[mean]).clip(lower=0)])


def strategies_by_target(ops: pd.DataFrame, configs: list[str], title: str):
    """Mean ops/sec with t-interval error bars, one group of bars per target (log scale)."""
    targets = targets_of(ops)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.5 * len(targets) + 3), 4.6))
    width = 0.8 / len(configs)
    for k, config in enumerate(configs):
        sub = ops[ops["config"] == config].set_index("target").reindex([t for t, _ in targets])
        xs = np.arange(len(targets)) + (k - (len(configs) - 1) / 2) * width
        ax.bar(xs, sub["mean"], width, yerr=_yerr(sub), capsize=3, color=PALETTE[k],
               label=sub["strategy"].dropna().iloc[0] if sub["strategy"].notna().any() else config)
    ax.set_xticks(np.arange(len(targets)), [label for _, label in targets], rotation=25, ha="right",
                  fontsize="small")
    ax.set_yscale("log")
    ax.set_ylabel("throughput (ops/sec, log scale)")
    ax.set_title(title, loc="left")
    ax.legend(title="strategy", loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    fig.tight_layout()
    return fig


def throughput_vs_interval(curves: pd.DataFrame, refs: pd.DataFrame, target: str, ax, ceiling=None):
    """One panel: ops/sec against batch/group interval with CI bands; always and none as reference bands;
    ``ceiling`` (a row of ``analysis.write_ceiling``, or None): a C loop's no-sync write rate on the same
    target, drawn as a dotted line with its band."""
    c = curves[curves["target"] == target]
    families = sorted(curves["family"].unique())
    for family, g in c.groupby("family", sort=True):
        k = families.index(family)
        g = g.sort_values("interval_ms")
        ax.plot(g["interval_ms"], g["mean"], marker="o", ms=3, color=PALETTE[k], label=family)
        ax.fill_between(g["interval_ms"], g["t_low"], g["t_high"], color=PALETTE[k], alpha=0.25, lw=0)
    for _, row in refs[refs["target"] == target].iterrows():
        color = PALETTE[6] if row["strategy"] == "always" else PALETTE[7]
        ax.axhline(row["mean"], color=color, ls="--", lw=1, label=f"{row['strategy']} (reference)")
        ax.axhspan(row["t_low"], row["t_high"], color=color, alpha=0.15, lw=0)
    if ceiling is not None:
        ax.axhline(ceiling["ops_per_sec"], color="black", ls=":", lw=1.2, label="C loop, no sync (fio)")
        if np.isfinite(ceiling["low"]):
            ax.axhspan(ceiling["low"], ceiling["high"], color="black", alpha=0.08, lw=0)
    ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("sync interval N (ms)")
    ax.set_ylabel("ops/sec (log)")
    ax.set_title(c["target_label"].iloc[0] if len(c) else target, fontsize="small")
    return ax


def exposure_vs_interval(exp_max: pd.DataFrame, exp_p99: pd.DataFrame, target: str, ax):
    """One panel: measured exposure (worst and p99 per trial, mean over trials with CI) against nominal N."""
    for k, (name, frame) in enumerate((("worst entry per trial", exp_max), ("p99 entry per trial", exp_p99))):
        g = frame[(frame["target"] == target) & (frame["kind"] == "batch")].sort_values("interval_ms")
        ax.errorbar(g["interval_ms"], g["mean"], yerr=_yerr(g), marker="o", ms=3, capsize=2, color=PALETTE[k],
                    label=f"measured exposure, {name}")
    hi = float(exp_max["interval_ms"].max() or 100)
    ax.plot([0, hi], [0, hi], color="grey", ls=":", label="nominal window = N")
    ax.set_xlabel("batch interval N (ms)")
    ax.set_ylabel("exposure (ms)")
    sub = exp_max[exp_max["target"] == target]
    ax.set_title(sub["target_label"].iloc[0] if len(sub) else target, fontsize="small")
    return ax


KIND_COLORS = {"always": 0, "batch": 1, "group": 2, "none": 3}


def durability_vs_throughput(points: pd.DataFrame, target: str, ax):
    """One panel: loss window (measured, and nominal) against ops/sec, one writer's Pareto frontier, and
    the configurations with several writers drawn hollow beside it.

    The frontier's points carry their intervals (x: ops/sec, y: the window); the others are drawn
    small and faint without error bars, so that 20 batch intervals do not hide the frontier."""
    p = points[points["target"] == target]
    if "writers" in p:
        # the frontier is one writer's; several writers (always and group commit sharing one log) are drawn
        # hollow beside it, not joined to it: they are not one writer's option
        many = p[(p["writers"] > 1) & np.isfinite(p["loss_window_ms"])]
        for kind, g in many.groupby("kind"):
            ax.scatter(g["ops_per_sec"], g["loss_window_ms"], s=28, facecolors="none",
                       edgecolors=PALETTE[KIND_COLORS.get(kind, 4)], lw=1)
        p = p[p["writers"] == 1]
    for kind, g in p.groupby("kind"):
        color = PALETTE[KIND_COLORS.get(kind, 4)]
        meas = g[g["window_source"] == "measured exposure"]
        front, rest = meas[meas["pareto"]], meas[~meas["pareto"]]
        if len(rest):
            ax.scatter(rest["ops_per_sec"], rest["loss_window_ms"], s=10, color=color, alpha=0.35, lw=0)
        if len(front):
            filled = front.fillna({"window_low": front["loss_window_ms"], "window_high": front["loss_window_ms"]})
            ax.errorbar(front["ops_per_sec"], front["loss_window_ms"],
                        xerr=_yerr(front, "ops_per_sec", "ops_low", "ops_high"),
                        yerr=_yerr(filled, "loss_window_ms", "window_low", "window_high"),
                        fmt="o", ms=4, capsize=2, color=color)
        ax.scatter(g["ops_per_sec"], g["nominal_window_ms"], marker="_", s=60, color=color, alpha=0.5)
        if "crash_window_ms" in g:
            cw = g.dropna(subset=["crash_window_ms"])
            ax.scatter(cw["ops_per_sec"], cw["crash_window_ms"], marker="x", s=30, color=color)
        bound = g[g["window_source"] == "kernel bound"]
        if len(bound):
            ax.errorbar(bound["ops_per_sec"], bound["loss_window_ms"],
                        xerr=_yerr(bound, "ops_per_sec", "ops_low", "ops_high"), fmt="s", ms=5, capsize=2,
                        color=color)
    front = p[p["pareto"] & np.isfinite(p["loss_window_ms"])].sort_values("ops_per_sec")
    ax.step(front["ops_per_sec"], front["loss_window_ms"], where="pre", color="black", lw=1, alpha=0.6)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=-0.2)
    ax.set_xlabel("ops/sec (log)")
    ax.set_ylabel("loss window (ms, symlog)")
    ax.set_title(p["target_label"].iloc[0] if len(p) else target, fontsize="small")
    return ax


def durability_legend(with_crash: bool = False) -> list:
    handles = [Line2D([], [], color=PALETTE[c], marker="o", ls="", label=k) for k, c in KIND_COLORS.items()]
    handles += [Line2D([], [], color="grey", marker="o", ls="", label="on the frontier: worst exposure per trial, "
                       "with intervals"),
                Line2D([], [], color="grey", marker="o", ms=3, alpha=0.35, ls="", label="not on the frontier"),
                Line2D([], [], color="grey", marker="o", mfc="none", ls="", label="several writers (not one writer's frontier)"),
                Line2D([], [], color="grey", marker="_", ms=12, ls="", label="nominal window")]
    if with_crash:
        handles.append(Line2D([], [], color="grey", marker="x", ls="", label="loss window by power cuts (p99)"))
    handles += [Line2D([], [], color="grey", marker="s", ls="", label="kernel writeback bound (not measured)"),
                Line2D([], [], color="black", alpha=0.6, label="Pareto frontier, one writer")]
    return handles


def loss_window_vs_nominal(rows: pd.DataFrame, title: str, ax=None):
    """Measured loss window per batch interval (median, p99, max over cuts) against N, with 95%
    distribution-free intervals where the number of cuts gives one (none for the max)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4.5))
    for k, name in enumerate(("median", "p99", "max")):
        y = rows[f"window_{name}_ms"]
        err = np.vstack([(y - rows[f"window_{name}_low"]).clip(lower=0).fillna(0),
                         (rows[f"window_{name}_high"] - y).clip(lower=0).fillna(0)])
        ax.errorbar(rows["interval_ms"], y, yerr=err, marker="o", ms=4, capsize=3, color=PALETTE[k],
                    label=f"measured loss window, {name} over cuts")
    hi = float(rows["interval_ms"].max())
    ax.plot([0, hi], [0, hi], color="grey", ls=":", label="nominal window = N")
    ax.set_xlabel("batch interval N (ms)")
    ax.set_ylabel("age of the oldest lost acknowledgement (ms)")
    ax.set_title(title, loc="left")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.figure.tight_layout()
    return ax


def ratios(frame: pd.DataFrame, labels: list[str], title: str, xlabel: str, aim: tuple[float, str] | None = None,
           log: bool = False):
    """One row per ratio with its interval (a forest plot), against 1 and, if given, an aim line;
    ``log``: a log scale, for ratios that span orders of magnitude."""
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(frame) + 1.5))
    y = np.arange(len(frame))
    filled = frame.fillna({"ratio_low": frame["ratio"], "ratio_high": frame["ratio"]})
    ax.errorbar(frame["ratio"], y, xerr=_yerr(filled, "ratio", "ratio_low", "ratio_high"), fmt="o", capsize=3,
                color=PALETTE[0])
    ax.axvline(1, color="grey", lw=1)
    if aim is not None:
        ax.axvline(aim[0], color=PALETTE[3], ls=":", lw=1, label=aim[1])
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", borderaxespad=0)
    ax.set_yticks(y, labels, fontsize="small")
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left")
    fig.tight_layout()
    return fig


def peer_ratios(summ: pd.DataFrame, aim: float, title: str):
    """Ours / peer ops/sec per pair and target, with each ratio's interval, against 1 and the aim (a pair
    the target could not run keeps its row, labelled so, with no point)."""
    labels = [f"{r.pair} · {r.target_label}" + (" (unavailable)" if getattr(r, "verdict", "") == "unavailable" else "")
              for r in summ.itertuples()]
    return ratios(summ, labels, title, "ours / peer ops/sec (1 = the same)",
                  (aim, f"aim for ours vs fio doing the same: {aim:g}"))


def run_ratios(diff: pd.DataFrame, title: str):
    """Run B over run A per configuration and target (``analysis.diff_runs``)."""
    return ratios(diff, [f"{r.config_label} · {r.target_label}" for r in diff.itertuples()], title,
                  f"B / A {diff['metric'].iloc[0] if len(diff) else ''} (1 = the same)")


def bench_run(results, timelines, title: str):
    """One bench run: per strategy, its ack latency histogram (log scale) and its timeline (entries
    acknowledged against time, with each sync's end marked)."""
    n = len(results)
    fig, axes = plt.subplots(n, 2, figsize=(12, 2.6 * n + 0.6), squeeze=False)
    for k, (r, tl) in enumerate(zip(results, timelines)):
        lat_us = np.asarray(tl.latency, dtype=float) / 1e3
        ax = axes[k][0]
        if len(lat_us):
            bins = np.logspace(np.log10(max(lat_us.min(), 0.1)), np.log10(max(lat_us.max(), 0.2)), 60)
            ax.hist(lat_us, bins=bins, color=PALETTE[KIND_COLORS.get(r.kind, 4)])
            ax.set_xscale("log")
        ax.set_xlabel("ack latency (µs, log)")
        ax.set_ylabel("entries")
        ax.set_title(f"{r.strategy}: {r.entries:,} entries, {r.ops_per_sec:,.0f} ops/s, p99 "
                     f"{r.ack_latency_us_p99:,.1f} µs", loc="left", fontsize="small")
        ax = axes[k][1]
        if len(tl.acks):
            t_ms = (np.asarray(tl.acks, dtype=float) - tl.start_ns) / 1e6
            ax.plot(t_ms, np.arange(1, len(t_ms) + 1), color=PALETTE[KIND_COLORS.get(r.kind, 4)], lw=1,
                    label="entries acknowledged")
            if len(tl.sync_ends) <= 200:
                for e in (np.asarray(tl.sync_ends, dtype=float) - tl.start_ns) / 1e6:
                    ax.axvline(e, color="grey", lw=0.5, alpha=0.6)
                ax.set_title(f"{len(tl.sync_ends):,} syncs (grey: each one's end)", loc="left", fontsize="small")
            else:
                ax.set_title(f"{len(tl.sync_ends):,} syncs (too many to mark)", loc="left", fontsize="small")
        else:
            ax.text(0.5, 0.5, "no acknowledgement times kept (none: nothing is ever synced)", ha="center",
                    va="center", transform=ax.transAxes, fontsize="small")
        ax.set_xlabel("time since the first write (ms)")
        ax.set_ylabel("entries")
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return fig


def latency_vs_rate(summ: pd.DataFrame, knees: pd.DataFrame, target: str, ax):
    """One panel: p99 latency from arrival against the offered rate per strategy (t-interval bands on the
    log scale), the closed loop's view beside it (service time p99, dashed), the knee marked."""
    s = summ[summ["target"] == target]
    configs = list(dict.fromkeys(s.sort_values("kind")["config"]))
    for k, config in enumerate(configs):
        g = s[s["config"] == config].sort_values("rate")
        color = PALETTE[KIND_COLORS.get(g["kind"].iloc[0], 4 + k)]
        label = g["config_label"].iloc[0]
        ax.plot(g["rate"], g["latency_us_p99"] / 1e3, marker="o", ms=3, color=color, label=f"{label}: from arrival")
        ax.fill_between(g["rate"], g["latency_us_p99_low"] / 1e3, g["latency_us_p99_high"] / 1e3, color=color,
                        alpha=0.2, lw=0)
        ax.plot(g["rate"], g["service_us_p99"] / 1e3, ls="--", lw=1, color=color, alpha=0.8)
        kn = knees[(knees["target"] == target) & (knees["config"] == config)]
        if len(kn) and kn["knee_rate"].iloc[0] > 0:
            at = g[g["rate"] == kn["knee_rate"].iloc[0]]
            ax.scatter(at["rate"], at["latency_us_p99"] / 1e3, marker="D", s=40, color=color, edgecolor="black",
                       zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (entries/s, log)")
    ax.set_ylabel("p99 latency (ms, log)")
    ax.set_title(s["target_label"].iloc[0] if len(s) else target, fontsize="small")
    return ax


def latency_legend(summ: pd.DataFrame) -> list:
    handles = [Line2D([], [], color=PALETTE[KIND_COLORS.get(kind, 4)], marker="o", ms=4, label=label)
               for kind, label in dict.fromkeys(zip(summ["kind"], summ["config_label"]))]
    handles += [Line2D([], [], color="grey", marker="o", ms=4, label="p99 from intended arrival (open loop)"),
                Line2D([], [], color="grey", ls="--", label="p99 service time (what a closed loop sees)"),
                Line2D([], [], color="grey", marker="D", ls="", markeredgecolor="black", label="the knee")]
    return handles


def realdb_ratios(table: pd.DataFrame, title: str):
    """Database / its prediction, commits/s, per setting and target, with each ratio's interval."""
    return ratios(table, [f"{r.key} ↔ {r.strategy} · {r.target_label}" for r in table.itertuples()], title,
                  "database / predicting strategy, commits per second (log; 1 = as predicted)", log=True)


def realdb_windows(cuts: pd.DataFrame, losses: pd.DataFrame, title: str):
    """Per setting: the age of the oldest acknowledged commit each power cut lost (a dot per cut that
    lost something), against the setting's documented promise (a bar; none where it promises no time)."""
    keys = list(losses["key"])
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(keys) + 1.5))
    for y, key in enumerate(keys):
        g = cuts[(cuts["key"] == key) & (cuts["error"] == "") & (cuts["lost_acked"].fillna(0) > 0)]
        jitter = np.random.default_rng(y).uniform(-0.18, 0.18, len(g))
        ax.scatter(g["oldest_lost_age_ms"], y + jitter, s=10, color=PALETTE[0], alpha=0.6,
                   label="a cut that lost commits: the oldest one's age" if y == 0 else None)
        promise = losses.loc[losses["key"] == key, "promise_ms"].iloc[0]
        if pd.notna(promise) and promise > 0:
            ax.plot([promise, promise], [y - 0.35, y + 0.35], color=PALETTE[3], lw=2,
                    label="documented worst case" if "documented worst case" not in
                    ax.get_legend_handles_labels()[1] else None)
    ax.set_yticks(np.arange(len(keys)), [f"{k} ({n} of {c} cuts lost)" for k, n, c in
                                         zip(keys, losses["cuts_losing"], losses["reopened"])], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("age of the oldest lost acknowledged commit at the cut (ms)")
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", borderaxespad=0)
    fig.tight_layout()
    return fig


def fleet_side_by_side(cells: pd.DataFrame, title: str):
    """One panel per target role; in each, every configuration with one point per host (geometric mean,
    95% t interval), on a log scale: hosts side by side."""
    roles = list(dict.fromkeys(cells["role"]))
    hosts = sorted(cells["host"].unique())
    configs = list(dict.fromkeys(cells.sort_values("config_label")["config_label"]))
    fig, axes = plt.subplots(1, len(roles), figsize=(5.2 * len(roles) + 2.2, 0.42 * len(configs) + 1.6),
                             squeeze=False, sharey=True)
    step = 0.7 / max(1, len(hosts))
    for ax, role in zip(axes.flat, roles):
        for k, host in enumerate(hosts):
            g = cells[(cells["role"] == role) & (cells["host"] == host)].set_index("config_label").reindex(configs)
            y = np.arange(len(configs)) + (k - (len(hosts) - 1) / 2) * step
            filled = g.fillna({"low": g["mean"], "high": g["mean"]})
            ax.errorbar(g["mean"], y, xerr=_yerr(filled, "mean", "low", "high"), fmt="o", capsize=2, ms=4,
                        color=PALETTE[k % len(PALETTE)], label=host)
        ax.set_xscale("log")
        ax.set_yticks(np.arange(len(configs)), configs, fontsize="small")
        ax.set_xlabel("ops/sec")
        labels = sorted({str(t).split(": ", 1)[-1] for t in cells.loc[cells["role"] == role, "target_label"]})
        ax.set_title(f"{role}: {', '.join(labels)}", loc="left", fontsize="medium")
    axes.flat[0].invert_yaxis()
    finish(fig, list(axes.flat), title)
    return fig
