"""Sentences and the notebooks' checks: numbers formatted with the precision they deserve, each
topic's tables turned into the sentences the notebooks and the report's index print, and ``Checks``,
the invariants a notebook asserts.  The topic modules compute; this one words what they computed."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..trial import CPU_BOUND_SHARE
from .load import DEFAULT_LOSS_BUDGETS_MS, DEFAULT_RATE, advise
from .realdb import QUIET_FLUSHES_PER_COMMIT
from .sweep import target_rank
from .tworuns import ceiling_ratios


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


CPU_SHARE_TEXT = f"{CPU_BOUND_SHARE:.0%}"


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


def writeback_phrase(fstype: str, durability: str, bound_s: float) -> str:
    """What bounds an unsynced entry's exposure on this target, in words."""
    if durability == "volatile" or str(fstype) in ("tmpfs", "ramfs"):
        return "nothing there ever reaches durable storage"
    if str(fstype).startswith("fuse"):
        return "this FUSE target writes nothing back before a sync, so a power cut loses every unsynced entry"
    return f"the kernel writes back after about {bound_s:.0f} s"


def ceiling_text(df: pd.DataFrame, ceiling: pd.DataFrame, target: str, configs: list[str], source: str) -> str:
    """A computed sentence: fio's no-sync write rate on this target (``write_ceiling``, from the
    comparison dataset ``source``), what our own no-sync loop did against it in the same pair (same
    records and preallocation), and where these configurations of the sweep reach against it (another
    run, an appending log: said so); '' when the comparison did not measure this target."""
    ratios = ceiling_ratios(df, ceiling, target, configs)
    if not ratios:
        return ""
    c = ceiling.loc[df.loc[df["target"] == target, "target_label"].iloc[0]]
    lo = f"{c['low']:,.0f}–{c['high']:,.0f}" if np.isfinite(c["low"]) else "no interval"
    reach = " and ".join(f"`{k.split('/')[0]}` {ratio_text(r.estimate, r.low, r.high)}" for k, r in ratios.items())
    text = (f"fio writing the same {int(c['block_bytes'])}-byte records without syncing (a C loop, to a file "
            f"preallocated with {c['prealloc']}) reached {c['ops_per_sec']:,.0f} ops/s on this target (95% CI {lo}, "
            f"{int(c['rounds'])} rounds of the comparison run `{source}`)")
    if "ours_ratio" in c and c["ours_ratio"] == c["ours_ratio"]:
        text += (f"; our own no-sync loop in the same pair, same records and file, reached "
                 f"{ratio_text(c['ours_ratio'], c['ours_low'], c['ours_high'])} of it, so it is a reference rate, not "
                 "a ceiling")
    return text + (f". This sweep's {reach} of fio's rate (another run, appending to a growing file, not "
                   "preallocated: not like with like).")


def _ci(e, fmt) -> str:
    return fmt(e.estimate) + ("" if not e.has_interval() else f" (95% CI {fmt(e.low)}–{fmt(e.high)})")


def window_text(r) -> str:
    """An advice row's loss column as a clause: the largest exposure measured at the rate, with the work
    per entry it was measured with, the idle writer's beside it, over how many trials, and what that is not."""
    work = r.get("window_work_us")
    text = f"the largest exposure measured at {r['measured_at']:,.0f}/s was {r['window_ms']:.1f} ms"
    if work:
        text += f", with {work:g} µs of work an entry in the writer"
        if r.get("window_idle_ms") is not None and r["window_idle_ms"] == r["window_idle_ms"]:
            text += f" ({r['window_idle_ms']:.1f} ms with an idle writer)"
    else:
        text += " with an idle writer" + ("" if r.get("window_busy_ms") is not None and r["window_busy_ms"] == r["window_busy_ms"]
                                          else " (no busy writer was measured at this rate)")
    return (text + f", over {int(r['window_trials'])} trials (the most seen, not a bound: more trials may see more); "
            f"about {r['entries_at_risk']:,.0f} entries at that rate")


def _why_not(r) -> str:
    """One candidate's verdict, with its window where that is what ruled it out."""
    w = getattr(r, "window_ms", None)
    if r.verdict != "loses too much" or w is None or w != w:
        return f"`{r.config_label}` {r.verdict}"
    work = getattr(r, "window_work_us", None)
    return (f"`{r.config_label}` {r.verdict} ({w:.1f} ms window" +
            (f", with {work:g} µs of work an entry" if work and work == work else "") + ")")


