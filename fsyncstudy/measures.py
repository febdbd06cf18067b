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


def summary(values: Sequence[float], scale: float = 1.0, presorted: bool = False) -> dict[str, float | None]:
    """p50, p99, max and mean of values divided by scale (None for no values)."""
    if not len(values):
        return {"p50": None, "p99": None, "max": None, "mean": None}
    s = values if presorted else sorted(values)
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


# -- latency histograms -----------------------------------------------------------------------------
# Log-linear buckets (as HdrHistogram's): values below 2**SUB_BITS ns exactly, above that 2**SUB_BITS
# buckets per power of two, so a bucket spans at most 1/16 = 6.25% of its values.  A trial keeps its
# histogram, so percentiles over many trials pooled together can be recomputed from the dataset.

SUB_BITS = 4


def bucket_of(v: int) -> int:
    """The bucket index of a value in ns (0 for values <= 0)."""
    if v <= 0:
        return 0
    e = v.bit_length() - 1
    if e < SUB_BITS:
        return v
    return (e - SUB_BITS + 1) * (1 << SUB_BITS) + ((v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1))


def bucket_bounds(i: int) -> tuple[int, int]:
    """[low, high) in ns of bucket i."""
    k = 1 << SUB_BITS
    if i < k:
        return i, i + 1
    e = i // k + SUB_BITS - 1
    sub = i % k
    width = 1 << (e - SUB_BITS)
    low = (k + sub) * width
    return low, low + width


def histogram(values, presorted: bool = False) -> dict[int, int]:
    """{bucket index: count} of values in ns: one bisect per bucket over the sorted values (a few
    hundred buckets for any trial).  ``presorted``: the values are sorted already."""
    import bisect
    s = values if presorted else sorted(values)
    out: dict[int, int] = {}
    i, n = 0, len(s)
    while i < n:
        b = bucket_of(int(s[i]))
        hi = bucket_bounds(b)[1] if s[i] > 0 else 1
        j = bisect.bisect_left(s, hi, i)
        out[b] = out.get(b, 0) + (j - i)
        i = j
    return out


def encode_histogram(h: dict[int, int]) -> str:
    """'index:count ...' in index order: one string for a CSV cell."""
    return " ".join(f"{i}:{c}" for i, c in sorted(h.items()))


def decode_histogram(text: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for part in (text or "").split():
        i, c = part.split(":")
        out[int(i)] = out.get(int(i), 0) + int(c)
    return out


def merge_histograms(hists) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in hists:
        for i, c in h.items():
            out[i] = out.get(i, 0) + c
    return out


def histogram_percentile(h: dict[int, int], p: float) -> float | None:
    """Nearest-rank percentile from a histogram, as its bucket's upper bound in ns (so never below
    the exact value, and above it by at most one bucket's width, 6.25%)."""
    n = sum(h.values())
    if n == 0:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, got {p}")
    rank = max(1, -(-n * p // 100))
    seen = 0
    for i in sorted(h):
        seen += h[i]
        if seen >= rank:
            lo, hi = bucket_bounds(i)
            return float(hi - 1) if hi - lo > 1 else float(lo)
    return None

