"""Tables the notebooks show, computed from a dataset's frames: the shapes between statistics
and figures.  Pure: frames (and meta dicts) in, tables out; nothing here measures or reads files.

The notebooks call these and stay short; anything a notebook would compute twice lives here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import intervals, stats
from .peers import pair_verdict
from .strategies import parse
from .targets import strip_verdict
from .trial import CPU_BOUND_SHARE

BASELINE = "always/w1/append/fdatasync"
TASK = ["always/w1/append/fdatasync", "batch_10ms/w1/append/fdatasync", "none/w1/append/fdatasync"]


def machine_table(meta: dict) -> pd.DataFrame:
    """Where and how a sweep dataset was measured, as a two-column table."""
    env, plan = meta["environment"], meta["plan"]
    rows = [("host", env["host"]), ("kernel", env["kernel"]), ("CPU", f"{env['cpu']} ({env['cores']} cores)"),
            ("memory", f"{(env.get('memory_bytes') or 0) / 2**30:.0f} GiB"), ("Python", env["versions"]["python"]),
            ("fsyncstudy", f"{env['versions']['fsyncstudy']} (git {str(env['git']['commit'])[:10]}"
                           f"{', uncommitted changes' if env['git']['dirty'] else ''})"),
            ("profile", f"{plan['profile']['name']}: {plan['profile']['trials']} trials per configuration after "
                        f"{plan['profile']['warmup_rounds']} discarded warm-up round, seed {plan['seed']}"),
            ("trial length", meta["notes"].get("trial_rule", "")), ("measured", meta["created_at"])]
    # what later datasets record too (older ones lack it: shown as not recorded)
    sysctl = env.get("sysctl") or {}
    rows += [("engine digest", env.get("engine_sha256") or "not recorded"),
             ("writeback sysctls", ", ".join(f"{k.removeprefix('vm.')}={v}" for k, v in sysctl.items()) or "not recorded"),
             ("interpreter switch interval", f"{env['switch_interval_s'] * 1e3:g} ms" if env.get("switch_interval_s")
              else "not recorded"),
             ("rendered by", f"fsyncstudy git {rendering_commit()}")]
    return pd.DataFrame(rows, columns=["", "value"]).set_index("")


def rendering_commit() -> str:
    """The commit of the code rendering this report (beside the one that measured the data)."""
    from .dataset import _git_commit
    g = _git_commit()
    return f"{str(g['commit'])[:10]}{', uncommitted changes' if g['dirty'] else ''}"


def targets_table(meta: dict) -> pd.DataFrame:
    """Every target of a dataset with its filesystem, device and durability verdict; skipped ones too."""
    rows = []
    for path, t in meta["environment"]["targets"].items():
        rows.append({"target": t.get("label") or path, "directory": path, "filesystem": t["fstype"],
                     "device": t.get("block_device") or t["source"], "rotational": t.get("rotational"),
                     "write cache": t.get("write_cache"), "verdict": t["durability"], "why": t["reason"]})
    for name, reason in (meta["notes"].get("skipped_targets") or {}).items():
        rows.append({"target": name, "directory": "", "filesystem": "", "device": "", "rotational": None,
                     "write cache": None, "verdict": "skipped", "why": reason})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame, seed: int = 0, n_boot: int = stats.N_BOOT) -> pd.DataFrame:
    return stats.summarize(df, metrics=("ops_per_sec", "ack_latency_us_p99", "exposure_ms_p99", "exposure_ms_max",
                                        "sync_latency_us_p50"), seed=seed, n_boot=n_boot)


def task_table(summ: pd.DataFrame, rel: pd.DataFrame) -> pd.DataFrame:
    """The task's results table per target: strategy, ops/sec with CIs, labels, measured exposure."""
    ops = stats.wide(summ, "ops_per_sec").set_index(["target", "config"])
    exp = stats.wide(summ, "exposure_ms_max").set_index(["target", "config"])
    ratio = rel.set_index(["target", "config"])
    rows = []
    for (target, config), r in ops.iterrows():
        if config not in TASK:
            continue
        st = parse(r["strategy"])
        e = exp["mean"].get((target, config), np.nan)
        rows.append({
            "target": r["target_label"], "strategy": st.name,
            "ops_per_sec": r["estimate"], "95% CI": f"{r['t_low']:,.0f} – {r['t_high']:,.0f}", "n": int(r["n"]),
            "× always": ratio["ratio"].get((target, config), np.nan),
            "durability": st.durability, "data_loss_window": st.data_loss_window,
            "measured max exposure ms": e,
        })
    out = pd.DataFrame(rows)
    order = {c.split("/")[0]: k for k, c in enumerate(TASK)}
    return out.sort_values(["target", "strategy"], key=lambda s: s.map(order) if s.name == "strategy" else s)


def interval_curves(summ: pd.DataFrame, metric: str = "ops_per_sec") -> pd.DataFrame:
    """batch_<N>ms and group_<N>ms rows of one metric, with the interval as a number and a family name."""
    w = stats.wide(summ, metric)
    w = w[w["kind"].isin(["batch", "group"]) & (w["prealloc"] == "append")].copy()
    w["family"] = np.where(w["kind"] == "batch", "batch (1 writer)",
                           "group commit (" + w["writers"].astype(int).astype(str) + " writers)")
    return w.sort_values(["target", "family", "interval_ms"]).reset_index(drop=True)


def reference_rows(summ: pd.DataFrame, metric: str = "ops_per_sec") -> pd.DataFrame:
    w = stats.wide(summ, metric)
    return w[w["config"].isin(["always/w1/append/fdatasync", "none/w1/append/fdatasync"])].reset_index(drop=True)


def writeback_applies(fstype: str, durability: str) -> bool:
    """Whether the kernel's periodic writeback bounds what ``none`` can lose here: not on a volatile
    target (nothing is ever durable) nor on the lab's FUSE targets (their daemon keeps unsynced data
    in its own cache until a sync, so a power cut loses all of it, however old)."""
    return durability != "volatile" and str(fstype) not in ("tmpfs", "ramfs") and not str(fstype).startswith("fuse")


def writeback_phrase(fstype: str, durability: str, bound_s: float) -> str:
    """What bounds an unsynced entry's exposure on this target, in words."""
    if durability == "volatile" or str(fstype) in ("tmpfs", "ramfs"):
        return "nothing there ever reaches durable storage"
    if str(fstype).startswith("fuse"):
        return "this FUSE target writes nothing back before a sync, so a power cut loses every unsynced entry"
    return f"the kernel writes back after about {bound_s:.0f} s"


