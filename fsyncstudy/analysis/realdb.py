"""Real databases (notebook 08): each setting's commits/s against its prediction by our writer, the
per-commit costs beside each other, the open-loop cells, and what power cuts lost against the promise."""
from __future__ import annotations

import pandas as pd

from .. import intervals


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


#: A prediction "predicts" a setting when the paired ratio database / prediction lies within this margin
#: of 1 (on the log scale: [1 - m, 1 / (1 - m)]) by two one-sided tests at 5% (``intervals.equivalence``).
PREDICT_MARGIN = 0.15
#: A round whose database CPU per commit is this many times the median round's (or 1 / this) is
#: flagged as disturbed (another process on a shared machine): shown, not silently averaged.
DISTURBED_FACTOR = 2.0


def _rounds_to_decide(logs: list[float], margin: float, alpha: float = 0.05, cap: int = 1000) -> int | None:
    """How many rounds the measured spread of the log ratios says would decide the equivalence test (its
    (1 - 2 alpha) interval inside the margin, or wholly outside it), if the mean stayed where it is; None
    when it never would (the mean sits on a bound) or there is no spread to go on."""
    import math
    import statistics
    if len(logs) < 2:
        return None
    m, sd = statistics.fmean(logs), statistics.stdev(logs)
    bound = -math.log(1 - margin)
    room = abs(bound - abs(m))
    if sd == 0 or room == 0:
        return None
    for n in range(2, cap + 1):
        if intervals.t_quantile(1 - alpha, n - 1) * sd / math.sqrt(n) < room:
            return n
    return None


def prediction_verdict(d: pd.DataFrame, p: pd.DataFrame, margin: float = PREDICT_MARGIN) -> dict:
    """The verdict on one setting's prediction from its paired rounds: ``predicts`` (equivalent within
    ``margin`` by two one-sided tests), ``does not predict`` (the interval wholly outside, with the
    direction), or ``undecided at n = K`` with the rounds the measured spread says would decide."""
    import math
    verdict, iv = intervals.equivalence(d["commits_per_sec"].tolist(), p["commits_per_sec"].tolist(), margin,
                                        pairs=(d["round"].tolist(), p["round"].tolist()))
    a = d.groupby("round")["commits_per_sec"].apply(lambda v: math.exp(sum(map(math.log, v)) / len(v)))
    b = p.groupby("round")["commits_per_sec"].apply(lambda v: math.exp(sum(map(math.log, v)) / len(v)))
    logs = [math.log(a[r] / b[r]) for r in a.index if r in b.index and a[r] > 0 and b[r] > 0]
    n = len(logs)
    if verdict == "equivalent":
        text = "predicts"
    elif verdict in ("below", "above"):
        text = f"does not predict: the database runs {iv.estimate:.2f}× the prediction"
    else:
        need = _rounds_to_decide(logs, margin)
        text = f"undecided at n = {n}" + (f" (about {need} rounds would decide)" if need else
                                           " (the estimate sits on the margin: more rounds may not decide)")
    return {"verdict": text, "verdict_low": iv.low, "verdict_high": iv.high, "margin": margin}


def _disturbed_rounds(d: pd.DataFrame, factor: float = DISTURBED_FACTOR) -> list[int]:
    """Rounds whose database CPU per commit is far off the median round's (see DISTURBED_FACTOR); with
    fewer than three rounds there is no median to be far from."""
    cpu = (d["client_cpu_us_per_commit"].fillna(0) + d["server_cpu_us_per_commit"].fillna(0))
    per = cpu.groupby(d["round"]).median()
    mid = per.median()
    if len(per) < 3 or not mid > 0:
        return []
    return [int(r) for r, v in per.items() if not 1 / factor <= v / mid <= factor]


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
            "mapping": s.get("mapping", ""), "promise": s.get("promise", ""),
            **prediction_verdict(d, p), "disturbed_rounds": _disturbed_rounds(d)})
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