def _one_writer_clause(g: pd.DataFrame) -> str:
    """For advice that needs several writers: what a service with one writer gets on the same target."""
    one = g[g["writers"] == 1]
    meets = one[one["verdict"] == "meets both"]
    if len(meets):
        r = meets.loc[meets["p99_ms"].idxmin()]
        return (f"with one writer, `{r['config_label']}` meets both budgets (p99 {r['p99_ms']:.2f} ms, 95% CI "
                f"{r['p99_ms_low']:.2f}–{r['p99_ms_high']:.2f})")
    return ("with one writer, none measured meets both budgets: " +
            "; ".join(_why_not(r) for r in one.itertuples()))


def advice_lines(adv: pd.DataFrame, rate: float, loss_budget_ms: float) -> list[str]:
    """The advice as sentences, one per target."""
    lines = []
    # the machine's own disks first, then the lab's filesystems, then its emulations
    order = sorted(dict.fromkeys(adv["target"]),
                   key=lambda t: target_rank(adv.loc[adv["target"] == t, "target_label"].iloc[0]))
    for target in order:
        g = adv[adv["target"] == target]
        label = g["target_label"].iloc[0]
        if g["config"].isna().all():
            lines.append(f"**{label}**: {g['verdict'].iloc[0]}")
            continue
        best = g[g.get("advised", False) == True]  # noqa: E712
        if best.empty:
            why = "; ".join(_why_not(r) for r in g.itertuples())
            lines.append(f"**{label}**: no strategy measured both keeps up at {rate:,.0f}/s and loses at most "
                         f"{loss_budget_ms:g} ms: {why}")
            continue
        b = best.iloc[0]
        if b["window_ms"] == 0:
            risk = "loses nothing acknowledged: it acknowledges only after its sync"
            n_cuts = b.get("power_cuts", 0)
            # the cuts are of this strategy on this write path (``power_cut_evidence``): the sentence names both
            cut = f"`{b['strategy']}`" + (f" with {b['path']}" if b.get("path", "") else "")
            if n_cuts and n_cuts == n_cuts:
                risk += (f"; {n_cuts:,.0f} power cuts of {cut} on {b['power_cut_target']} lost none "
                         f"(95% upper bound: {b['power_cuts_losing_upper95']:.1%} of cuts)")
            elif "power_cuts" in b:
                risk += f" (the crash data has no power cut of {cut} to show it)"
        else:
            risk = f"leaves acknowledged entries unsynced: {window_text(b)}"
        who = f" if your service has at least {b['writers']} concurrent writers" if b["writers"] > 1 else ""
        text = (f"**{label}** at {rate:,.0f} entries/s, losing at most {loss_budget_ms:g} ms: `{b['config_label']}`{who} "
                f"answers with p99 {b['p99_ms']:.2f} ms (95% CI {b['p99_ms_low']:.2f}–{b['p99_ms_high']:.2f}, "
                f"measured at {b['measured_at']:,.0f}/s, its knee {b['knee_per_s']:,.0f}/s) and {risk}")
        if not b["resolved"]:
            text += (f"; not resolved: its p99 interval overlaps {', '.join(f'`{t}`' for t in b['tied'])}, which also "
                     "meet both budgets")
        if b["writers"] > 1:
            text += "; " + _one_writer_clause(g)
        lines.append(text)
    return lines


def at_rate_lines(load_df: pd.DataFrame, rate: float = DEFAULT_RATE,
                  budgets=DEFAULT_LOSS_BUDGETS_MS, cuts: pd.DataFrame | None = None) -> list[str]:
    """The index's answer at a default rate: the advice for each loss budget, per target (``cuts``: a
    crash dataset's, the evidence beside a durable strategy's zero)."""
    out = []
    for budget in budgets:
        out += advice_lines(advise(load_df, rate, budget, cuts=cuts), rate, budget)
    return out


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


