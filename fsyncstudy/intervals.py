"""Intervals with the standard library only, for code that must not need scipy (the peers
comparison, pg_test_fsync's sections, and their command lines).

- ``mean_ci``: a mean over rounds or trials with its 95% Student t interval;
- ``paired_ratio_ci``: the geometric mean of paired per-round ratios, with the t interval of
  the log ratios exponentiated (rounds are paired, so drift on a shared machine cancels; the
  interval is never negative);
- ``unpaired_ratio_ci``: the ratio of two runs' geometric means, with Welch's t interval of the
  difference of their log means (two runs share no rounds);
- ``against_aim`` and ``where``: how an interval stands against a threshold or another interval.

t quantiles come from a table (df <= 30) and a Cornish-Fisher expansion beyond (error < 1e-5;
tests check them against scipy).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

#: Student's t 97.5% quantiles for 1..30 degrees of freedom.
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
         2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
         2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)
T_METHOD = "95% t interval over rounds"
RATIO_METHOD = "geometric mean of paired per-round ratios, 95% t interval of the log ratios"


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


@dataclass
class Estimate:
    """An estimate with its 95% interval (low/high None with fewer than two values)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def contains(self, x: float) -> bool | None:
        if self.low is None or self.high is None:
            return None
        return self.low <= x <= self.high


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_ci(values) -> Estimate:
    """The mean with its 95% Student t interval (missing and non-finite values left out)."""
    xs = _finite(values)
    if not xs:
        return Estimate(None, None, None, 0)
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return Estimate(m, None, None, 1)
    h = t975(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return Estimate(m, m - h, m + h, len(xs))


def paired_ratio_ci(numerator, denominator) -> Estimate:
    """Geometric mean of the paired ratios numerator/denominator, with a t interval on the log scale.

    Pairs where either side is missing or zero are left out.
    """
    logs = [math.log(a / b) for a, b in zip(numerator, denominator)
            if a is not None and b is not None and a == a and b == b and a > 0 and b > 0]
    e = mean_ci(logs)
    if e.mean is None:
        return e
    return Estimate(math.exp(e.mean), None if e.low is None else math.exp(e.low),
                    None if e.high is None else math.exp(e.high), e.n)


def _positive_logs(values) -> list[float]:
    return [math.log(v) for v in _finite(values) if v > 0]


def unpaired_ratio_ci(numerator, denominator) -> Estimate:
    """geomean(numerator) / geomean(denominator), with Welch's 95% t interval of the difference of
    the log means, exponentiated (degrees of freedom by Welch-Satterthwaite, rounded down: a little
    wider, never narrower).  ``n`` is the smaller side's count; no interval below two values a side."""
    a, b = _positive_logs(numerator), _positive_logs(denominator)
    if not a or not b:
        return Estimate(None, None, None, 0)
    d = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Estimate(math.exp(d), None, None, min(len(a), len(b)))
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(math.exp(d), math.exp(d), math.exp(d), min(len(a), len(b)))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = t975(max(1, int(df))) * se
    return Estimate(math.exp(d), math.exp(d - h), math.exp(d + h), min(len(a), len(b)))


def against_aim(e: Estimate, aim: float) -> str:
    """'meets' when the whole interval is at or above ``aim``, 'short' when wholly below, 'unclear'
    when it straddles it; with a single value the point estimate decides; '' without one."""
    if e.mean is None:
        return ""
    lo, hi = (e.mean, e.mean) if e.low is None else (e.low, e.high)
    return "meets" if lo >= aim else ("short" if hi < aim else "unclear")


def where(x: float | None, e: Estimate) -> str:
    """'within', 'below' or 'above' ``e``'s interval; '' when either is missing."""
    if x is None or e.low is None or e.high is None:
        return ""
    return "within" if e.low <= x <= e.high else ("below" if x < e.low else "above")
