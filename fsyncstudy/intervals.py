"""Intervals with the standard library only, for code that must not need scipy (the peers
comparison, pg_test_fsync's sections, and their command lines).

The public API (re-exported by ``fsyncstudy.stats``; notebooks, the CLI and the peers all use it):

- ``mean_interval(values, level=0.95)``: positive values (ops/sec, latencies) on the log scale: the
  geometric mean with the t interval of the logs, exponentiated, so a bound is never negative;
  values that are not all positive: the mean with its t interval.
- ``ratio_interval(numerator, denominator, pairs=None, level=0.95)``: paired by round when ``pairs``
  is given (the geometric mean of the per-round ratios, t interval of the log ratios), else the
  ratio of geometric means with Welch's t interval of the log difference.
- ``quantile_interval(values, q, level=0.95)``: a distribution-free interval from order statistics,
  only where the sample is large enough for one (the maximum never gets one).
- ``zero_events_upper(n, level=0.95)``: the upper bound of a rate when 0 events were seen in n tries.

Each returns an ``Interval`` (estimate, low, high, method, n), the package's one interval type: NaN
bounds mean no interval (a NaN estimate: no values), and the method says why; NaN, not None, so a
column of them is a float column in pandas.  Coverage is checked by simulation in
``tests/test_coverage.py``: at n = 3, 5 and 10 the t intervals cover 95% of the time; the bootstrap
(BCa) intervals this package used before covered 70-87% at those n and are no longer used below 20
values.

Helpers over an ``Interval``:

- ``paired_ratio_ci``: ``ratio_interval`` paired by position, at 95% (rounds are paired, so drift on a
  shared machine cancels);
- ``against_aim`` and ``where``: how an interval stands against a threshold, or a value against an interval;
- ``none_if_nan``: a missing number as None, where it leaves for JSON (which has no NaN).

t quantiles at 95% come from a table (df <= 30) and a Cornish-Fisher expansion beyond (error < 1e-5);
at other levels from the exact t distribution for integer df (Abramowitz & Stegun 26.7.3-4),
inverted by bisection.  Tests check both against scipy.
"""
from __future__ import annotations

import functools
import math
import statistics
from typing import NamedTuple

#: Student's t 97.5% quantiles for 1..30 degrees of freedom.
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
         2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
         2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)
#: How a table's 95% intervals were made, for its ``ci_method`` and the captions: ``mean_interval`` over
#: trials, and ``ratio_interval`` paired by round (the words its ``method`` gives them at 95%).
T_METHOD = "geometric mean, 95% t interval on the log scale, over trials"
RATIO_METHOD = "geometric mean of per-round ratios, 95% t interval of the log ratios"


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with df degrees of freedom (two-sided 95%)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    g1 = (z ** 3 + z) / 4
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
    return z + g1 / df + g2 / df ** 2 + g3 / df ** 3


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


NAN = float("nan")


class Interval(NamedTuple):
    """An estimate with its interval; ``low``/``high`` are NaN when there is none, and ``method`` says
    how it was made (or why there is none)."""

    estimate: float
    low: float
    high: float
    method: str
    n: int = 0

    def has_estimate(self) -> bool:
        return self.estimate == self.estimate

    def has_interval(self) -> bool:
        return self.low == self.low and self.high == self.high

    def contains(self, x: float) -> bool:
        return self.has_interval() and self.low <= x <= self.high


