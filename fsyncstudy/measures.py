"""Numbers from a raw timeline: percentiles, achieved flush intervals, and exposure.

Pure functions of plain sequences, standard library only, so they can be tested on
synthetic timelines and used by the protocol node.
"""
from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least p% of values at or below it)."""
    n = len(sorted_values)
    if n == 0:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, got {p}")
    k = max(1, math.ceil(p / 100 * n))
    return sorted_values[k - 1]


def summary(values: Sequence[float], scale: float = 1.0) -> dict[str, float | None]:
    """p50, p99, max and mean of values divided by scale (None for no values)."""
    if not len(values):
        return {"p50": None, "p99": None, "max": None, "mean": None}
    s = sorted(values)
    return {"p50": percentile(s, 50) / scale, "p99": percentile(s, 99) / scale, "max": s[-1] / scale, "mean": sum(s) / len(s) / scale}


def exposures(acks: Sequence[int], sync_ends: Sequence[int], sync_hi: Sequence[int]) -> list[int]:
    """For each acknowledged entry, the time from its ack until a sync covering it returned.

    ``sync_hi[j]`` is how many entries sync j covers (seq < sync_hi[j]); it must not
    decrease.  An ack after its covering sync returned (always, group) has exposure 0.
    Raises ValueError if an entry is not covered by any sync: such an entry was never
    made durable, so its exposure is unbounded, not a number.
    """
    n = len(acks)
    out: list[int] = []
    lo = 0
    prev = 0
    for end, hi in zip(sync_ends, sync_hi):
        if hi < prev:
            raise ValueError(f"sync_hi decreases ({prev} then {hi}): syncs must be listed in order")
        prev = hi
        hi = min(hi, n)
        if hi > lo:
            out.extend(max(0, end - a) for a in acks[lo:hi])
            lo = hi
    if lo < n:
        raise ValueError(f"{n - lo} acknowledged entries (from seq {lo}) are not covered by any sync")
    return out


def intervals(starts: Sequence[int]) -> list[int]:
    """Gaps between consecutive sync starts: the achieved flush interval."""
    return [b - a for a, b in zip(starts, starts[1:])]
