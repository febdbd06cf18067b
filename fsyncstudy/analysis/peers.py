"""The peers comparison's table (notebook 05): ours against fio and pg_test_fsync, per target and pair."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import intervals
from ..peers import median_ratio, pair_verdict, unavailable_in


def peers_summary(df: pd.DataFrame, durability: dict[str, str] | None = None) -> pd.DataFrame:
    """Per target and pair: the ratio ours/peer (geometric mean of per-round ratios, 95% t interval
    of the log ratios) and the median of the per-round ratios, both sides' mean ops/sec with
    intervals, mean p50/p99 over rounds, the pair's verdict against its aim (``peers.pair_verdict``;
    'unavailable' where the target could not run it, ``unavailable`` saying why) and, for
    pg_test_fsync's pairs, the half width of its interval relative to its mean.  ``durability``:
    {target: verdict}, carried along."""
    rows = []
    for (target, pair), g in df.groupby(["target", "pair"], sort=False):
        ours = g[g["side"] == "ours"].sort_values("round")
        peer = g[g["side"] == "peer"].sort_values("round")
        why = unavailable_in(g["notes"].iloc[0]) if "notes" in g else ""
        r = intervals.paired_ratio_ci(list(ours["ops_per_sec"]), list(peer["ops_per_sec"]))
        o, p = intervals.mean_interval(ours["ops_per_sec"]), intervals.mean_interval(peer["ops_per_sec"])
        rows.append({"target": target, "target_label": g["target_label"].iloc[0],
                     "target_durability": (durability or {}).get(target, ""), "pair": pair,
                     "peer": g["peer"].iloc[0], "peer_test": peer["config"].iloc[0], "ours": ours["config"].iloc[0],
                     "rounds": len(ours), "ratio": r.estimate, "ratio_low": r.low, "ratio_high": r.high,
                     "ratio_median": median_ratio(ours["ops_per_sec"].tolist(), peer["ops_per_sec"].tolist()),
                     "ours_ops": o.estimate, "ours_low": o.low, "ours_high": o.high,
                     "peer_ops": p.estimate, "peer_low": p.low, "peer_high": p.high,
                     "peer_half_width": (p.high - p.estimate) / p.estimate if p.has_interval() and p.estimate else np.nan,
                     "ours_p50_us": ours["p50_us"].mean(), "ours_p99_us": ours["p99_us"].mean(),
                     "peer_p50_us": peer["p50_us"].mean(), "peer_p99_us": peer["p99_us"].mean(),
                     "aim": g["aim"].iloc[0], "verdict": pair_verdict(pair, g["peer"].iloc[0], ours["ops_per_sec"].tolist(),
                                                               peer["ops_per_sec"].tolist(), why),
                     "unavailable": why,
                     "ci_method": intervals.RATIO_METHOD})
    return pd.DataFrame(rows)
