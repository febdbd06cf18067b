"""Does the disk keep its promise: per target, whether a cache between us and the media is likely (the
device's class against the sync latency the sweep measured), and what the flush-honesty check
(``fsyncstudy.diskcheck``) found where it ran.  Notebook 11 and the report's index read these."""
from __future__ import annotations

from dataclasses import fields

import pandas as pd

from ..targets import LIKELY_CACHE, Target, plausibility
from .sweep import display_label, target_nature

#: The configuration whose sync latency is set against the device's class: one writer syncing each entry.
REFERENCE_CONFIG = "always/w1/append/fdatasync"
_TARGET_FIELDS = {f.name for f in fields(Target)}


def _target(d: dict) -> Target:
    """A target's description as a dataset stored it (one written before a field existed lacks it)."""
    return Target(**{k: v for k, v in d.items() if k in _TARGET_FIELDS})


def measured_sync_s(df: pd.DataFrame) -> dict[str, float]:
    """Per target of a sweep, the median over trials of ``always``'s median sync latency, in seconds."""
    rows = df[(df["config"] == REFERENCE_CONFIG) & df["sync_latency_us_p50"].notna()]
    return {t: float(v) / 1e6 for t, v in rows.groupby("target")["sync_latency_us_p50"].median().items()}


def plausibility_table(df: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """One row per target of a sweep: what it is, the evidence, the measured sync, and the verdict line
    (``targets.plausibility``, computed here from the stored description and the sweep's latency)."""
    synced = measured_sync_s(df)
    rows = []
    for path, d in meta["environment"]["targets"].items():
        t = _target(d)
        sync_s = synced.get(path)
        line = plausibility(t, sync_s)
        rows.append({"target": path, "target_label": display_label(t.label or path), "kind": target_nature(d),
                     "device": t.block_device or t.source, "rotational": t.rotational, "write_cache": t.write_cache,
                     "fua": t.fua, "virtual": t.virtual or "",
                     "sync_us_p50": None if sync_s is None else round(sync_s * 1e6, 1),
                     "cache_likely": line.startswith(LIKELY_CACHE), "verdict": line or "nothing known"})
    return pd.DataFrame(rows)


def diskcheck_table(verdicts: dict) -> pd.DataFrame:
    """The flush-honesty check's verdicts (``diskcheck.recorded``), one row per target checked."""
    rows = [{"target": t, "pulls": v.pulls, "acknowledged": v.acked, "lost": v.lost, "pulls_losing": v.pulls_losing,
             "newest_lost_ms": v.newest_lost_age_ms,
             "zero_loss_upper_pct": None if v.zero_loss_upper is None else round(100 * v.zero_loss_upper, 1),
             "verdict": v.text} for t, v in sorted(verdicts.items())]
    return pd.DataFrame(rows, columns=["target", "pulls", "acknowledged", "lost", "pulls_losing", "newest_lost_ms",
                                       "zero_loss_upper_pct", "verdict"])


#: How the lab's and RAM targets put a layer between us and the media by construction, by ``target_nature``.
_BY_CONSTRUCTION = {"nested": "a loop device's backing file and the host's page cache", "fuse": "a FUSE daemon",
                    "emulated": "a FUSE daemon that sleeps instead of syncing", "memory": "RAM, with no media below"}


def promise_lines(plaus: pd.DataFrame, checks: pd.DataFrame | None = None) -> list[str]:
    """What the data says, one sentence each, every number from the tables: each device target's verdict
    with its evidence, the lab's and RAM targets counted by what sits between us and the media, then the
    flush-honesty check's verdicts."""
    out = []
    for r in plaus[plaus["kind"] == "device"].itertuples():
        out.append(f"**{r.target_label}**: {r.verdict}.")
    others = plaus[plaus["kind"] != "device"]
    if len(others):
        counts = others["kind"].value_counts()
        parts = [f"{_BY_CONSTRUCTION.get(k, k)} ({n})" for k, n in counts.items()]
        out.append(f"The other {len(others)} target{'s' * (len(others) != 1)} have a layer between us and the media by "
                   f"construction: {', '.join(parts)}; their numbers measure that layer (page 11 has each one's evidence).")
    if checks is not None and len(checks):
        for r in checks.itertuples():
            out.append(f"`{r.target}` under the flush-honesty check: {r.verdict}.")
    return out
