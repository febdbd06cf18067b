"""At your rate (notebook 06, the open-loop load study): latency from arrival per rate, the knee,
the advice for a rate and a loss budget, and the writer doing work between entries."""
from __future__ import annotations

import pandas as pd

from .. import intervals
from ..strategies import KINDS


#: A rate is below the knee while its p99 latency from arrival stays within this factor of the
#: unloaded p99 (the lowest rate's), or within KNEE_FLOOR_US of it, whichever is larger (doubling a
#: 60 us p99 is noise, not a knee), and no trial left entries queued.
KNEE_FACTOR = 2.0
KNEE_FLOOR_US = 1000.0
LOAD_METHOD = "geometric mean over trials, 95% t interval of the logs"


def geomean(values) -> intervals.Interval:
    """Geometric mean with the t interval of the logs (latencies are positive and skewed): the
    positive values through ``intervals.mean_interval``, which works on the log scale for positive
    values (this took the logs itself once, so for values above 1 it averaged logs of logs)."""
    return intervals.mean_interval([v for v in values if v is not None and v == v and v > 0])


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
               "path": g["path"].iloc[0] if "path" in g else "",
               "rate": rate, "n": len(g), "achieved_rate": g["achieved_rate"].mean(),
               "writers": int(g["clients"].iloc[0]) if "clients" in g else 1,
               "saturated_trials": int(g["saturated"].astype(bool).sum()),
               "lateness_us_p99": g["lateness_us_p99"].max(), "cpu_us_per_entry": g["cpu_us_per_entry"].mean(),
               "ci_method": LOAD_METHOD}
        for col in ("latency_us_p50", "latency_us_p99", "latency_us_p999", "service_us_p99", "exposure_ms_max"):
            e = geomean(g[col])
            row[col], row[col + "_low"], row[col + "_high"] = e.estimate, e.low, e.high
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
        base = geomean(g.loc[g["rate"] == rates[0], "latency_us_p99"])
        rows.append({"target": target, "target_label": g["target_label"].iloc[0], "config": config,
                     "config_label": g["config_label"].iloc[0], "kind": g["kind"].iloc[0],
                     "writers": int(g["clients"].iloc[0]) if "clients" in g else 1,
                     "unloaded_p99_us": base.estimate,
                     "bound_us": max(factor * base.estimate, base.estimate + floor_us) if base.has_estimate() else None,
                     "knee_rate": median, "knee_low": min(per_round), "knee_high": max(per_round),
                     "next_rate": later[0] if later else None, "rounds": len(per_round),
                     "capacity_seen": g["achieved_rate"].max(), "rates": len(rates)})
    out = pd.DataFrame(rows)
    return out.sort_values(["target_label", "config"]).reset_index(drop=True) if len(out) else out


def largest_exposure(df: pd.DataFrame, target: str, strategy: str, clients: int, rate: float, path: str = "") -> dict:
    """The largest exposure (how long an acknowledged entry stayed unsynced) measured in any trial of
    ``strategy`` with ``clients`` on ``target`` at ``rate`` on the write path ``path`` ("" the plain one),
    whatever the writer's work per entry (the busy cells run at their own rate): the largest, the work
    per entry it was measured with, the largest with an idle writer, and over how many trials.  The
    largest measured, not a bound: more trials may see more."""
    g = df[(df["target"] == target) & (df["strategy"] == strategy) & (df["rate"] == rate)]
    if "clients" in g:
        g = g[g["clients"] == clients]
    if "path" in g:
        g = g[g["path"] == path]
    e = pd.to_numeric(g["exposure_ms_max"], errors="coerce")
    work = g["work_us"].fillna(0.0) if "work_us" in g else pd.Series(0.0, index=g.index)
    if not e.notna().any():
        return {"window_ms": None, "window_work_us": None, "window_idle_ms": None, "window_trials": 0}
    idle = e[work == 0]
    at = e.idxmax()
    return {"window_ms": float(e[at]), "window_work_us": float(work[at]),
            "window_idle_ms": float(idle.max()) if idle.notna().any() else None, "window_trials": int(e.notna().sum())}


