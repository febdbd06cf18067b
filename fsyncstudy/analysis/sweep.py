"""A sweep dataset's tables (notebooks 01-03 and the report's index): where it was measured, the
task's three strategies, the interval curves, preallocation, and the durability/throughput frontier."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats
from ..dataset import provenance_text
from ..strategies import parse
from ..targets import strip_verdict


BASELINE = "always/w1/append/fdatasync"
TASK = ["always/w1/append/fdatasync", "batch_10ms/w1/append/fdatasync", "none/w1/append/fdatasync"]


def machine_table(meta: dict) -> pd.DataFrame:
    """Where and how a sweep dataset was measured, as a two-column table."""
    env, plan = meta["environment"], meta["plan"]
    rows = [("host", env["host"]), ("kernel", env["kernel"]), ("CPU", f"{env['cpu']} ({env['cores']} cores)"),
            ("memory", f"{(env.get('memory_bytes') or 0) / 2**30:.0f} GiB"), ("Python", env["versions"]["python"]),
            ("fsyncstudy", f"{env['versions']['fsyncstudy']} ({provenance_text(env.get('git'))})"),
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
    from ..dataset import git_state
    return provenance_text(git_state()).removeprefix("git ")


def targets_table(meta: dict) -> pd.DataFrame:
    """Every target of a dataset with its filesystem, device and durability verdict; skipped ones too."""
    rows = []
    for path, t in meta["environment"]["targets"].items():
        rows.append({"target": t.get("label") or path, "kind": target_nature(t), "directory": path, "filesystem": t["fstype"],
                     "device": t.get("block_device") or t["source"], "rotational": t.get("rotational"),
                     "write cache": t.get("write_cache"), "verdict": t["durability"], "why": t["reason"]})
    for name, reason in (meta["notes"].get("skipped_targets") or {}).items():
        rows.append({"target": name, "kind": "", "directory": "", "filesystem": "", "device": "", "rotational": None,
                     "write cache": None, "verdict": "skipped", "why": reason})
    return pd.DataFrame(rows)


def target_nature(t: dict) -> str:
    """What a target is, from its description: ``device`` (a filesystem on a real block device), ``nested``
    (a filesystem on a loop device whose image is a file on the host's filesystem: a sync is a guest journal
    commit plus a sync of that file), ``fuse`` (the lab's FUSE filesystem in Python over a host directory:
    its daemon works in every call), ``emulated`` (FUSE that sleeps instead of syncing, to imitate a device),
    or ``memory`` (tmpfs: a sync does nothing)."""
    if t.get("emulated"):
        return "emulated"
    if str(t.get("fstype", "")).startswith("fuse"):
        return "fuse"
    if t.get("loop_backing_file"):
        return "nested"
    if t.get("fstype") in ("tmpfs", "ramfs"):
        return "memory"
    return "device"


def targets_caveat(meta: dict) -> str:
    """A sentence for wherever targets are ranked or their ratios set side by side: which are nested, FUSE or
    emulated, and the conclusion the data allow; '' when every target is a device (or memory)."""
    kinds: dict[str, list[str]] = {}
    for path, t in meta["environment"]["targets"].items():
        kinds.setdefault(target_nature(t), []).append(t.get("lab_target") or display_label(t.get("label") or path))
    parts = []
    if kinds.get("nested"):
        parts.append(f"{', '.join(kinds['nested'])} {'is' if len(kinds['nested']) == 1 else 'are'} nested (a filesystem on a loop device whose image is a file on "
                     "the host's filesystem: each sync is a guest journal commit plus a sync of that file on the host)")
    if kinds.get("fuse"):
        parts.append(f"{', '.join(kinds['fuse'])} {'is' if len(kinds['fuse']) == 1 else 'are'} FUSE (a Python daemon "
                     "over a host directory works in every call)")
    if kinds.get("emulated"):
        parts.append(f"{', '.join(kinds['emulated'])} {'emulates' if len(kinds['emulated']) == 1 else 'emulate'} a device by sleeping in every sync (FUSE, no device)")
    if not parts:
        return ""
    return ("Of these targets, " + "; ".join(parts) + ". Where they are ranked or their ratios set beside the host "
            "disk's, the ranking is the lab's layering, not the filesystems': compare filesystems only among targets "
            "of one kind, and the host disk only with itself.")


def target_rank(label: str) -> tuple[bool, bool]:
    """Where a target goes in every per-target answer: the machine's own disks first, then the lab's
    filesystems, then its emulations (a sort key of its label)."""
    return label.startswith("lab:"), "EMULATED" in label


def display_label(label: str) -> str:
    """A target's label without a durability verdict (older datasets stored one in it)."""
    return strip_verdict(label)


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