#: Where the crash experiment's power cuts ran: its loss windows belong on this target's panel only.
CRASH_TARGET = "lab:powercut"


def frontier_points(summ: pd.DataFrame, df: pd.DataFrame, crash: pd.DataFrame | None = None,
                    crash_target: str = CRASH_TARGET) -> pd.DataFrame:
    """One point per (target, configuration): ops/sec with CI, nominal and measured loss window.

    The measured window is the geometric mean over trials of each trial's largest exposure (its
    arithmetic mean where a trial saw 0).  ``none`` is never synced: where the kernel's writeback
    applies (``writeback_applies``) its window is that bound (dirty_expire + dirty_writeback,
    ``window_source = "kernel bound"``); on a FUSE target nothing writes back (``"unbounded"``, an
    infinite window); on a volatile target every configuration loses everything at a power cut
    (``"volatile"``, infinite).  ``pareto``: on the frontier of the estimates; ``pareto_maybe``: not
    beaten with confidence (``stats.pareto_front_uncertain``).  ``crash_window_ms``: the p99 loss
    window that power cuts measured for the same strategy, on ``crash_target`` only, not for none
    (its "window" there is the cut's moment: everything since the start is lost).
    """
    ops = stats.wide(summ, "ops_per_sec").set_index(["target", "config"])
    exp = stats.wide(summ, "exposure_ms_max").set_index(["target", "config"])
    bound = (df["writeback_expire_s"] + df["writeback_interval_s"]).dropna()
    bound_ms = float(bound.iloc[0]) * 1000 if len(bound) else np.nan
    rows = []
    for key, r in ops.iterrows():
        fstype = r.get("target_fstype", "")
        if r["target_durability"] == "volatile":
            measured, lo, hi, src = np.inf, np.nan, np.nan, "volatile"
        elif key in exp.index:
            e = exp.loc[key]
            measured, lo, hi, src = e["mean"], e["t_low"], e["t_high"], "measured exposure"
        elif writeback_applies(fstype, r["target_durability"]):
            measured, lo, hi, src = bound_ms, np.nan, np.nan, "kernel bound"
        else:
            measured, lo, hi, src = np.inf, np.nan, np.nan, "unbounded"
        nominal = r["nominal_loss_window_ms"]
        rows.append({"target": key[0], "target_label": r["target_label"], "config": key[1],
                     "config_label": r["config_label"], "kind": r["kind"], "target_durability": r["target_durability"],
                     "target_fstype": fstype,
                     "ops_per_sec": r["mean"], "ops_low": r["t_low"], "ops_high": r["t_high"], "n": int(r["n"]),
                     "nominal_window_ms": (bound_ms if src == "kernel bound" else np.inf) if pd.isna(nominal) else nominal,
                     "loss_window_ms": measured, "window_low": lo, "window_high": hi, "window_source": src})
    pts = pd.DataFrame(rows)
    pts["crash_window_ms"] = np.nan
    if crash is not None and len(crash):
        power = crash[crash["kind"] == "power"].set_index("strategy")["window_p99_ms"]
        on = ((pts["target"] == crash_target) | (pts["target_label"] == crash_target)) & (pts["kind"] != "none") \
            & pts["config"].str.endswith("/w1/append/fdatasync")
        pts.loc[on, "crash_window_ms"] = [power.get(c.split("/")[0], np.nan) for c in pts.loc[on, "config"]]
    pts["pareto"] = False
    pts["pareto_maybe"] = False
    for _, g in pts.groupby("target"):
        pts.loc[g.index, "pareto"] = stats.pareto_front(g, "ops_per_sec", "loss_window_ms")
        pts.loc[g.index, "pareto_maybe"] = stats.pareto_front_uncertain(g)
    return pts


def cpu_bound_text(df: pd.DataFrame, target: str, configs: list[str]) -> str:
    """A computed sentence on whether these configurations' ops/sec measure the storage or the CPU
    on one target: from the trials' ``bound`` (CPU time over elapsed time) where the dataset has it,
    else '' (datasets measured before CPU accounting)."""
    if "bound" not in df.columns:
        return ""
    g = df[(df["target"] == target) & df["config"].isin(configs) & (df["bound"].fillna("") != "")]
    if g.empty:
        return ""
    cpu = g[g["bound"] == "cpu"]
    names = " and ".join(f"`{c.split('/')[0]}`" for c in configs)
    if len(cpu) == len(g):
        return (f"{names} were CPU-bound in all {len(g)} trials (the process on a CPU for at least "
                f"{CPU_SHARE_TEXT} of the time, {g['cpu_us_per_entry'].median():.2f} µs of CPU per entry at the median): "
                "their ops/sec measure the write loop and the kernel's copy, not the storage.")
    if cpu.empty:
        return f"{names} were storage-bound in all {len(g)} trials."
    return f"{names} were CPU-bound in {len(cpu)} of {len(g)} trials."


CPU_SHARE_TEXT = f"{CPU_BOUND_SHARE:.0%}"


def fmt_ratio(x: float) -> str:
    """A ratio with the precision its size deserves: 1.07, 12.3, 98."""
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def span(values, fmt=fmt_ratio) -> str:
    """'a–b' over the values, or one number when both ends print the same ('0.99', not '0.99–0.99')."""
    vals = [v for v in values if v == v]
    if not vals:
        return "n/a"
    lo, hi = fmt(min(vals)), fmt(max(vals))
    return lo if lo == hi else f"{lo}–{hi}"


def ratio_text(est: float, low: float, high: float) -> str:
    return f"{fmt_ratio(est)}× (95% CI {fmt_ratio(low)}–{fmt_ratio(high)})"


# -- crash experiments ------------------------------------------------------------------------------

def loss_windows(cuts: pd.DataFrame) -> pd.DataFrame:
    """Each cut's measured loss window: the age of its oldest lost acknowledgement (0 if nothing was lost)."""
    c = cuts[cuts["error"] == ""].copy()
    c["loss_window_ms"] = c["oldest_lost_age_ms"].fillna(0.0)
    return c