def _window_ms(row, df: pd.DataFrame, target: str) -> tuple[float | None, dict, str]:
    """What an acknowledgement risks at this rate: (the loss column, its measurement, how it is known).
    Batch's is the largest exposure measured at that rate, a busy writer's included (``largest_exposure``)."""
    if KINDS[row["kind"]].acks_durable:
        return 0.0, {}, "acknowledged after its sync"
    if row["kind"] == "batch":
        m = largest_exposure(df, target, row["strategy"], int(row["writers"]), row["rate"], row.get("path", ""))
        return m["window_ms"], m, "the largest exposure measured at that rate"
    return None, {}, "never synced: the kernel decides (seconds)"


def _or_estimate(bound, row) -> float:
    """A bound of the p99 latency, or its estimate where there is no interval (one trial: NaN)."""
    return row["latency_us_p99"] if bound is None or bound != bound else bound


def keeps_up(knee_rate: float | None, rate: float) -> bool:
    """The one definition of "keeps up at ``rate``", shared by the knee on page 06, ``advise`` and the
    index: ``rate`` is at or below the configuration's knee on that target (the median round's; see
    ``knees``), so its p99 latency from arrival stayed near the unloaded one with nothing left queued."""
    return knee_rate is not None and knee_rate == knee_rate and rate <= knee_rate


def power_cut_evidence(cuts: pd.DataFrame | None, strategy: str, path: str = "") -> dict:
    """What the crash experiments' power cuts say about ``strategy`` on the write path ``path`` ("" the
    plain one; ``crash.load``'s cuts): how many ran (without error), on which target, how many lost an
    acknowledged entry, the worst loss window, and the 95% upper bound on the share of cuts that lose
    when none did.  Empty values where it was not cut (or no crash data was given)."""
    none = {"power_cuts": 0, "power_cuts_losing": 0, "power_cuts_losing_upper95": None, "power_cut_target": None,
            "power_cut_window_max_ms": None}
    if cuts is None or not len(cuts):
        return none
    g = cuts[(cuts["kind"] == "power") & (cuts["strategy"] == strategy) & (cuts["error"].fillna("") == "")]
    if "path" in g:
        g = g[g["path"] == path]
    if g.empty:
        return none
    losing = g[g["lost_acked"].fillna(0) > 0]
    return {"power_cuts": len(g), "power_cuts_losing": len(losing),
            "power_cuts_losing_upper95": None if len(losing) else intervals.zero_events_upper(len(g)),
            "power_cut_target": ", ".join(sorted(set(g["target"].astype(str)))),
            "power_cut_window_max_ms": float(losing["oldest_lost_age_ms"].max()) if len(losing) else 0.0}


