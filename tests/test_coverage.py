"""The intervals cover what they claim: a seeded simulation with the package's own functions.

Each case draws 2,000 samples from a known distribution and counts how often the 95% interval
holds the true value; the standard error of such a count is 0.5 points, so 93% is four of them
below the claim.  For positive data the estimand is the geometric mean (for a lognormal, its
median; for a normal with a 10% spread, within 0.5% of its mean, which is what is checked there).
"""
import math
import random

import pytest

from fsyncstudy import stats
from fsyncstudy.intervals import mean_interval, quantile_interval, ratio_interval, zero_events_upper

REPS = 2000


def coverage(draw, interval, truth, seed):
    rng = random.Random(seed)
    hits = 0
    for _ in range(REPS):
        iv = interval(*draw(rng))
        assert iv.has_interval(), iv.method
        hits += iv.low <= truth <= iv.high
    return hits / REPS


@pytest.mark.parametrize("n", [3, 5, 10])
def test_mean_interval_covers_normal_data(n):
    c = coverage(lambda r: ([r.gauss(100, 10) for _ in range(n)],), mean_interval, 100, seed=n)
    assert c >= 0.93, c


@pytest.mark.parametrize("n", [3, 5, 10])
def test_mean_interval_covers_lognormal_data_and_is_never_negative(n):
    # sigma 0.5 on the log scale: a spread of about 50%, heavier than any trial-to-trial spread measured
    rng = random.Random(99)
    assert all(mean_interval([rng.lognormvariate(0, 1.5) for _ in range(n)]).low > 0 for _ in range(200))
    c = coverage(lambda r: ([r.lognormvariate(math.log(5000), 0.5) for _ in range(n)],), mean_interval, 5000,
                 seed=10 + n)
    assert c >= 0.93, c


@pytest.mark.parametrize("n", [3, 5, 10])
def test_unpaired_ratio_covers_a_noisy_side_over_a_tight_one(n):
    def draw(r):
        return ([r.lognormvariate(math.log(2), 0.5) for _ in range(n)],
                [r.lognormvariate(0, 0.05) for _ in range(n)])
    c = coverage(draw, ratio_interval, 2.0, seed=20 + n)
    assert c >= 0.93, c


@pytest.mark.parametrize("n", [3, 5, 10])
def test_paired_ratio_covers_when_rounds_drift(n):
    # each round slows or speeds both sides together (a 30% spread); pairing takes it out
    def draw(r):
        rounds = [r.lognormvariate(0, 0.3) for _ in range(n)]
        return ([g * r.lognormvariate(math.log(2), 0.1) for g in rounds],
                [g * r.lognormvariate(0, 0.02) for g in rounds], list(range(n)))

    def paired(num, den, rounds):
        return ratio_interval(num, den, pairs=rounds)
    c = coverage(draw, paired, 2.0, seed=30 + n)
    assert c >= 0.93, c
    # the same data unpaired still covers, but the interval is wider: pairing is worth having
    rng = random.Random(1)
    num, den, rounds = draw(rng)
    p, u = ratio_interval(num, den, pairs=rounds), ratio_interval(num, den)
    assert p.high / p.low < u.high / u.low


def test_other_levels_cover_what_they_claim():
    c = coverage(lambda r: ([r.gauss(100, 10) for _ in range(5)],), lambda x: mean_interval(x, level=0.8), 100, 40)
    assert 0.77 <= c <= 0.83, c


def test_quantile_intervals_cover_and_are_withheld_where_they_cannot():
    # p99 of 100 cuts: a bootstrap interval covered 63%; here there is none, and it says so
    iv = quantile_interval(range(100), 99)
    assert not iv.has_interval() and "too few" in iv.method
    assert not quantile_interval(range(10_000), 100).has_interval()
    truth = -math.log(0.01)   # the p99 of an exponential with mean 1
    c = coverage(lambda r: ([r.expovariate(1) for _ in range(400)],), lambda x: quantile_interval(x, 99), truth, 50)
    assert c >= 0.93, c
    c = coverage(lambda r: ([r.expovariate(1) for _ in range(20)],), lambda x: quantile_interval(x, 50), math.log(2), 51)
    assert c >= 0.93, c


def test_zero_events_upper_bound_covers():
    # 0 lost in 400 cuts: the rate is below 0.75% with 95% confidence (about 3/n)
    assert zero_events_upper(400) == pytest.approx(1 - 0.05 ** (1 / 400))
    assert 0.0074 < zero_events_upper(400) < 0.0075
    # when the true rate equals the bound, seeing 0 in n happens 5% of the time
    p, n = zero_events_upper(60), 60
    assert (1 - p) ** n == pytest.approx(0.05)


def test_the_package_uses_one_interval_api():
    assert stats.mean_interval is mean_interval and stats.ratio_interval is ratio_interval