def crash_table(cuts: pd.DataFrame, seed: int = 0, n_boot: int = stats.N_BOOT) -> pd.DataFrame:
    """Per kind and strategy: cuts, acknowledged and lost entries (with the 95% upper bound on the
    share of cuts that lose, and of acknowledged entries lost, when none did), and the loss window's
    median, p99 and max over cuts with 95% distribution-free intervals where the number of cuts
    allows one (``stats.quantile_interval``; the max never gets one)."""
    rows = []
    c = loss_windows(cuts)
    for (kind, strategy), g in c.groupby(["kind", "strategy"], sort=False):
        w = g["loss_window_ms"].to_numpy(dtype=float)
        row = {"kind": kind, "strategy": strategy, "skind": g["skind"].iloc[0], "interval_ms": g["interval_ms"].iloc[0],
               "nominal_loss_window_ms": g["nominal_loss_window_ms"].iloc[0], "cuts": len(g),
               "acked": int(g["acked"].sum()), "lost_acked": int(g["lost_acked"].sum()),
               "cuts_losing": int((g["lost_acked"] > 0).sum()), "torn": int(g["torn"].sum()),
               "corrupt": int(g["corrupt"].sum()), "unacked_recovered": int(g["unacked_recovered"].sum())}
        row["cuts_losing_upper95"] = (stats.zero_events_upper(len(g)) if row["cuts_losing"] == 0 else np.nan)
        row["lost_acked_upper95"] = (stats.zero_events_upper(row["acked"]) if row["lost_acked"] == 0 else np.nan)
        for name, q in (("median", 50), ("p99", 99), ("max", 100)):
            iv = stats.quantile_interval(w, q)
            row[f"window_{name}_ms"], row[f"window_{name}_low"], row[f"window_{name}_high"] = iv.estimate, iv.low, iv.high
            row[f"window_{name}_method"] = iv.method
        rows.append(row)
    out = pd.DataFrame(rows)
    out["ci_method"] = stats.QUANTILE_METHOD
    return out



def prealloc_table(df: pd.DataFrame, seed: int = 0, n_boot: int = stats.N_BOOT) -> pd.DataFrame:
    """What preallocation buys: each preallocated configuration's ops/sec over the same strategy
    appending, on the same target, as a ratio paired by round (``stats.paired_by_round``)."""
    rows = []
    pre = df[df["prealloc"] != "append"]
    for (target, config), g in pre.groupby(["target", "config"], sort=False):
        strategy, writers, prealloc, method = config.split("/")
        base = df[(df["target"] == target) & (df["config"] == f"{strategy}/{writers}/append/{method}")]
        if base.empty:
            continue
        iv = stats.paired_by_round(g, base)
        est, lo, hi = iv.estimate, iv.low, iv.high
        rows.append({"target": target, "target_label": g["target_label"].iloc[0],
                     "target_durability": g["target_durability"].iloc[0], "strategy": strategy,
                     "prealloc": prealloc, "ops_per_sec": stats.mean_interval(g["ops_per_sec"].tolist()).estimate,
                     "append_ops_per_sec": stats.mean_interval(base["ops_per_sec"].tolist()).estimate, "ratio": est, "ratio_low": lo,
                     "ratio_high": hi, "n": len(g), "ci_method": iv.method})
    return pd.DataFrame(rows)


def none_vs_batch(df: pd.DataFrame, ops: pd.DataFrame, seed: int = 0, n_boot: int = stats.N_BOOT) -> pd.DataFrame:
    """Per target: none's ops/sec over batch_10ms's (paired by round, ``stats.paired_by_round``), and
    which way it went: 'none faster', 'batch_10ms faster' or 'no significant difference'."""
    rows = []
    for target, g in ops.groupby("target", sort=False):
        pick = df["target"] == target
        iv = stats.paired_by_round(df[pick & (df["config"] == TASK[2])], df[pick & (df["config"] == TASK[1])])
        est, lo, hi = iv.estimate, iv.low, iv.high
        verdict = "none faster" if lo > 1 else "batch_10ms faster" if hi < 1 else "no significant difference"
        rows.append({"target": g["target_label"].iloc[0], "none / batch_10ms": est, "95% CI low": lo,
                     "95% CI high": hi, "verdict": verdict})
    return pd.DataFrame(rows)


# -- the peers --------------------------------------------------------------------------------------

def peers_summary(df: pd.DataFrame, durability: dict[str, str] | None = None) -> pd.DataFrame:
    """Per target and pair: the ratio ours/peer (geometric mean of per-round ratios, 95% t interval
    of the log ratios), both sides' mean ops/sec with intervals, mean p50/p99 over rounds, the
    pair's verdict against its aim (``peers.pair_verdict``) and, for pg_test_fsync's pairs, the half
    width of its interval relative to its mean.  ``durability``: {target: verdict}, carried along."""
    rows = []
    for (target, pair), g in df.groupby(["target", "pair"], sort=False):
        ours = g[g["side"] == "ours"].sort_values("round")
        peer = g[g["side"] == "peer"].sort_values("round")
        r = intervals.paired_ratio_ci(list(ours["ops_per_sec"]), list(peer["ops_per_sec"]))
        o, p = intervals.mean_ci(ours["ops_per_sec"]), intervals.mean_ci(peer["ops_per_sec"])
        rows.append({"target": target, "target_label": g["target_label"].iloc[0],
                     "target_durability": (durability or {}).get(target, ""), "pair": pair,
                     "peer": g["peer"].iloc[0], "peer_test": peer["config"].iloc[0], "ours": ours["config"].iloc[0],
                     "rounds": len(ours), "ratio": r.mean, "ratio_low": r.low, "ratio_high": r.high,
                     "ours_ops": o.mean, "ours_low": o.low, "ours_high": o.high,
                     "peer_ops": p.mean, "peer_low": p.low, "peer_high": p.high,
                     "peer_half_width": (p.high - p.mean) / p.mean if p.low is not None and p.mean else np.nan,
                     "ours_p50_us": ours["p50_us"].mean(), "ours_p99_us": ours["p99_us"].mean(),
                     "peer_p50_us": peer["p50_us"].mean(), "peer_p99_us": peer["p99_us"].mean(),
                     "aim": g["aim"].iloc[0], "verdict": pair_verdict(pair, g["peer"].iloc[0], ours["ops_per_sec"].tolist(),
                                                               peer["ops_per_sec"].tolist()),
                     "ci_method": intervals.RATIO_METHOD})
    return pd.DataFrame(rows)


# -- two runs side by side --------------------------------------------------------------------------