def frontier_claims(points: pd.DataFrame, rows: list[dict]) -> list["Claim"]:
    """Page 03's sentences, one per target: one writer's frontier of the estimates (``frontier_points``,
    like with like: a frontier per writer count), what could also be on it within the intervals, how the
    measured batch windows compare with the nominal ones, and the zero-loss answer at each writer count
    from the one computed answer (``answer``'s rows), so that page 03 and the index say the same."""
    from .choice import recommendation_part
    from .claim import Claim
    out = []
    for target, p in points.groupby("target", sort=False):
        label = p["target_label"].iloc[0]
        if (p["window_source"] == "volatile").all():
            out.append(Claim(f"**{label}**: volatile; a power cut loses everything whatever the strategy, so no frontier.",
                             {"target": label}))
            continue
        one = p[p["writers"] == 1]
        f = one[one["pareto"]].sort_values("ops_per_sec")
        maybe = one[one["pareto_maybe"] & ~one["pareto"]].sort_values("ops_per_sec")
        names = ", ".join(f"`{c}`" for c in f["config_label"])
        text = (f"**{label}**, one writer: the frontier of the estimates is {names}; every other one-writer "
                "configuration is beaten (another is at least as fast and at most as exposed, and better in one)")
        if len(maybe) <= 3:
            text += ("; within the 95% intervals " + ", ".join(f"`{c}`" for c in maybe["config_label"]) + " could be on it too."
                     if len(maybe) else ", each beyond its 95% intervals.")
        else:
            text += (f"; within the 95% intervals {len(maybe)} more could be on it (among them "
                     + ", ".join(f"`{c}`" for c in maybe["config_label"][:3]) + "): their throughput intervals overlap "
                     "the frontier's, so the estimates alone do not order them.")
        batch = one[(one["kind"] == "batch") & (one["nominal_window_ms"] > 0) & (one["window_source"] == "measured exposure")]
        over = batch["loss_window_ms"] / batch["nominal_window_ms"]
        if len(over):
            text += f" Across batch intervals, the measured worst exposure was {span(over)}× the nominal window."
        mine = [r for r in rows if r["target"] == target]
        if mine:
            text += " Losing nothing, the answer on the index: " + "; ".join(recommendation_part(r) for r in mine) + "."
        n = p["n"]
        out.append(Claim(text, {"target": label,
                                "writers": "1 on the frontier; the answer's each against always with as many",
                                "trials": f"{n.min()}" + ("" if n.min() == n.max() else f"–{n.max()}") + " a point",
                                "intervals": "95% t on the log scale (the answer's paired by round, simultaneous "
                                             "over its candidates)"}))
    return out


def interval_claims(df: pd.DataFrame, summ: pd.DataFrame, rel: pd.DataFrame, ceiling: pd.DataFrame) -> list["Claim"]:
    """Page 02's sentences, one per target: what ``batch_10ms`` buys over ``always`` (one writer each), how
    the batch curve compares with fio's no-sync rate on that target, batch_10ms's measured worst exposure,
    and group commit at each writer count against ``always`` with the same writers (``group_against_always``)
    beside its closed-loop bound W / (N + median sync).  ``rel``: ``stats.relative_to`` indexed by target
    and config; ``ceiling``: ``catalog.write_ceiling_for``'s table."""
    from .. import stats
    from .choice import group_against_always
    from .claim import Claim
    from .sweep import interval_curves
    curves = interval_curves(summ, "ops_per_sec")
    exp_max = interval_curves(summ, "exposure_ms_max")
    sync_us = stats.wide(summ, "sync_latency_us_p50").set_index(["target", "config"])["mean"]
    groups = group_against_always(df)
    out = []
    for target in dict.fromkeys(curves["target"]):
        c = curves[curves["target"] == target]
        b = c[c["kind"] == "batch"].set_index("interval_ms")
        e = exp_max[(exp_max["target"] == target) & (exp_max["kind"] == "batch")].set_index("interval_ms")
        label = c["target_label"].iloc[0]
        key10 = (target, "batch_10ms/w1/append/fdatasync")
        premises = {"target": label, "trials": f"{int(c['n'].min())} a point"}
        s = f"**{label}**: "
        if key10 in rel.index:
            r10 = rel.loc[key10]
            s += f"`batch_10ms` gives {ratio_text(r10['ratio'], r10['ratio_low'], r10['ratio_high'])} the throughput of `always` (one writer each); "
            premises["batch against always"] = "one writer each, 95% t interval of the per-round log ratios"
        roof = ceiling_ratios(df, ceiling, target, list(b.loc[b.index >= 5, "config"]))
        if roof:
            tb = df[(df["target"] == target) & df["config"].isin(list(roof))]
            cpu = (f", and {int((tb['bound'] == 'cpu').sum())} of its {len(tb)} trials were CPU-bound"
                   if "bound" in tb.columns and tb["bound"].fillna("").ne("").all() else "")
            s += (f"from 5 to {b.index.max():.0f} ms the batch curve reached {span([r.estimate for r in roof.values()])} "
                  f"of a C loop's no-sync write rate on this target (fio, {ceiling.loc[label, 'ops_per_sec']:,.0f} "
                  f"ops/s: a reference rate, not a ceiling){cpu}; ")
            premises["fio"] = "a separate run (the comparison dataset): unpaired"
        if 10 in e.index:
            s += (f"its worst exposure per trial was {e.loc[10, 'mean']:.1f} ms (geometric mean over trials) against a "
                  "nominal 10 ms plus one sync; ")
        mine = [r for r in groups if r["target"] == target]
        g = c[c["kind"] == "group"]
        if mine:
            parts = []
            for r in mine:
                base = "`always`" + ("" if r["baseline_writers"] == 1 else f" with {r['baseline_writers']} writers")
                who = "one writer" if r["writers"] == 1 else f"{r['writers']} writers"
                part = f"with {who}, `{r['config_label']}` reached {r['ops_per_sec']:,.0f} ops/s, {ratio_text(r['ratio'], r['ratio_low'], r['ratio_high'])} {base}"
                if not r["like_with_like"]:
                    part += f" (this dataset has no `always` with {r['writers']} writers: the writers differ)"
                parts.append(part)
            s += ("group commit acknowledges nothing before its sync; against `always` with the same writers: "
                  + "; ".join(parts))
            premises["group against always"] = "the same writers, paired by round, 95% t interval"
            bound = g.apply(lambda r: r["writers"] / (r["interval_ms"] / 1e3 + sync_us.get((target, r["config"]), float("nan")) / 1e6),
                            axis=1)
            if g["target_durability"].iloc[0] == "volatile":
                s += "."
            else:
                s += (f". Group commit reached {span(g['mean'] / bound)} of its closed-loop bound W / (N + median sync) "
                      f"over its {len(g)} configurations.")
        else:
            s = s.rstrip("; ") + "."
        out.append(Claim(s, premises))
    return out


