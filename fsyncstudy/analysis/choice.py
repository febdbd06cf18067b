"""The one computed answer: per durable target and per writer count, the fastest configuration that
loses nothing acknowledged, against ``always`` with the same writers, and whether the data can tell it
from the runner-up.  The report's index, notebook 01 and ``python -m fsyncstudy answer`` all read it.

Rules (each row carries the premises it rests on, so a page can print them and a test can check them):

- **Like with like.** The candidates at W writers are the configurations that acknowledge only after a
  covering sync (``acks_durable``: ``always`` and ``group_<N>ms``) run with exactly W writers, whatever
  their preallocation and sync method (those are part of the choice).  The baseline is ``always``
  (append, fdatasync) with the same W writers, each syncing its own entries; a dataset that has no such
  run (made before 2026-12-07) falls back to ``always`` with one writer, and the row says so
  (``baseline_writers`` differs from ``writers``, ``like_with_like`` False).
- **Ratios are paired by round** (every configuration ran once in each shuffled round): the geometric
  mean of the per-round ratios with the t interval of the log ratios.
- **Resolved** means the choice is faster than every other candidate at W writers, each paired ratio's
  interval above 1 at a simultaneous level (Bonferroni over the k - 1 comparisons, so picking the
  largest of k point estimates does not make a tie look like a win).  Otherwise the row names the
  candidates the data cannot tell from the choice (``tied``) and is not resolved.
- **What bounds it**: ``cpu`` when most of the choice's trials were CPU-bound (the writer's process was
  on a CPU, or waiting for one, nearly all the time), ``fuse-daemon`` when in most the writer and a lab
  FUSE daemon were on a CPU together nearly all the time (``trial.bound_of``; the daemon's CPU time is
  measured beside ours, ``daemon_cpu_share``), else
  ``storage``; a FUSE target in a dataset from before that measurement says ``fuse-daemon or storage``.
"""
from __future__ import annotations

import pandas as pd

from .. import intervals
from ..strategies import KINDS
from .sweep import display_label, target_rank

#: The confidence of every interval in the answer (simultaneous over a row's comparisons).
LEVEL = 0.95
#: The JSON rows' fields, in order (scripts rely on these names).
FIELDS = ("target", "target_label", "writers", "choice", "choice_label", "ops_per_sec", "ops_low", "ops_high",
          "baseline", "baseline_writers", "like_with_like", "ratio", "ratio_low", "ratio_high", "n",
          "candidates", "resolved", "runner_up", "runner_up_ratio", "runner_up_low", "runner_up_high", "tied",
          "bound", "level")


def _baseline(writers: int) -> str:
    return f"always/w{writers}/append/fdatasync"


def _baseline_for(g: pd.DataFrame, writers: int) -> str:
    """``always`` with ``writers`` where the target's trials have it, else with one (the row says so)."""
    return _baseline(writers) if _baseline(writers) in set(g["config"]) else _baseline(1)


def _ranked(cands: pd.DataFrame, level: float) -> pd.Series:
    """Each configuration's geometric-mean ops/s, fastest first: the estimate page 03's frontier and every
    ops/s interval here use, so one estimate gives one order."""
    return cands.groupby("config")["ops_per_sec"].apply(
        lambda v: intervals.mean_interval(v.tolist(), level=level).estimate).sort_values(ascending=False)


def target_order(df: pd.DataFrame) -> list[str]:
    """The machine's own disks first, then the lab's filesystems, then its emulations."""
    labels = df.drop_duplicates("target").set_index("target")["target_label"]
    return sorted(labels.index, key=lambda t: (*target_rank(labels[t]), labels[t]))


def _paired(g: pd.DataFrame, num: str, den: str, level: float) -> intervals.Interval:
    a, b = g[g["config"] == num], g[g["config"] == den]
    if a.empty or b.empty:
        return intervals.Interval(intervals.NAN, intervals.NAN, intervals.NAN, "a side was not measured here", 0)
    if num == den:
        return intervals.Interval(1.0, 1.0, 1.0, "the baseline itself", len(a))
    return intervals.ratio_interval(a["ops_per_sec"].tolist(), b["ops_per_sec"].tolist(),
                                    pairs=(a["round"].tolist(), b["round"].tolist()), level=level)