def advise(df: pd.DataFrame, rate: float, loss_budget_ms: float, p99_budget_ms: float | None = None,
           cuts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per target, from a load study's trials (``loadstudy.load``): the configurations measured at
    ``rate`` or the next rate above it, each with its verdict: ``cannot keep up`` (``rate`` is above its
    knee, ``keeps_up``), ``loses too much`` (its loss column is over ``loss_budget_ms``), ``too slow``
    (the upper bound of its p99 is over ``p99_budget_ms``), or ``meets both``.  Batch's loss column is
    the largest exposure measured at that rate, with the work per entry it was measured with
    (``largest_exposure``: a busy writer's cells count).  Among those that meet both, the lowest p99 is
    ``advised``; it is ``resolved`` only when its p99 interval lies below every other one's, else
    ``tied`` names the ones it overlaps.  Each row carries ``knee_per_s`` and ``writers`` (the clients
    it was measured with).

    ``cuts`` (a crash dataset's cuts, ``crash.load``): the power cuts of each strategy, as evidence
    beside the loss column (``power_cut_evidence``).  A strategy that acknowledges after its sync
    risks 0 ms by definition; the cuts say whether that held, with their number and upper bound, and a
    cut that lost an acknowledged entry puts its window in place of the 0."""
    summ = load_summary(df)
    kn = knees(df)
    knee_of = {(r.target, r.config): r.knee_rate for r in kn.itertuples()} if len(kn) else {}
    busy = busy_summary(df)
    busy = busy[busy["work_us"] > 0] if len(busy) else busy
    rows = []
    for target, g in summ.groupby("target", sort=False):
        above = sorted(r for r in set(g["rate"]) if r >= rate)
        if not above:
            rows.append({"target": target, "target_label": g["target_label"].iloc[0], "config": None,
                         "verdict": f"not measured at {rate:,.0f}/s or above (highest: {g['rate'].max():,.0f}/s)"})
            continue
        at = above[0]
        for _, r in g[g["rate"] == at].iterrows():
            w, measured, how = _window_ms(r, df, target)
            evidence = power_cut_evidence(cuts, r["strategy"], r.get("path", ""))
            if KINDS[r["kind"]].acks_durable and evidence["power_cuts_losing"]:
                w = evidence["power_cut_window_max_ms"]
                how = (f"{evidence['power_cuts_losing']} of {evidence['power_cuts']} power cuts on "
                       f"{evidence['power_cut_target']} lost acknowledged entries")
            knee = knee_of.get((target, r["config"]))
            if r["saturated_trials"] or not keeps_up(knee, rate):
                verdict = "cannot keep up"
            elif w is None or w > loss_budget_ms:
                verdict = "loses too much"
            elif p99_budget_ms is not None and _or_estimate(r["latency_us_p99_high"], r) > p99_budget_ms * 1e3:
                verdict = "too slow"
            else:
                verdict = "meets both"
            # the same strategy at this rate with the writer doing work between entries, where measured: its
            # window is stated beside the idle writer's (work keeps the flusher off the interpreter)
            worst = None
            if len(busy) and r["kind"] == "batch" and not r.get("path", ""):   # the busy cells are the plain path's
                b = busy[(busy["target"] == target) & (busy["strategy"] == r["strategy"]) & (busy["rate"] == at)]
                if b["exposure_ms_max"].notna().any():
                    worst = b.loc[b["exposure_ms_max"].idxmax()]
            rows.append({"target": target, "target_label": r["target_label"], "config": r["config"],
                         "config_label": r["config_label"], "strategy": r["strategy"], "kind": r["kind"], "writers": r["writers"],
                         "path": r.get("path", "") or "",
                         "measured_at": at, "knee_per_s": knee,
                         "window_busy_ms": None if worst is None else worst["exposure_ms_max"],
                         "window_busy_ms_high": None if worst is None else intervals.none_if_nan(worst["exposure_ms_max_high"]),
                         "window_busy_work_us": None if worst is None else worst["work_us"],
                         "p99_ms": r["latency_us_p99"] / 1e3,
                         "p99_ms_low": _or_estimate(r["latency_us_p99_low"], r) / 1e3,
                         "p99_ms_high": _or_estimate(r["latency_us_p99_high"], r) / 1e3,
                         "window_ms": w, "window_source": how, "window_work_us": measured.get("window_work_us"),
                         "window_idle_ms": measured.get("window_idle_ms"), "window_trials": measured.get("window_trials"),
                         "entries_at_risk": None if w is None else rate * w / 1e3, "verdict": verdict,
                         **evidence})
    out = pd.DataFrame(rows)
    if len(out) and "p99_ms" in out:
        out["advised"], out["resolved"], out["tied"] = False, False, [[] for _ in range(len(out))]
        for target, g in out[out["verdict"] == "meets both"].groupby("target"):
            best = g["p99_ms"].idxmin()
            tied = [o.config_label for o in g.drop(index=best).itertuples() if o.p99_ms_low <= out.at[best, "p99_ms_high"]]
            out.at[best, "advised"], out.at[best, "resolved"], out.at[best, "tied"] = True, not tied, tied
    return out


#: The rate and the loss budgets the report's index answers for.
DEFAULT_RATE = 2000
DEFAULT_LOSS_BUDGETS_MS = (0, 20)


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
        e, lat = geomean(g["exposure_ms_max"]), geomean(g["latency_us_p99"])
        rows.append({"target": target, "target_label": g["target_label"].iloc[0], "strategy": g["strategy"].iloc[0],
                     "kind": g["kind"].iloc[0], "clients": int(g["clients"].iloc[0]), "rate": rate,
                     "work_us": work, "cpu_busy_share": work * 1e-6 * rate, "n": len(g),
                     "exposure_ms_max": e.estimate, "exposure_ms_max_low": e.low, "exposure_ms_max_high": e.high,
                     "latency_us_p99": lat.estimate, "latency_us_p99_low": lat.low, "latency_us_p99_high": lat.high,
                     "saturated_trials": int(g["saturated"].astype(bool).sum())})
    out = pd.DataFrame(rows)
    return out.sort_values(["target_label", "strategy", "work_us"]).reset_index(drop=True)