def peers_claims(summ: pd.DataFrame, df: pd.DataFrame) -> list["Claim"]:
    """Page 05's sentences: per target, every pair's ratio ours/peer with its interval and its verdict
    (fio's aim, or pg_test_fsync's equivalence test), then what the volatile target, the equivalence
    test and O_DIRECT mean, each with its premises (target, rounds, test, preallocation).  ``summ``:
    ``peers_summary``; ``df``: the comparison's rows (``peers.load``)."""
    from .. import peers
    from .claim import Claim
    out = []
    for target, g in summ.groupby("target", sort=False):
        label = g["target_label"].iloc[0]
        parts = []
        for _, r in g.iterrows():
            if r["verdict"] == "unavailable":
                parts.append(f"`{r['pair']}` unavailable: {r['unavailable']}")
                continue
            ci = "" if pd.isna(r["ratio_low"]) else f" (95% CI {r['ratio_low']:.2f}–{r['ratio_high']:.2f}"
            if ci and r["pair"] in peers.WRITE_PATH_PAIRS and "ratio_median" in r and pd.notna(r["ratio_median"]):
                ci += f", median of rounds {r['ratio_median']:.2f}"   # the write paths' aim is stated on it
            ci += ")" if ci else ""
            verdict = ""
            if r["pair"] in peers.FIO_AIM_PAIRS and r["verdict"]:
                verdict = {"meets": f": meets the {peers.FIO_AIM} aim", "short": f": short of the {peers.FIO_AIM} aim",
                           "unclear": f": the interval straddles {peers.FIO_AIM}"}[r["verdict"]]
            elif r["pair"].startswith("pg-") and r["verdict"]:
                m = peers.PG_EQUIVALENCE_MARGIN
                verdict = {"equivalent": f": equivalent within {m:.0%}", "below": f": below, by more than {m:.0%}",
                           "above": f": above, by more than {m:.0%}",
                           "unclear": f": equivalence within {m:.0%} unclear at {int(r['rounds'])} rounds"}[r["verdict"]]
            parts.append(f"`{r['pair']}` {r['ratio']:.2f}×{ci}{verdict}")
        rounds = span(g["rounds"], "{:.0f}".format)
        premises = {"target": label, "rounds": f"{rounds}, alternating which side runs first, paired",
                    "ratio": "ours / peer ops/s, geometric mean of per-round ratios, 95% t interval"}
        rows = df[df["target"] == target]
        plain = rows[rows["pair"].str.startswith("fio") & ~rows["pair"].isin(peers.WRITE_PATH_PAIRS)]
        def values(frame, column, fmt="{}") -> str:     # what the rows say, '' where they do not have it
            return ", ".join(fmt.format(v) for v in sorted(set(frame[column]))) if column in frame else ""
        if len(plain):
            pre = values(plain, "prealloc")
            premises["fio pairs"] = f"the same block size, writes and preallocation{f' ({pre})' if pre else ''} on both sides"
        for pair in peers.WRITE_PATH_PAIRS:
            p = rows[rows["pair"] == pair]
            if len(p) and pair == "fio-dsync":
                premises[pair] = ("every write synchronous on both sides (fio O_DSYNC, ours pwritev2 RWF_DSYNC), "
                                  f"{values(p, 'block_bytes', '{:.0f}')}-byte writes, preallocation "
                                  f"{values(p, 'prealloc')}")
            elif len(p):
                premises[pair] = (f"O_DIRECT|O_DSYNC on both sides in a file laid out written "
                                  f"({values(p, 'prealloc')}): fio a new {values(p, 'block_bytes', '{:.0f}')}-byte "
                                  "block per op, ours its tail block rewritten in place (two blocks when a record "
                                  "straddles one)")
        if g["pair"].str.startswith("pg-").any():
            premises["pg_test_fsync pairs"] = "8 kB records at offset 0 of a zero-filled 16 MiB file on both sides"
        out.append(Claim(f"**{label}**: " + "; ".join(parts) + ".", premises))
    lines = []
    if any(summ["target_durability"] == "volatile"):
        lines.append("On a volatile target a sync is a no-op, so each op costs only the call itself, and what shows is the "
                     "interpreter's per-call cost against the peers' C loops: there the ratio measures Python, not storage.")
    if any(summ["pair"].str.startswith("pg-")):
        lines.append(f"pg_test_fsync pairs are judged by an equivalence test: equivalent when the paired ratio's 90% "
                     f"interval lies within {1 - peers.PG_EQUIVALENCE_MARGIN:.2f}–{1 / (1 - peers.PG_EQUIVALENCE_MARGIN):.3f} "
                     "(two one-sided tests at 5%); 'unclear' means too few rounds to tell, not a pass. A gap measured "
                     "before 2026-11-28 came from the page-cache state our zero-fill left; what remains is the cost of "
                     "timing every operation from Python, measured on one open file against the same calls from C by "
                     "`benchmarks/loop_cost.py` (docs/peers.md).")
    if any(summ["pair"].str.startswith("pg-open")):
        opens = df.loc[df["pair"].str.startswith("pg-open"), "notes"].fillna("").astype(str)
        if opens.str.contains("O_DIRECT on both sides").all():
            lines.append("pg_test_fsync's `open_*` tests use O_DIRECT, and so does our side of those pairs (its 8 kB "
                         "records in page-aligned memory): the same system calls with the same flags.")
        else:
            lines.append("pg_test_fsync's `open_*` tests use O_DIRECT and our side of this comparison did not (measured "
                         "before it did, or on a filesystem without direct I/O). On this kind of disk, O_DIRECT on our side "
                         "too moved the `pg-open_*` ratios by less than their intervals (docs/peers.md).")
    return out + [Claim(line) for line in lines]