def _bound(rows: pd.DataFrame) -> str:
    """What most of the choice's trials waited for: ``cpu``, ``fuse-daemon`` (measured: the lab's FUSE
    daemon busy the whole trial), ``storage``; on a FUSE target whose daemon was not measured (datasets
    before 2026-12-07) a trial that is not CPU-bound is ``fuse-daemon or storage``."""
    if not len(rows) or "bound" not in rows:
        return ""
    top = rows["bound"].value_counts()
    if top.get("cpu", 0) > len(rows) / 2:
        return "cpu"
    if top.get("fuse-daemon", 0) > len(rows) / 2:
        return "fuse-daemon"
    fuse = rows["target_fstype"].astype(str).str.startswith("fuse").any()
    measured = "daemon_cpu_share" in rows and rows["daemon_cpu_share"].notna().any()
    return "fuse-daemon or storage" if fuse and not measured else "storage"


def answer(df: pd.DataFrame, level: float = LEVEL) -> list[dict]:
    """One row per durable target and writer count measured (see the module's rules); ``df`` is a sweep's
    trials (``sweep.load``)."""
    durable_kinds = [k for k, row in KINDS.items() if row.acks_durable]
    durable = df[(df["target_durability"] != "volatile") & df["kind"].isin(durable_kinds)]
    out = []
    for target in target_order(durable):
        g = durable[durable["target"] == target]
        for w in sorted(int(x) for x in g["writers"].unique()):
            cands = g[g["writers"] == w]
            means = _ranked(cands, level)
            choice = means.index[0]
            base = _baseline_for(g, w)
            if base not in set(g["config"]):
                continue
            mine = cands[cands["config"] == choice]
            ops = intervals.mean_interval(mine["ops_per_sec"].tolist(), level=level)
            ratio = _paired(g, choice, base, level)
            others = list(means.index[1:])
            simultaneous = 1 - (1 - level) / max(1, len(others))
            against = {o: _paired(cands, choice, o, simultaneous) for o in others}
            tied = [o for o, r in against.items() if not (r.has_interval() and r.low > 1.0)]
            runner = others[0] if others else None
            ru = against[runner] if runner else intervals.Interval(intervals.NAN, intervals.NAN, intervals.NAN, "", 0)
            label = dict(zip(cands["config"], cands["config_label"]))
            out.append({
                "target": target, "target_label": display_label(g["target_label"].iloc[0]), "writers": w,
                "choice": choice, "choice_label": label[choice],
                "ops_per_sec": ops.estimate, "ops_low": ops.low, "ops_high": ops.high,
                "baseline": base, "baseline_writers": int(base.split("/w")[1].split("/")[0]),
                "like_with_like": base == _baseline(w),
                "ratio": ratio.estimate, "ratio_low": ratio.low, "ratio_high": ratio.high, "n": ratio.n,
                "candidates": len(means), "resolved": not tied,
                "runner_up": label[runner] if runner else None,
                "runner_up_ratio": ru.estimate, "runner_up_low": ru.low, "runner_up_high": ru.high,
                "tied": [label[o] for o in tied], "bound": _bound(mine), "level": level,
            })
    return out


def answer_json(rows: list[dict]) -> list[dict]:
    """The rows with None for NaN (JSON has no NaN), in ``FIELDS`` order."""
    return [{k: (intervals.none_if_nan(r[k]) if isinstance(r[k], float) else r[k]) for k in FIELDS} for r in rows]


def answer_lines(rows: list[dict]) -> list[str]:
    """One sentence per row, with its premises: writers, baseline, n, level, what bounds it."""
    lines = []
    for r in rows:
        w = r["writers"]
        who = "one writer" if w == 1 else f"{w} concurrent writers"
        base = ("`always` with the same writers" if r["like_with_like"] else
                f"`always` with {r['baseline_writers']} writer (this dataset has no `always` with {w}: "
                "the writers differ)")
        text = (f"**{r['target_label']}**, {who}: the fastest choice that loses nothing acknowledged is "
                f"`{r['choice_label']}`, {r['ops_per_sec']:,.0f} ops/s")
        if r["choice"] == r["baseline"]:
            text += " (the baseline itself)"
        elif r["ratio"] == r["ratio"]:
            text += f", {_ratio(r['ratio'], r['ratio_low'], r['ratio_high'])}× {base}"
        if r["candidates"] == 1:
            text += "; it was the only candidate"
        elif r["resolved"]:
            text += (f"; ahead of every other candidate (runner-up `{r['runner_up']}`: "
                     f"{_ratio(r['runner_up_ratio'], r['runner_up_low'], r['runner_up_high'])}×, "
                     f"simultaneous over {r['candidates'] - 1})")
        else:
            text += (f"; **not resolved**: the data cannot tell it from {', '.join(f'`{t}`' for t in r['tied'])} "
                     f"(simultaneous intervals over {r['candidates'] - 1} comparisons include 1)")
        lines.append(text + f" [n = {r['n']} rounds, {r['level']:.0%} intervals; bound: {r['bound']}]")
    return lines