def write_ceiling(peers_df: pd.DataFrame) -> pd.DataFrame:
    """The write ceiling of a C loop per target, from a comparison dataset: fio's no-sync writes
    (``--rw=write --ioengine=sync``, the ``fio-nosync`` pair's peer side), indexed by target label,
    with the geometric mean over rounds and its 95% t interval, the record size, and the raw values
    (``values``) to build ratios from.  Empty when the dataset has no such pair."""
    rows = []
    has = len(peers_df) and {"pair", "side", "target_label"} <= set(peers_df.columns)
    f = peers_df[(peers_df["pair"] == "fio-nosync") & (peers_df["side"] == "peer")] if has else None
    for label, g in f.groupby("target_label", sort=False) if f is not None else ():
        iv = intervals.mean_interval(g["ops_per_sec"].tolist())
        rows.append({"target_label": label, "ops_per_sec": iv.estimate, "low": iv.low, "high": iv.high,
                     "rounds": len(g), "block_bytes": int(g["block_bytes"].iloc[0]),
                     "prealloc": str(g["prealloc"].iloc[0]), "values": g["ops_per_sec"].tolist()})
    return pd.DataFrame(rows, columns=["target_label", "ops_per_sec", "low", "high", "rounds", "block_bytes",
                                       "prealloc", "values"]).set_index("target_label")


