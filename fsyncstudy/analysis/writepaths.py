"""The write paths (docs/strategies.md#write-paths): per target, each path beside the plain path it changes
(throughput paired by round, the latency tail, the segments' rolls), what each keeps at a power cut and
at a process kill where a crash dataset has cuts of it, and the fastest path that loses nothing
acknowledged.  Notebook 10 and the report's index read these."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import intervals, measures, stats
from ..strategies import parse
from .choice import target_order
from .sweep import display_label, plain_path

def baseline_config(config: str) -> str:
    """The configuration a path is set beside: the same strategy and writers, appending, with fdatasync
    after per-entry writes to one file; a preallocated ``direct_dsync`` is set beside ``direct_dsync``
    appending (the hazard of writing into fallocated or zero-filled space, like with like)."""
    parts = config.split("/")
    strategy, writers, prealloc, method = parts[:4]
    if method == "direct_dsync" and prealloc != "append" and len(parts) == 4:
        return f"{strategy}/{writers}/append/direct_dsync"
    return f"{strategy}/{writers}/append/fdatasync"


def _is_path(frame: pd.DataFrame) -> pd.Series:
    """Rows of a write path (not the plain one; a preallocated plain ``always`` is preallocation's page)."""
    return ~plain_path(frame)


def _pooled_us(g: pd.DataFrame, p: float) -> float:
    """The ``p`` percentile of every ack latency of the trials pooled (their histograms merged), in us."""
    hists = [measures.decode_histogram(h) for h in g.get("ack_latency_hist", pd.Series(dtype=str)).fillna("") if h]
    v = measures.histogram_percentile(measures.merge_histograms(hists), p) if hists else None
    return np.nan if v is None else v / 1e3


def paths_table(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per (target, write-path configuration): ops/s (geometric mean over trials with its t
    interval), its ratio to the baseline configuration (``baseline_config``) paired by round, the ack
    latency's p50 and p99 (medians over trials of each trial's), p99.9 and max of every ack pooled, and
    for segments the rolls per trial and the first ack after a roll (median over trials of each trial's
    median) against the trial's p50; for buffered writes how long an ack waited for its write()."""
    rows = []
    paths = df[_is_path(df)]
    for (target, config), g in paths.groupby(["target", "config"], sort=False):
        base_key = baseline_config(config)
        base = df[(df["target"] == target) & (df["config"] == base_key)]
        ops = intervals.mean_interval(g["ops_per_sec"].tolist(), level=level)
        ratio = stats.paired_by_round(g, base) if len(base) else None
        st = parse(g["strategy"].iloc[0])
        rows.append({
            "target": target, "target_label": display_label(g["target_label"].iloc[0]), "config": config,
            "config_label": g["config_label"].iloc[0], "baseline": base_key,
            "baseline_label": base["config_label"].iloc[0] if len(base) else "", "strategy": st.name,
            "acks_durable": st.acks_durable, "n": len(g),
            "ops_per_sec": ops.estimate, "ops_low": ops.low, "ops_high": ops.high,
            "ratio": ratio.estimate if ratio else np.nan, "ratio_low": ratio.low if ratio else np.nan,
            "ratio_high": ratio.high if ratio else np.nan,
            "p50_us": g["ack_latency_us_p50"].median(), "p99_us": g["ack_latency_us_p99"].median(),
            "p999_us": _pooled_us(g, 99.9), "max_us": g["ack_latency_us_max"].max(),
            "base_p999_us": _pooled_us(base, 99.9) if len(base) else np.nan,
            "rolls_per_trial": g["roll_count"].mean() if "roll_count" in g else np.nan,
            "roll_ack_us_p50": g["roll_ack_us_p50"].median() if "roll_ack_us_p50" in g else np.nan,
            "roll_ack_us_max": g["roll_ack_us_max"].max() if "roll_ack_us_max" in g else np.nan,
            "process_exposure_ms_max": g["process_exposure_ms_max"].max() if "process_exposure_ms_max" in g else np.nan,
            "bound": g["bound"].mode().iloc[0] if "bound" in g and g["bound"].notna().any() else "",
        })
    if not rows:
        return pd.DataFrame(rows)
    # in the index's order of targets (the machine's disks, the lab's filesystems, its emulations), each
    # target's paths by strategy and name: not in the order the shuffled rounds first ran them
    rank = {t: i for i, t in enumerate(target_order(paths))}
    out = pd.DataFrame(rows)
    out["_rank"] = out["target"].map(rank)
    return out.sort_values(["_rank", "strategy", "config_label"], kind="stable").drop(columns="_rank") \
        .reset_index(drop=True)


def roll_lines(table: pd.DataFrame) -> list[str]:
    """The segments' rolls, per target: how often, and what the first ack after a roll cost against the
    trial's median, and the tail (p99.9) against one file."""
    out = []
    seg = table[table["rolls_per_trial"].fillna(0) > 0]
    for r in seg.itertuples():
        out.append(f"**{r.target_label}**: `{r.config_label}` rolled {r.rolls_per_trial:.1f} times a trial; the "
                   f"first ack after a roll took {r.roll_ack_us_p50:,.0f} µs (median over trials; the slowest "
                   f"{r.roll_ack_us_max:,.0f} µs) against a median ack of {r.p50_us:,.0f} µs, and its p99.9 was "
                   f"{r.p999_us:,.0f} µs against {r.base_p999_us:,.0f} µs in one file.")
    return out


def fastest_durable(answer_rows: list[dict]) -> pd.DataFrame:
    """From the index's answer (``choice.answer``), the rows at one writer: per target the fastest
    configuration that acknowledges only after a covering sync, among every path measured there."""
    rows = [r for r in answer_rows if r["writers"] == 1]
    return pd.DataFrame(rows)


def keeps_table(cuts: pd.DataFrame | None) -> pd.DataFrame:
    """What each path kept, from a crash dataset's cuts of it (kind, strategy, path): cuts, acknowledged,
    lost, cuts that lost, the zero-loss 95% upper bound or the largest loss window.  Empty without cuts of
    any write path (a crash dataset from before them)."""
    cols = ["kind", "strategy", "path", "cuts", "acked", "lost_acked", "cuts_losing", "zero_loss_upper",
            "window_ms_max"]
    if cuts is None or not len(cuts) or "path" not in cuts:
        return pd.DataFrame(columns=cols)
    c = cuts[(cuts["error"].fillna("") == "") & (cuts["path"].fillna("") != "")]
    rows = []
    for (kind, strategy, path), g in c.groupby(["kind", "strategy", "path"], sort=False):
        losing = int((g["lost_acked"] > 0).sum())
        rows.append({"kind": kind, "strategy": strategy, "path": path, "cuts": len(g), "acked": int(g["acked"].sum()),
                     "lost_acked": int(g["lost_acked"].sum()), "cuts_losing": losing,
                     "zero_loss_upper": intervals.zero_events_upper(len(g)) if losing == 0 else np.nan,
                     "window_ms_max": g["oldest_lost_age_ms"].max() if losing else np.nan})
    return pd.DataFrame(rows, columns=cols)


def _ratio_text(r) -> str:
    if pd.isna(r.ratio):
        return "(its baseline was not measured there)"
    lo, hi = r.ratio_low, r.ratio_high
    ci = f" (95% CI {lo:.2f}–{hi:.2f})" if pd.notna(lo) and pd.notna(hi) else ""
    if pd.notna(lo) and lo > 1:
        verdict = "faster"
    elif pd.notna(hi) and hi < 1:
        verdict = "slower"
    else:
        verdict = "not told apart"
    return f"{r.ratio:.2f}×{ci} `{r.baseline_label}`'s ops/s, {verdict}"


def path_lines(table: pd.DataFrame, fastest: pd.DataFrame) -> list[str]:
    """What the data says about the paths, per target: each path against its baseline, then the fastest
    configuration at one writer that loses nothing acknowledged (from the index's answer)."""
    out = []
    for target, g in table.groupby("target", sort=False):
        parts = [f"`{r.config_label}` {_ratio_text(r)}" for r in g.itertuples()]
        line = f"**{g['target_label'].iloc[0]}**: " + "; ".join(parts) + "."
        f = fastest[fastest["target"] == target] if len(fastest) else fastest
        if len(f):
            a = f.iloc[0]
            tie = "" if a["resolved"] else (" (the data cannot tell it from " + ", ".join(f"`{t}`" for t in a["tied"])
                                              + ")" if a["tied"] else " (not resolved)")
            line += (f" Fastest at one writer that acknowledges only after a covering sync: `{a['choice_label']}`, "
                     f"{a['ratio']:.2f}× `always`{tie}.")
        out.append(line)
    return out