def _ratio(x: float, lo: float, hi: float) -> str:
    if lo == lo and hi == hi:
        return f"{x:.2f} ({lo:.2f}–{hi:.2f})"
    return f"{x:.2f}"


def recommendation_part(r: dict) -> str:
    """One row of the answer as a clause: with W writers, what to use, by how much against what, resolved or not."""
    who = "one writer" if r["writers"] == 1 else f"{r['writers']} writers"
    if r["choice"] == r["baseline"]:
        how = "the fastest measured"
    else:
        base = "`always`" + ("" if r["baseline_writers"] == 1 else f" with {r['baseline_writers']} writers")
        how = f"{r['ratio']:.2f}× {base}"
        if r["ratio_low"] == r["ratio_low"]:
            how += f", 95% CI {r['ratio_low']:.2f}–{r['ratio_high']:.2f}"
    if not r["resolved"]:
        how += f"; not resolved against {', '.join(f'`{t}`' for t in r['tied'])}"
    return f"with {who}, `{r['choice_label']}` ({how})"


def recommendation_lines(rows: list[dict]) -> list[str]:
    """One recommendation per target (loss budget: nothing acknowledged), for each writer count measured,
    the machine's own disks first: what to use, by how much, against what, and whether it is resolved."""
    lines = []
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        parts = [recommendation_part(r) for r in mine]
        text = f"**{mine[0]['target_label']}**, to lose nothing acknowledged: " + "; ".join(parts)
        unlike = sorted({r["writers"] for r in mine if not r["like_with_like"]})
        if unlike:
            text += (f". The writers differ at {', '.join(map(str, unlike))} writers: this dataset has no `always` with "
                     "as many, so those ratios are against `always` with one writer")
        lines.append(text)
    return lines


def answer_table(rows: list[dict]) -> pd.DataFrame:
    """The table behind the recommendations: one row per target and writer count."""
    def ci(x, lo, hi, fmt):
        return (fmt.format(x) + (f" [{fmt.format(lo)}, {fmt.format(hi)}]" if lo == lo and hi == hi else "")) if x == x else ""
    return pd.DataFrame([{
        "target": r["target_label"], "writers": r["writers"], "fastest that loses nothing": r["choice_label"],
        "ops/s [95% CI]": ci(r["ops_per_sec"], r["ops_low"], r["ops_high"], "{:,.0f}"),
        "× baseline [95% CI]": ("1 (the baseline)" if r["choice"] == r["baseline"]
                                else ci(r["ratio"], r["ratio_low"], r["ratio_high"], "{:.2f}")),
        "baseline": f"always, {r['baseline_writers']} writer{'s' if r['baseline_writers'] > 1 else ''}",
        "resolved": "yes" if r["resolved"] else "no: " + ", ".join(r["tied"]),
        "bound": r["bound"], "rounds": r["n"]} for r in rows])


def group_against_always(df: pd.DataFrame, level: float = LEVEL) -> list[dict]:
    """Per target and writer count where group commit ran: its fastest configuration (geometric mean)
    against ``always`` with the same writers, paired by round (``always`` with one writer, said in
    ``like_with_like``, where the dataset has no ``always`` with as many)."""
    out = []
    for target in target_order(df):
        g = df[df["target"] == target]
        grp = g[g["kind"] == "group"]
        for w in sorted(int(x) for x in grp["writers"].unique()):
            cands = grp[grp["writers"] == w]
            means = _ranked(cands, level)
            best = means.index[0]
            base = _baseline_for(g, w)
            r = _paired(g, best, base, level)
            out.append({"target": target, "target_label": g["target_label"].iloc[0], "writers": w, "config": best,
                        "config_label": cands.loc[cands["config"] == best, "config_label"].iloc[0],
                        "ops_per_sec": float(means[best]), "configurations": len(means),
                        "baseline_writers": int(base.split("/w")[1].split("/")[0]), "like_with_like": base == _baseline(w),
                        "ratio": r.estimate, "ratio_low": r.low, "ratio_high": r.high, "n": r.n, "level": level})
    return out