def knee_claims(knees: pd.DataFrame, lowest_rate: float) -> list["Claim"]:
    """Page 06's knees as sentences: per configuration and target, the highest rate it keeps up with
    (``load.keeps_up``'s definition: the median round's knee), its spread over the rounds and the next
    rate measured, with the premises: clients, rounds, and what "keeps up" means."""
    from .claim import Claim
    from .load import KNEE_FACTOR, KNEE_FLOOR_US
    out = []
    for r in knees.itertuples():
        rng = "" if r.knee_low == r.knee_high else f" (rounds: {r.knee_low:,.0f}–{r.knee_high:,.0f})"
        if r.knee_rate and getattr(r, "rates", 2) == 1:
            # a write path's cell, measured at one rate: no unloaded p99 to compare with, only the queue
            where = f"keeps up at {r.knee_rate:,.0f}/s, the one rate it was measured at (nothing left queued)"
        elif r.knee_rate:
            where = f"keeps up to {r.knee_rate:,.0f}/s{rng}" + (
                f", not at {r.next_rate:,.0f}/s" if r.next_rate == r.next_rate and r.next_rate else ", the highest rate measured")
        else:
            where = (f"is past its knee already at the lowest rate measured, {lowest_rate:,.0f}/s (most it achieved: "
                     f"{r.capacity_seen:,.0f}/s)")
        premises = {"target": r.target_label, "clients": r.writers, "rounds": r.rounds,
                    "keeps up": f"p99 from arrival within {KNEE_FACTOR:g}× the unloaded p99 (or {KNEE_FLOOR_US / 1e3:g} ms "
                                "of it) and nothing left queued, in the median round"}
        out.append(Claim(f"`{r.config_label}` on **{r.target_label}** {where}.", premises))
    return out