def _t_abs_cdf(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer df (Abramowitz & Stegun 26.7.3 and 26.7.4)."""
    th = math.atan(t / math.sqrt(df))
    c2, sn, cs = math.cos(th) ** 2, math.sin(th), math.cos(th)
    if df % 2:
        if df == 1:
            return 2 * th / math.pi
        term = total = 1.0
        for k in range(1, (df - 3) // 2 + 1):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (th + sn * cs * total)
    term = total = 1.0
    for k in range(1, (df - 2) // 2 + 1):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return sn * total


@functools.lru_cache(maxsize=512)
def t_quantile(p: float, df: int) -> float:
    """The p quantile of Student's t (0.5 < p < 1) with df degrees of freedom (df >= 1, whole)."""
    if not 0.5 < p < 1:
        raise ValueError(f"p must be in (0.5, 1), got {p}")
    df = int(df)
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if abs(p - 0.975) < 1e-12:
        return t975(df)
    target = 2 * p - 1
    if df > 2000:   # the series would be long; Cornish-Fisher is exact to 1e-9 here
        z = statistics.NormalDist().inv_cdf(p)
        return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
    lo, hi = 0.0, 1.0
    while _t_abs_cdf(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_abs_cdf(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * hi:
            break
    return (lo + hi) / 2


def _pct(level: float) -> str:
    return f"{100 * level:g}%"


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    return float(level)


def mean_interval(values, level: float = 0.95) -> Interval:
    """The centre of ``values`` with its t interval; positive values on the log scale.

    All values positive: the geometric mean, with the t interval of the log values exponentiated
    (never a negative bound; for skewed data such as lognormal throughput it covers the geometric
    mean, which is the median).  Otherwise: the arithmetic mean with its t interval.  Missing and
    non-finite values are left out; fewer than two values give no interval.
    """
    level = _check_level(level)
    xs = _finite(values)
    if not xs:
        return Interval(NAN, NAN, NAN, "no values", 0)
    n = len(xs)
    logs = all(x > 0 for x in xs)
    ys = [math.log(x) for x in xs] if logs else xs
    m = statistics.fmean(ys)
    back = math.exp if logs else (lambda v: v)
    if n < 2:
        return Interval(back(m), NAN, NAN, "one value: no interval", 1)
    h = t_quantile(0.5 + level / 2, n - 1) * statistics.stdev(ys) / math.sqrt(n)
    method = (f"geometric mean, {_pct(level)} t interval on the log scale" if logs
              else f"mean, {_pct(level)} t interval")
    return Interval(back(m), back(m - h), back(m + h), method, n)


def _by_round(values, rounds) -> dict:
    out: dict = {}
    for v, r in zip(values, rounds):
        if v is not None and v == v and math.isfinite(v) and v > 0:
            out.setdefault(r, []).append(math.log(v))
    return {r: statistics.fmean(v) for r, v in out.items()}


def ratio_interval(numerator, denominator, pairs=None, level: float = 0.95) -> Interval:
    """numerator / denominator for positive quantities, with its interval on the log scale.

    ``pairs`` None: the two sides share nothing; the ratio of their geometric means, with Welch's t
    interval of the difference of the log means (degrees of freedom by Welch-Satterthwaite, rounded
    down: a little wider, never narrower).  ``pairs`` True: the i-th values of the two sides belong
    together (one round).  ``pairs`` a sequence of round labels (one per value, both sides the same
    length) or a tuple of two sequences (the rounds of the numerator's values, the rounds of the
    denominator's): the values are matched by round (several in one round: their geometric mean),
    rounds with only one side are left out, and the estimate is the geometric mean of the per-round
    ratios with the t interval of the log ratios.  Non-positive and missing values are left out.
    """
    level = _check_level(level)
    q = 0.5 + level / 2
    numerator = [NAN if v is None else float(v) for v in numerator]
    denominator = [NAN if v is None else float(v) for v in denominator]
    if pairs is not None and pairs is not False:
        if pairs is True:
            if len(numerator) != len(denominator):
                raise ValueError(f"pairs=True needs sides of one length, got {len(numerator)} and {len(denominator)}")
            pairs = list(range(len(numerator)))
        if isinstance(pairs, tuple) and len(pairs) == 2 and not isinstance(pairs[0], (str, int, float)):
            rn, rd = list(pairs[0]), list(pairs[1])
        else:
            rn = rd = list(pairs)
        if len(rn) != len(numerator) or len(rd) != len(denominator):
            raise ValueError(f"pairs must give one round per value: {len(numerator)} and {len(denominator)} "
                             f"values, {len(rn)} and {len(rd)} rounds")
        a, b = _by_round(numerator, rn), _by_round(denominator, rd)
        logs = [a[r] - b[r] for r in a if r in b]
        n = len(logs)
        if n == 0:
            return Interval(NAN, NAN, NAN, "no round has both sides", 0)
        m = statistics.fmean(logs)
        if n < 2:
            return Interval(math.exp(m), NAN, NAN, "one round: no interval", 1)
        h = t_quantile(q, n - 1) * statistics.stdev(logs) / math.sqrt(n)
        return Interval(math.exp(m), math.exp(m - h), math.exp(m + h),
                        f"geometric mean of per-round ratios, {_pct(level)} t interval of the log ratios", n)
    a, b = _positive_logs(numerator), _positive_logs(denominator)
    if not a or not b:
        return Interval(NAN, NAN, NAN, "a side has no positive values", 0)
    d = statistics.fmean(a) - statistics.fmean(b)
    n = min(len(a), len(b))
    if len(a) < 2 or len(b) < 2:
        return Interval(math.exp(d), NAN, NAN, "fewer than two values a side: no interval", n)
    method = f"ratio of geometric means, {_pct(level)} Welch t interval of the log difference"
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(math.exp(d), math.exp(d), math.exp(d), method, n)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = t_quantile(q, max(1, int(df))) * se
    return Interval(math.exp(d), math.exp(d - h), math.exp(d + h), method, n)


def _binom_cdfs(n: int, p: float) -> list[float]:
    """[P(X <= k) for k in 0..n] for X ~ Binomial(n, p), from the pmf in log space (no overflow)."""
    lp, lq = math.log(p), math.log1p(-p)
    out, total = [], 0.0
    for k in range(n + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lp + (n - k) * lq)
        out.append(min(1.0, total))
    return out


def quantile_interval(values, q: float, level: float = 0.95) -> Interval:
    """The q-th percentile (q in 0..100, nearest rank) with a distribution-free interval between two
    order statistics that covers the true quantile with probability >= ``level`` whatever the
    distribution (from the binomial count of values at or below it).

    No interval where the sample cannot give one (at 95%, the p99 of fewer than 368 values; the
    maximum never: the true worst case may lie beyond anything seen).
    """
    level = _check_level(level)
    xs = sorted(_finite(values))
    n = len(xs)
    if not n:
        return Interval(NAN, NAN, NAN, "no values", 0)
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in 0..100, got {q}")
    est = xs[max(0, math.ceil(q / 100 * n) - 1)]
    if q >= 100:
        return Interval(est, NAN, NAN, "the maximum: no interval (the worst case may be worse)", n)
    p, a = q / 100, (1 - level) / 2
    if p <= 0:
        return Interval(est, NAN, NAN, "the minimum: no interval", n)
    # B ~ Binomial(n, p) counts the values below the true quantile.  X_(l) <= quantile iff B >= l,
    # X_(u) >= quantile iff B <= u - 1: take the largest l and the smallest u with each at >= 1 - a.
    cdf = _binom_cdfs(n, p)
    lo_rank = next((r for r in range(n, 0, -1) if 1 - cdf[r - 1] >= 1 - a), None)
    hi_rank = next((u for u in range(1, n + 1) if cdf[u - 1] >= 1 - a), None)
    if lo_rank is None or hi_rank is None:
        return Interval(est, NAN, NAN, f"too few values ({n}) for a {_pct(level)} interval of p{q:g}", n)
    return Interval(est, xs[lo_rank - 1], xs[hi_rank - 1],
                    f"{_pct(level)} distribution-free interval from order statistics", n)


def zero_events_upper(n: int, level: float = 0.95) -> float:
    """The one-sided upper confidence bound on a probability when none of n tries had the event
    (exact binomial, Clopper-Pearson: 1 - (1 - level)^(1/n); about 3/n at 95%)."""
    level = _check_level(level)
    if n <= 0:
        return 1.0
    return 1 - (1 - level) ** (1 / n)


def equivalence(numerator, denominator, margin: float, pairs=None, alpha: float = 0.05) -> tuple[str, Interval]:
    """Two one-sided tests (TOST) that numerator/denominator lies within ``margin`` of 1 on the log
    scale, i.e. in [1 - margin, 1 / (1 - margin)]: equivalent at level ``alpha`` exactly when the
    ratio's (1 - 2 alpha) interval (``ratio_interval``, 90% by default) lies inside those bounds.

    Returns the verdict and that interval: 'equivalent'; 'below' or 'above' when the whole interval
    lies beyond a bound (a difference larger than the margin); 'unclear' when it crosses a bound (too
    few rounds or too much noise to tell); '' without an interval.
    """
    if not 0 < margin < 1:
        raise ValueError(f"margin must be between 0 and 1, got {margin}")
    iv = ratio_interval(numerator, denominator, pairs=pairs, level=1 - 2 * alpha)
    if not iv.has_interval():
        return "", iv
    lo_b, hi_b = 1 - margin, 1 / (1 - margin)
    if lo_b <= iv.low and iv.high <= hi_b:
        return "equivalent", iv
    if iv.high < lo_b:
        return "below", iv
    if iv.low > hi_b:
        return "above", iv
    return "unclear", iv


def _positive_logs(values) -> list[float]:
    return [math.log(v) for v in _finite(values) if v > 0]


def paired_ratio_ci(numerator, denominator) -> Interval:
    """``ratio_interval`` paired by position, at 95%: the i-th values of both sides are one round (the
    longer side is cut to the shorter)."""
    num, den = list(numerator), list(denominator)
    k = min(len(num), len(den))
    return ratio_interval(num[:k], den[:k], pairs=True)


def against_aim(e: Interval, aim: float) -> str:
    """'meets' when the whole interval is at or above ``aim``, 'short' when wholly below, 'unclear'
    when it straddles it; with a single value the point estimate decides; '' without one."""
    if not e.has_estimate():
        return ""
    lo, hi = (e.low, e.high) if e.has_interval() else (e.estimate, e.estimate)
    return "meets" if lo >= aim else ("short" if hi < aim else "unclear")


def where(x: float | None, e: Interval) -> str:
    """'within', 'below' or 'above' ``e``'s interval; '' when either is missing."""
    if x is None or not e.has_interval():
        return ""
    return "within" if e.low <= x <= e.high else ("below" if x < e.low else "above")


def none_if_nan(x: float | None) -> float | None:
    """An estimate or bound with None for NaN (no value, no interval): for JSON, which has no NaN, and
    for formats that show None as '-'."""
    return None if x is None or x != x else x