def plain_path(frame: pd.DataFrame) -> pd.Series:
    """Rows of the plain write path: fdatasync after per-entry writes to one file (a frame without the
    write path's columns, from before they existed, is all plain)."""
    from ..trial import PATH_COLUMNS
    mask = pd.Series(True, index=frame.index)
    for col, plain in PATH_COLUMNS.items():
        if col in frame:
            mask &= frame[col].fillna(plain) == plain
    return mask


def interval_curves(summ: pd.DataFrame, metric: str = "ops_per_sec") -> pd.DataFrame:
    """batch_<N>ms and group_<N>ms rows of one metric, with the interval as a number and a family name
    (the plain write path: the write paths have a page of their own)."""
    w = stats.wide(summ, metric)
    w = w[w["kind"].isin(["batch", "group"]) & (w["prealloc"] == "append") & plain_path(w)].copy()
    w["family"] = np.where(w["kind"] == "batch", "batch (1 writer)",
                           "group commit (" + w["writers"].astype(int).astype(str) + " writers)")
    return w.sort_values(["target", "family", "interval_ms"]).reset_index(drop=True)


def reference_rows(summ: pd.DataFrame, metric: str = "ops_per_sec") -> pd.DataFrame:
    w = stats.wide(summ, metric)
    return w[w["config"].isin(["always/w1/append/fdatasync", "none/w1/append/fdatasync"])].reset_index(drop=True)


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


def writeback_applies(fstype: str, durability: str) -> bool:
    """Whether the kernel's periodic writeback bounds what ``none`` can lose here: not on a volatile
    target (nothing is ever durable) nor on the lab's FUSE targets (their daemon keeps unsynced data
    in its own cache until a sync, so a power cut loses all of it, however old)."""
    return durability != "volatile" and str(fstype) not in ("tmpfs", "ramfs") and not str(fstype).startswith("fuse")


#: Where the crash experiment's power cuts ran: its loss windows belong on this target's panel only.
CRASH_TARGET = "lab:powercut"


def _writers(config: str) -> int:
    """The writers of a configuration key (``strategy/wN/prealloc/method``)."""
    part = config.split("/")[1] if config.count("/") >= 1 else "w1"
    return int(part[1:]) if part.startswith("w") and part[1:].isdigit() else 1


def frontier_points(summ: pd.DataFrame, df: pd.DataFrame, crash: pd.DataFrame | None = None,
                    crash_target: str = CRASH_TARGET) -> pd.DataFrame:
    """One point per (target, configuration): ops/sec with CI, nominal and measured loss window.

    The measured window is the geometric mean over trials of each trial's largest exposure (its
    arithmetic mean where a trial saw 0).  ``none`` is never synced: where the kernel's writeback
    applies (``writeback_applies``) its window is that bound (dirty_expire + dirty_writeback,
    ``window_source = "kernel bound"``); on a FUSE target nothing writes back (``"unbounded"``, an
    infinite window); on a volatile target every configuration loses everything at a power cut
    (``"volatile"``, infinite).  ``pareto``: on the frontier of the estimates among the configurations
    with the same writers (``writers``: one frontier per writer count, like with like); ``pareto_maybe``:
    not beaten with confidence (``stats.pareto_front_uncertain``), within the same writers.  ``crash_window_ms``: the p99 loss
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
                     "config_label": r["config_label"], "kind": r["kind"], "writers": _writers(key[1]),
                     "target_durability": r["target_durability"],
                     "target_fstype": fstype,
                     "ops_per_sec": r["mean"], "ops_low": r["t_low"], "ops_high": r["t_high"], "n": int(r["n"]),
                     "nominal_window_ms": (bound_ms if src == "kernel bound" else np.inf) if pd.isna(nominal) else nominal,
                     "loss_window_ms": measured, "window_low": lo, "window_high": hi, "window_source": src})
    pts = pd.DataFrame(rows)
    pts["crash_window_ms"] = np.nan
    if crash is not None and len(crash):
        # the plain path's cuts: the configurations crossed are the plain path's (w1/append/fdatasync)
        plain = crash["path"] == "" if "path" in crash else True
        power = crash[(crash["kind"] == "power") & plain].set_index("strategy")["window_p99_ms"]
        on = ((pts["target"] == crash_target) | (pts["target_label"] == crash_target)) & (pts["kind"] != "none") \
            & pts["config"].str.endswith("/w1/append/fdatasync")
        pts.loc[on, "crash_window_ms"] = [power.get(c.split("/")[0], np.nan) for c in pts.loc[on, "config"]]
    pts["pareto"] = False
    pts["pareto_maybe"] = False
    # like with like: a frontier per writer count (16 writers sharing syncs are not one writer's option)
    for _, g in pts.groupby(["target", "writers"]):
        pts.loc[g.index, "pareto"] = stats.pareto_front(g, "ops_per_sec", "loss_window_ms")
        pts.loc[g.index, "pareto_maybe"] = stats.pareto_front_uncertain(g)
    return pts
