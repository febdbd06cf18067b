"""The crash experiments' tables (notebooks 03-04): each power cut's loss window, and per strategy
what the cuts lost, with intervals over cuts."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats


def loss_windows(cuts: pd.DataFrame) -> pd.DataFrame:
    """Each cut's measured loss window: the age of its oldest lost acknowledgement (0 if nothing was lost)."""
    c = cuts[cuts["error"] == ""].copy()
    c["loss_window_ms"] = c["oldest_lost_age_ms"].fillna(0.0)
    return c


def crash_table(cuts: pd.DataFrame, seed: int = 0, n_boot: int = stats.N_BOOT) -> pd.DataFrame:
    """Per kind, strategy and write path (``path``, "" for the plain one; ``label``: the strategy, with its
    path in brackets where there is one): cuts, acknowledged and lost entries (with the 95% upper bound on
    the share of cuts that lose, and of acknowledged entries lost, when none did), and the loss window's
    median, p99 and max over cuts with 95% distribution-free intervals where the number of cuts
    allows one (``stats.quantile_interval``; the max never gets one)."""
    rows = []
    c = loss_windows(cuts)
    if "path" not in c:
        c["path"] = ""     # cuts from before the write paths: all on the plain one
    for (kind, strategy, path), g in c.groupby(["kind", "strategy", "path"], sort=False):
        w = g["loss_window_ms"].to_numpy(dtype=float)
        row = {"kind": kind, "strategy": strategy, "path": path, "label": strategy + (f" ({path})" if path else ""),
               "skind": g["skind"].iloc[0], "interval_ms": g["interval_ms"].iloc[0],
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
