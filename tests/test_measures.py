import pytest

from fsyncstudy.measures import exposures, intervals, percentile, summary


def test_nearest_rank_percentiles():
    xs = list(range(1, 101))
    assert percentile(xs, 50) == 50
    assert percentile(xs, 99) == 99
    assert percentile(xs, 100) == 100
    assert percentile([5], 99) == 5
    assert percentile([], 50) is None
    s = summary([3, 1, 2], scale=1)
    assert (s["p50"], s["max"], s["mean"]) == (2, 3, 2)


def test_exposure_is_time_from_ack_to_the_covering_sync_end():
    # entries acked at 0, 10, 20, 30; sync A (ends 25) covers the first two, sync B (ends 100) the rest
    acks = [0, 10, 20, 30]
    assert exposures(acks, sync_ends=[25, 100], sync_hi=[2, 4]) == [25, 15, 80, 70]


def test_acks_after_their_sync_have_zero_exposure():
    # always / group: each entry acknowledged after its own sync returned
    assert exposures([10, 20, 30], sync_ends=[9, 19, 29], sync_hi=[1, 2, 3]) == [0, 0, 0]


def test_a_sync_that_covers_nothing_new_changes_nothing():
    assert exposures([0, 5], sync_ends=[10, 12, 20], sync_hi=[1, 1, 2]) == [10, 15]


def test_uncovered_entries_have_no_finite_exposure():
    with pytest.raises(ValueError, match="not covered"):
        exposures([0, 5, 9], sync_ends=[10], sync_hi=[2])


def test_syncs_must_be_in_order():
    with pytest.raises(ValueError, match="decreases"):
        exposures([0, 5], sync_ends=[10, 20], sync_hi=[2, 1])


def test_intervals_between_sync_starts():
    assert intervals([0, 10, 25]) == [10, 15]


def test_histogram_buckets_tile_the_line_and_stay_within_a_sixteenth():
    from fsyncstudy.measures import bucket_bounds, bucket_of
    prev = 0
    for i in range(600):
        lo, hi = bucket_bounds(i)
        assert lo == prev and hi > lo and (hi - lo) <= max(1, lo // 16)
        prev = hi
    for v in (1, 15, 16, 17, 1000, 123_456, 10 ** 10):
        lo, hi = bucket_bounds(bucket_of(v))
        assert lo <= v < hi


def test_pooled_percentiles_from_trial_histograms_match_the_pooled_values():
    import random
    from fsyncstudy.measures import (decode_histogram, encode_histogram, histogram, histogram_percentile,
                                     merge_histograms, percentile)
    rng = random.Random(5)
    trials = [[int(rng.lognormvariate(10 + k * 0.3, 0.8)) for _ in range(rng.randrange(50, 5000))] for k in range(6)]
    stored = [encode_histogram(histogram(t)) for t in trials]        # what the dataset keeps per trial
    pooled = merge_histograms(decode_histogram(s) for s in stored)
    values = sorted(v for t in trials for v in t)
    assert sum(pooled.values()) == len(values)
    for p in (50, 90, 99, 99.9, 100):
        exact = percentile(values, p)
        # the bucket's upper end: never below the exact value, above it by at most a sixteenth
        assert exact <= histogram_percentile(pooled, p) <= exact * (1 + 1 / 16) + 1
    assert histogram_percentile({}, 50) is None