def ceiling_ratios(df: pd.DataFrame, ceiling: pd.DataFrame, target: str, configs: list[str]) -> dict:
    """Each configuration's ops/sec on ``target`` over the C loop's ceiling on the same target
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


def ceiling_text(df: pd.DataFrame, ceiling: pd.DataFrame, target: str, configs: list[str], source: str) -> str:
    """A computed sentence: the C loop's no-sync write ceiling on this target (``write_ceiling``,
    from the comparison dataset ``source``) and where these configurations reach against it; '' when
    the comparison did not measure this target."""
    ratios = ceiling_ratios(df, ceiling, target, configs)
    if not ratios:
        return ""
    c = ceiling.loc[df.loc[df["target"] == target, "target_label"].iloc[0]]
    lo = f"{c['low']:,.0f}–{c['high']:,.0f}" if np.isfinite(c["low"]) else "no interval"
    reach = " and ".join(f"`{k.split('/')[0]}` {ratio_text(r.estimate, r.low, r.high)}" for k, r in ratios.items())
    return (f"The ceiling of a C loop: fio writing the same {int(c['block_bytes'])}-byte records without syncing "
            f"(to a file preallocated with {c['prealloc']}) reached "
            f"{c['ops_per_sec']:,.0f} ops/s on this target (95% CI {lo}, {int(c['rounds'])} rounds of the comparison "
            f"run `{source}`); {reach} of it.")


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


def diff_runs(a: pd.DataFrame, b: pd.DataFrame, metric: str = "ops_per_sec") -> pd.DataFrame:
    """Run B against run A, per target and configuration both hold: each side's mean with its 95% t
    interval, the ratio B/A of geometric means with Welch's 95% interval (the runs share no rounds),
    and whether B is significantly higher, lower, or neither.  Rows of trials that failed must be
    left out before (``sweep.load`` does)."""
    rows = []
    for ta, tb in pair_targets(a, b).items():
        ga, gb = a[a["target"] == ta], b[b["target"] == tb]
        for config in dict.fromkeys(ga["config"]):
            xa = ga.loc[ga["config"] == config, metric].dropna().tolist()
            xb = gb.loc[gb["config"] == config, metric].dropna().tolist()
            if not xa or not xb:
                continue
            ea, eb = intervals.mean_ci(xa), intervals.mean_ci(xb)
            r = intervals.unpaired_ratio_ci(xb, xa)
            verdict = ("too few trials for an interval" if r.low is None else
                       "B higher" if r.low > 1 else "B lower" if r.high < 1 else "no significant difference")
            first = ga[ga["config"] == config].iloc[0]
            rows.append({"target_a": ta, "target_b": tb, "target_label": first["target_label"], "config": config,
                         "config_label": first["config_label"], "metric": metric,
                         "n_a": ea.n, "mean_a": ea.mean, "low_a": ea.low, "high_a": ea.high,
                         "n_b": eb.n, "mean_b": eb.mean, "low_b": eb.low, "high_b": eb.high,
                         "ratio": r.mean, "ratio_low": r.low, "ratio_high": r.high, "verdict": verdict,
                         "ci_method": "ratio of geometric means, Welch's 95% t interval of the log difference"})
    return pd.DataFrame(rows)


# -- the answer at a glance -------------------------------------------------------------------------

def _paired_by_round(df: pd.DataFrame, target: str, num: str, den: str, metric: str = "ops_per_sec"):
    """num / den on one target, paired by round (both ran in every round, in shuffled order)."""
    g = df[df["target"] == target].pivot_table(index="round", columns="config", values=metric, aggfunc="mean")
    if num not in g or den not in g:
        return intervals.Estimate(None, None, None, 0)
    if num == den:   # the best is the baseline itself (no group configuration beat it)
        n = int(g[num].notna().sum())
        return intervals.Estimate(1.0, 1.0, 1.0, n)
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
        zero = g[g["kind"].isin(["always", "group"]) & (g["prealloc"] == "append")]
        best = zero.groupby("config")["ops_per_sec"].mean().idxmax()
        b = g.loc[g["config"] == TASK[1]]
        out.append({
            "target": target, "target_label": display_label(g["target_label"].iloc[0]),
            "durability": g["target_durability"].iloc[0], "n": len(always),
            "always": intervals.mean_ci(always.tolist()),
            "best_zero_loss": best, "best_zero_loss_label": zero.loc[zero["config"] == best, "config_label"].iloc[0],
            "best_zero_loss_ops": intervals.mean_ci(zero.loc[zero["config"] == best, "ops_per_sec"].tolist()),
            "best_zero_loss_ratio": _paired_by_round(df, target, best, TASK[0]),
            "batch10_ratio": _paired_by_round(df, target, TASK[1], TASK[0]),
            "batch10_exposure_ms": intervals.mean_ci(b["exposure_ms_max"].tolist()),
            "batch10_exposure_max_ms": float(b["exposure_ms_max"].max()) if len(b) else None,
        })
    return out


def _ci(e, fmt) -> str:
    return fmt(e.mean) + ("" if e.low is None else f" (95% CI {fmt(e.low)}–{fmt(e.high)})")


def headline_lines(rows: list[dict]) -> list[str]:
    """The headline as sentences, one per target (plain text; the report's index wraps them in HTML)."""
    ops, ratio = (lambda x: f"{x:,.0f}"), fmt_ratio
    lines = []
    for h in rows:
        text = f"**{h['target_label']}**: `always` sustains {_ci(h['always'], ops)} ops/s"
        if h["best_zero_loss"] != TASK[0]:
            text += (f"; the fastest choice that loses nothing acknowledged is `{h['best_zero_loss_label']}`, "
                     f"{_ci(h['best_zero_loss_ratio'], ratio)}× that")
        if h["batch10_ratio"].mean is not None:
            text += (f"; `batch_10ms` runs {_ci(h['batch10_ratio'], ratio)}× `always`, and its worst exposure of an "
                     f"acknowledged entry was {h['batch10_exposure_ms'].mean:.1f} ms per trial (geometric mean) "
                     f"({h['batch10_exposure_max_ms']:.1f} ms at most)")
        lines.append(text + f" [n = {h['n']} trials each]")
    return lines


def display_label(label: str) -> str:
    """A target's label without a durability verdict (older datasets stored one in it)."""
    return strip_verdict(label)


class Checks:
    """The invariants a notebook asserts on its data.  Each ``check(ok, what, detail)`` fails at once
    (AssertionError, so nbval and the report stop) when ``ok`` is false; shown in a notebook, the
    object is one line: how many held, and which.

    A check whose premise the machine can break (a device-wide counter on a disk other processes
    use) passes ``unless``: the measured reason its premise did not hold, or "" when it held.  With a
    reason it is not applied, and the line says which checks were not, and why."""

    def __init__(self):
        self.held: list[str] = []
        self.not_checked: list[tuple[str, str]] = []

    def __call__(self, ok, what: str, detail=None, unless: str = "") -> None:
        if unless:
            self.not_checked.append((what, unless))
            return
        if not bool(ok):
            raise AssertionError(f"{what}: does not hold" + ("" if detail is None else f"\n{detail}"))
        self.held.append(what)

    def _repr_markdown_(self) -> str:
        text = f"**{len(self.held)} checks on this data hold**: " + "; ".join(self.held) + "."
        if self.not_checked:
            text += (f" **{len(self.not_checked)} not checked**, because what {'it rests' if len(self.not_checked) == 1 else 'they rest'} "
                     "on did not hold here: " + "; ".join(f"{what} ({why})" for what, why in self.not_checked) + ".")
        return text


# -- at your rate (open-loop load) ------------------------------------------------------------------

#: A rate is below the knee while its p99 latency from arrival stays within this factor of the
#: unloaded p99 (the lowest rate's), or within KNEE_FLOOR_US of it, whichever is larger (doubling a
#: 60 us p99 is noise, not a knee), and no trial left entries queued.
KNEE_FACTOR = 2.0
KNEE_FLOOR_US = 1000.0
LOAD_METHOD = "geometric mean over trials, 95% t interval of the logs"


def _geo(values) -> intervals.Estimate:
    """Geometric mean with the t interval of the logs (latencies are positive and skewed): the
    positive values through ``intervals.mean_ci``, which works on the log scale for positive values
    (this took the logs itself once, so for values above 1 it averaged logs of logs)."""
    return intervals.mean_ci([v for v in values if v is not None and v == v and v > 0])


def load_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per target, configuration and offered rate: the achieved rate, latency from arrival (p50, p99,
    p99.9), service p99 and batch exposure (geometric means over trials with 95% intervals), how many
    trials left entries queued, the generator's lateness and the CPU per entry."""
    rows = []
    if "busy" in df:
        df = df[~df["busy"]]   # the busy-writer cells are not part of the rate sweep (busy_summary)
    for (target, config, rate), g in df.groupby(["target", "config", "rate"], sort=False):
        row = {"target": target, "target_label": g["target_label"].iloc[0],
               "target_durability": g["target_durability"].iloc[0], "config": config,
               "config_label": g["config_label"].iloc[0], "strategy": g["strategy"].iloc[0], "kind": g["kind"].iloc[0],
               "rate": rate, "n": len(g), "achieved_rate": g["achieved_rate"].mean(),
               "saturated_trials": int(g["saturated"].astype(bool).sum()),
               "lateness_us_p99": g["lateness_us_p99"].max(), "cpu_us_per_entry": g["cpu_us_per_entry"].mean(),
               "ci_method": LOAD_METHOD}
        for col in ("latency_us_p50", "latency_us_p99", "latency_us_p999", "service_us_p99", "exposure_ms_max"):
            e = _geo(g[col])
            row[col], row[col + "_low"], row[col + "_high"] = e.mean, e.low, e.high
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(["target", "config", "rate"]).reset_index(drop=True) if len(out) else out


def knees(df: pd.DataFrame, factor: float = KNEE_FACTOR, floor_us: float = KNEE_FLOOR_US) -> pd.DataFrame:
    """Per target and configuration, from a load study's trials: the knee, the highest offered rate up
    to which p99 latency from arrival stays within ``factor`` of the unloaded p99 (the lowest rate's),
    or within ``floor_us`` of it if that is more, with no entries left queued.  Found in each round separately (a round runs every rate once), so
    the knee comes with its spread over rounds: the median round's knee, and the lowest and highest.
    0 means: already past it at the lowest rate measured."""
    import statistics
    rows = []
    if "busy" in df:
        df = df[~df["busy"]]
    for (target, config), g in df.groupby(["target", "config"], sort=False):
        rates = sorted(set(g["rate"]))
        per_round = []
        for _, r in g.groupby("round"):
            p99 = dict(zip(r["rate"], r["latency_us_p99"]))
            sat = dict(zip(r["rate"], r["saturated"].astype(bool)))
            if rates[0] not in p99:
                continue
            knee = 0.0
            for rate in rates:
                if rate not in p99 or sat[rate] or not p99[rate] <= max(factor * p99[rates[0]], p99[rates[0]] + floor_us):
                    break
                knee = rate
            per_round.append(knee)
        if not per_round:
            continue
        median = statistics.median_low(per_round)
        later = [r for r in rates if r > median]
        base = _geo(g.loc[g["rate"] == rates[0], "latency_us_p99"])
        rows.append({"target": target, "target_label": g["target_label"].iloc[0], "config": config,
                     "config_label": g["config_label"].iloc[0], "kind": g["kind"].iloc[0],
                     "unloaded_p99_us": base.mean,
                     "bound_us": max(factor * base.mean, base.mean + floor_us) if base.mean else None,
                     "knee_rate": median, "knee_low": min(per_round), "knee_high": max(per_round),
                     "next_rate": later[0] if later else None, "rounds": len(per_round),
                     "capacity_seen": g["achieved_rate"].max(), "rates": len(rates)})
    out = pd.DataFrame(rows)
    return out.sort_values(["target_label", "config"]).reset_index(drop=True) if len(out) else out


def _window_ms(row) -> tuple[float | None, float | None, str]:
    """What an acknowledgement risks at this rate: (estimate, upper bound, how it is known)."""
    if row["kind"] in ("always", "group"):
        return 0.0, 0.0, "acknowledged after its sync"
    if row["kind"] == "batch":
        return row["exposure_ms_max"], row["exposure_ms_max_high"], "measured worst exposure per trial"
    return None, None, "never synced: the kernel decides (seconds)"


def advise(summ: pd.DataFrame, rate: float, loss_budget_ms: float, p99_budget_ms: float | None = None) -> pd.DataFrame:
    """Per target: among the configurations measured at ``rate`` or the next rate above it, those that
    lose at most ``loss_budget_ms`` of acknowledged entries (the upper bound of the measured window) and
    keep p99 latency from arrival within ``p99_budget_ms`` (its upper bound) without saturating; the one
    with the lowest p99 is the advice.  Every candidate is listed with its evidence and verdict."""
    rows = []
    for target, g in summ.groupby("target", sort=False):
        above = sorted(r for r in set(g["rate"]) if r >= rate)
        if not above:
            rows.append({"target": target, "target_label": g["target_label"].iloc[0], "config": None,
                         "verdict": f"not measured at {rate:,.0f}/s or above (highest: {g['rate'].max():,.0f}/s)"})
            continue
        at = above[0]
        for _, r in g[g["rate"] == at].iterrows():
            w, w_hi, how = _window_ms(r)
            if r["saturated_trials"]:
                verdict = "cannot keep up"
            elif w_hi is None or w_hi > loss_budget_ms:
                verdict = "loses too much"
            elif p99_budget_ms is not None and (r["latency_us_p99_high"] or r["latency_us_p99"]) > p99_budget_ms * 1e3:
                verdict = "too slow"
            else:
                verdict = "meets both"
            rows.append({"target": target, "target_label": r["target_label"], "config": r["config"],
                         "config_label": r["config_label"], "kind": r["kind"], "measured_at": at,
                         "p99_ms": r["latency_us_p99"] / 1e3,
                         "p99_ms_low": (r["latency_us_p99_low"] or r["latency_us_p99"]) / 1e3,
                         "p99_ms_high": (r["latency_us_p99_high"] or r["latency_us_p99"]) / 1e3,
                         "window_ms": w, "window_ms_high": w_hi, "window_source": how,
                         "entries_at_risk": None if w is None else rate * w / 1e3, "verdict": verdict})
    out = pd.DataFrame(rows)
    if len(out) and "p99_ms" in out:
        out["advised"] = False
        for target, g in out[out["verdict"] == "meets both"].groupby("target"):
            out.loc[g["p99_ms"].idxmin(), "advised"] = True
    return out


def advice_lines(adv: pd.DataFrame, rate: float, loss_budget_ms: float) -> list[str]:
    """The advice as sentences, one per target."""
    lines = []
    # the machine's own disks first, then the lab's filesystems, then its emulations
    order = sorted(dict.fromkeys(adv["target"]), key=lambda t: (
        adv.loc[adv["target"] == t, "target_label"].iloc[0].startswith("lab:"),
        "EMULATED" in adv.loc[adv["target"] == t, "target_label"].iloc[0]))
    for target in order:
        g = adv[adv["target"] == target]
        label = g["target_label"].iloc[0]
        if g["config"].isna().all():
            lines.append(f"**{label}**: {g['verdict'].iloc[0]}")
            continue
        best = g[g.get("advised", False) == True]  # noqa: E712
        if best.empty:
            why = "; ".join(f"`{r.config_label}` {r.verdict}" + (f" ({r.window_ms:.1f} ms window)" if r.verdict ==
                                                                  "loses too much" and r.window_ms == r.window_ms
                                                                  and r.window_ms is not None else "")
                            for r in g.itertuples())
            lines.append(f"**{label}**: no strategy measured both keeps up at {rate:,.0f}/s and loses at most "
                         f"{loss_budget_ms:g} ms: {why}")
            continue
        b = best.iloc[0]
        risk = ("loses nothing acknowledged" if b["window_ms"] == 0 else
                f"risks the last {b['window_ms']:.1f} ms (up to {b['window_ms_high']:.1f}), about "
                f"{b['entries_at_risk']:,.0f} entries at a power cut")
        lines.append(f"**{label}** at {rate:,.0f} entries/s, losing at most {loss_budget_ms:g} ms: `{b['config_label']}` "
                     f"answers with p99 {b['p99_ms']:.2f} ms (95% CI {b['p99_ms_low']:.2f}–{b['p99_ms_high']:.2f}, "
                     f"measured at {b['measured_at']:,.0f}/s) and {risk}")
    return lines


#: The rate and the loss budgets the report's index answers for.
DEFAULT_RATE = 2000
DEFAULT_LOSS_BUDGETS_MS = (0, 20)


def at_rate_lines(load_df: pd.DataFrame, rate: float = DEFAULT_RATE,
                  budgets=DEFAULT_LOSS_BUDGETS_MS) -> list[str]:
    """The index's answer at a default rate: the advice for each loss budget, per target."""
    summ = load_summary(load_df)
    out = []
    for budget in budgets:
        out += advice_lines(advise(summ, rate, budget), rate, budget)
    return out


def busy_summary(df: pd.DataFrame) -> pd.DataFrame:
    """When the writer's thread does work between entries: per target and strategy at the busy rate,
    batch's worst exposure and p99 latency from arrival at each amount of work, 0 included (from the
    rate sweep's cell at the same rate)."""
    if "busy" not in df or not df["busy"].any():
        return pd.DataFrame()
    busy = df[df["busy"]]
    rate = busy["rate"].iloc[0]
    base_configs = {c.rsplit("/w", 1)[0] for c in busy["config"]}
    plain = df[~df["busy"] & (df["rate"] == rate) & df["config"].isin(base_configs)]
    rows = []
    for (target, config, work), g in pd.concat([plain, busy]).groupby(["target", "config", "work_us"], sort=False):
        e, lat = _geo(g["exposure_ms_max"]), _geo(g["latency_us_p99"])
        rows.append({"target": target, "target_label": g["target_label"].iloc[0], "strategy": g["strategy"].iloc[0],
                     "kind": g["kind"].iloc[0], "clients": int(g["clients"].iloc[0]), "rate": rate,
                     "work_us": work, "cpu_busy_share": work * 1e-6 * rate, "n": len(g),
                     "exposure_ms_max": e.mean, "exposure_ms_max_low": e.low, "exposure_ms_max_high": e.high,
                     "latency_us_p99": lat.mean, "latency_us_p99_low": lat.low, "latency_us_p99_high": lat.high,
                     "saturated_trials": int(g["saturated"].astype(bool).sum())})
    out = pd.DataFrame(rows)
    return out.sort_values(["target_label", "strategy", "work_us"]).reset_index(drop=True)


# -- real databases ---------------------------------------------------------------------------------

def _med(s: pd.Series) -> float:
    s = pd.to_numeric(s, errors="coerce").dropna()
    return float(s.median()) if len(s) else float("nan")


def _others_per_commit(g: pd.DataFrame) -> pd.Series:
    """Per trial, the device flushes per commit that other processes account for: the flush rate the
    device saw in the quiet window before the trial, over the trial's length, per commit (NaN where
    not measured: no block device, or a dataset from before the quiet window)."""
    if "device_quiet_flushes_per_sec" not in g:
        return pd.Series(float("nan"), index=g.index)
    quiet = pd.to_numeric(g["device_quiet_flushes_per_sec"], errors="coerce")
    commits = pd.to_numeric(g["commits"], errors="coerce").where(lambda c: c > 0)
    return quiet * pd.to_numeric(g["elapsed_s"], errors="coerce") / commits


#: Flushes per commit from other processes (measured in quiet windows) below which the device-wide
#: counter is taken to count our trial alone.
QUIET_FLUSHES_PER_COMMIT = 0.05


def flush_attribution(pred: pd.DataFrame) -> list[str]:
    """Sentences, one per target, on the flushes the device-wide counter saw from other processes
    during the real-database study (``realdb_predictions``' ``*_others_flushes_per_commit``): empty
    where the disk was quiet or nothing was measured."""
    out = []
    if "predicted_others_flushes_per_commit" not in pred:
        return out
    for label, g in pred.groupby("target_label", sort=False):
        o = pd.concat([g["db_others_flushes_per_commit"], g["predicted_others_flushes_per_commit"]]).dropna()
        if len(o) and o.max() >= QUIET_FLUSHES_PER_COMMIT:
            out.append(f"On {label} other processes were flushing the same device: in the quiet window before "
                       f"each trial it saw what adds up to {o.median():.2f} flushes per commit at the median "
                       f"(up to {o.max():.2f}). The device-wide flush counts per commit on this page include "
                       "them; they cannot be told apart from ours, so the flush differences are not attributed.")
    return out


def realdb_predictions(df: pd.DataFrame, settings: dict | None = None) -> pd.DataFrame:
    """Per target and setting: the database's commits/s and its prediction's (geometric means with t
    intervals), the ratio database / prediction paired by round (``intervals.ratio_interval``), and the
    per-commit costs beside each other (medians over trials): device flushes and bytes, CPU (the
    database's clients and server against our writer), commit latency p50.  ``settings``: the
    dataset's notes["settings"] (mapping and promise), carried along."""
    rows = []
    closed = df[df["rate"].fillna(0) == 0] if "rate" in df.columns else df
    for (target, key), g in closed.groupby(["target", "key"], sort=False):
        d, p = g[g["side"] == "db"], g[g["side"] == "prediction"]
        if d.empty or p.empty:
            continue
        r = intervals.ratio_interval(d["commits_per_sec"].tolist(), p["commits_per_sec"].tolist(),
                                     pairs=(d["round"].tolist(), p["round"].tolist()))
        dm, pm = intervals.mean_interval(d["commits_per_sec"].tolist()), intervals.mean_interval(p["commits_per_sec"].tolist())
        db_cpu = (d["client_cpu_us_per_commit"].fillna(0) + d["server_cpu_us_per_commit"].fillna(0))
        s = (settings or {}).get(key, {})
        rows.append({
            "target": target, "target_label": g["target_label"].iloc[0], "key": key, "db": d["db"].iloc[0],
            "setting": d["setting"].iloc[0], "strategy": d["strategy"].iloc[0], "clients": int(d["clients"].iloc[0]),
            "writers": int(p["clients"].iloc[0]), "rounds": int(min(d["round"].nunique(), p["round"].nunique())),
            "db_commits_per_sec": dm.estimate, "db_low": dm.low, "db_high": dm.high,
            "predicted_per_sec": pm.estimate, "predicted_low": pm.low, "predicted_high": pm.high,
            "ratio": r.estimate, "ratio_low": r.low, "ratio_high": r.high,
            "db_p50_us": _med(d["latency_us_p50"]), "predicted_p50_us": _med(p["latency_us_p50"]),
            "db_flushes_per_commit": _med(d["device_flushes_per_commit"]),
            "predicted_flushes_per_commit": _med(p["device_flushes_per_commit"]),
            "db_others_flushes_per_commit": _med(_others_per_commit(d)),
            "predicted_others_flushes_per_commit": _med(_others_per_commit(p)),
            "db_bytes_per_commit": _med(d["device_bytes_per_commit"]),
            "predicted_bytes_per_commit": _med(p["device_bytes_per_commit"]),
            "db_cpu_us_per_commit": _med(db_cpu), "predicted_cpu_us_per_commit": _med(p["client_cpu_us_per_commit"]),
            "db_client_cpu_us_per_commit": _med(d["client_cpu_us_per_commit"]),
            "db_server_cpu_us_per_commit": _med(d["server_cpu_us_per_commit"]),
            "server_write_calls_per_commit": _med(d["server_write_calls_per_commit"]),
            "mapping": s.get("mapping", ""), "promise": s.get("promise", "")})
    return pd.DataFrame(rows)


def realdb_at_rate(df: pd.DataFrame) -> pd.DataFrame:
    """The open-loop cells (a fixed arrival rate): per target, setting and rate, each side's commit
    latency from arrival (p50 and p99, medians over trials), the p99 ratio database / prediction
    paired by round, and in how many trials each side kept up."""
    rows = []
    if "rate" not in df.columns:
        return pd.DataFrame(rows)
    for (target, key, rate), g in df[df["rate"].fillna(0) > 0].groupby(["target", "key", "rate"], sort=False):
        d, p = g[g["side"] == "db"], g[g["side"] == "prediction"]
        if d.empty or p.empty:
            continue
        r = intervals.ratio_interval(d["latency_us_p99"].tolist(), p["latency_us_p99"].tolist(),
                                     pairs=(d["round"].tolist(), p["round"].tolist()))
        rows.append({"target_label": g["target_label"].iloc[0], "key": key, "strategy": d["strategy"].iloc[0],
                     "rate": rate, "trials": len(d), "db_kept_up": int((~d["saturated"].fillna(True).astype(bool)).sum()),
                     "predicted_kept_up": int((~p["saturated"].fillna(True).astype(bool)).sum()),
                     "db_p50_ms": _med(d["latency_us_p50"]) / 1e3, "db_p99_ms": _med(d["latency_us_p99"]) / 1e3,
                     "predicted_p50_ms": _med(p["latency_us_p50"]) / 1e3,
                     "predicted_p99_ms": _med(p["latency_us_p99"]) / 1e3,
                     "p99_ratio": r.estimate, "p99_ratio_low": r.low, "p99_ratio_high": r.high})
    return pd.DataFrame(rows)


def prediction_why(row) -> str:
    """Where a database and its prediction differ per commit, the larger differences first, computed
    from one row of ``realdb_predictions``: syncs (device flushes), bytes reaching the device, CPU."""
    parts = []

    def ratio(a, b):
        return a / b if np.isfinite(a) and np.isfinite(b) and b > 0 else float("nan")

    f = ratio(row["db_flushes_per_commit"], row["predicted_flushes_per_commit"])
    others = np.nanmax([row.get("db_others_flushes_per_commit", np.nan),
                        row.get("predicted_others_flushes_per_commit", np.nan), 0.0])
    if others >= QUIET_FLUSHES_PER_COMMIT:   # the device-wide counter counted other processes too
        parts.append((0.0, f"device flushes not compared ({others:.2f} per commit came from other processes)"))
    elif np.isfinite(row["db_flushes_per_commit"]) and np.isfinite(row["predicted_flushes_per_commit"]) and \
            max(row["db_flushes_per_commit"], row["predicted_flushes_per_commit"]) >= 0.05:
        parts.append((abs(np.log(f)) if np.isfinite(f) and f > 0 else 9.0,
                      f"device flushes per commit {row['db_flushes_per_commit']:.2f} against "
                      f"{row['predicted_flushes_per_commit']:.2f}"))
    b = ratio(row["db_bytes_per_commit"], row["predicted_bytes_per_commit"])
    if np.isfinite(b) and b > 0 and max(row["db_bytes_per_commit"], row["predicted_bytes_per_commit"]) >= 512:
        parts.append((abs(np.log(b)), f"bytes written to the device per commit {row['db_bytes_per_commit']:,.0f} "
                                      f"against {row['predicted_bytes_per_commit']:,.0f}"))
    c = ratio(row["db_cpu_us_per_commit"], row["predicted_cpu_us_per_commit"])
    if np.isfinite(c) and c > 0:
        server = row.get("db_server_cpu_us_per_commit", float("nan"))
        who = (f"{row['db_client_cpu_us_per_commit']:,.1f} in the clients + {server:,.1f} in the server"
               if np.isfinite(server) else "in the client process, which is the database")
        parts.append((abs(np.log(c)), f"CPU per commit {row['db_cpu_us_per_commit']:,.1f} µs ({who}) "
                                      f"against {row['predicted_cpu_us_per_commit']:,.1f} µs in our writer"))
    parts.sort(key=lambda x: -x[0])
    return "; ".join(p for _, p in parts)


def realdb_losses(cuts: pd.DataFrame) -> pd.DataFrame:
    """Per setting: the cuts that ran, how many the database reopened after, how many lost an
    acknowledged commit, the commits acknowledged and lost, the measured loss window (the age of the
    oldest lost commit: median and maximum) against the documented promise, the 95% upper bounds
    where nothing was lost, and the verdict: ``kept its promise``, ``broke its promise`` (a loss older
    than promised, or any loss where the promise is none), ``no promise in time``, ``did not reopen``."""
    rows = []
    for key, g in cuts.groupby("key", sort=False):
        ok = g[g["error"] == ""]
        opened = ok[ok["opened"]]
        lost = opened[opened["lost_acked"].fillna(0) > 0]
        promise = ok["promise_ms"].iloc[0] if len(ok) else float("nan")
        worst = float(lost["oldest_lost_age_ms"].max()) if len(lost) else 0.0
        if len(opened) < len(ok):
            verdict = "did not reopen"
        elif pd.isna(promise):
            verdict = "no promise in time"
        elif (promise == 0 and len(lost)) or worst > promise:
            verdict = "broke its promise"
        else:
            verdict = "kept its promise"
        acked = int(opened["acked"].sum())
        rows.append({"key": key, "db": g["db"].iloc[0], "setting": g["setting"].iloc[0], "cuts": len(ok),
                     "failed": int((g["error"] != "").sum()), "reopened": len(opened), "cuts_losing": len(lost),
                     "acked": acked, "lost_acked": int(opened["lost_acked"].fillna(0).sum()),
                     "window_median_ms": float(lost["oldest_lost_age_ms"].median()) if len(lost) else 0.0,
                     "window_max_ms": worst, "promise_ms": promise,
                     "cuts_losing_upper95": intervals.zero_events_upper(len(opened)) if not len(lost) else float("nan"),
                     "lost_acked_upper95": intervals.zero_events_upper(acked) if not len(lost) else float("nan"),
                     "verdict": verdict})
    return pd.DataFrame(rows)


# -- a fleet: hosts side by side ---------------------------------------------------------------------

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
        e = _geo(g[metric])
        rows.append({"role": role, "config_label": config, "host": host, "n": e.n, "mean": e.mean,
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
