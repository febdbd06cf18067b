"""Does the disk keep its promise: plausibility per target from a sweep, the flush-honesty check's verdicts,
and the sentences the report says (analysis.promise), on the committed datasets."""
import pytest

from fsyncstudy import analysis, catalog, diskcheck, sweep
from fsyncstudy.targets import LIKELY_CACHE

SWEEP = catalog.DATA / "standard-vm-78139a10-762866"


@pytest.fixture(scope="module")
def committed():
    df, meta = sweep.load(SWEEP)
    return df, meta


def test_a_rotational_disk_that_syncs_in_a_fraction_of_a_millisecond_is_called_cached(committed):
    df, meta = committed
    plaus = analysis.plausibility_table(df, meta).set_index("kind")
    vda = plaus.loc["device"]
    # the sweep measured always's sync on /dev/vda (which says it is rotational) at a fraction of a ms
    assert vda["rotational"] and vda["sync_us_p50"] < 1000
    assert vda["cache_likely"] and "says it is rotational, yet a sync took" in vda["verdict"]


def test_every_target_gets_a_verdict_and_ram_is_never_free_of_a_cache(committed):
    df, meta = committed
    plaus = analysis.plausibility_table(df, meta)
    assert len(plaus) == len(meta["environment"]["targets"]) and plaus["verdict"].str.len().gt(0).all()
    assert plaus.set_index("kind").loc["memory", "cache_likely"]


def test_without_a_measured_sync_a_rotational_device_is_judged_by_its_class_alone(committed):
    df, meta = committed
    plaus = analysis.plausibility_table(df[df["config"] != analysis.promise.REFERENCE_CONFIG], meta)
    vda = plaus.set_index("kind").loc["device"]
    assert vda["sync_us_p50"] is None or vda["sync_us_p50"] != vda["sync_us_p50"]   # None or NaN
    assert "yet a sync took" not in vda["verdict"]


def test_the_checks_verdicts_and_the_sentences_come_from_the_committed_check():
    path = catalog.diskcheck_dataset()
    assert path is not None and path.parent == catalog.DATA
    checks = analysis.diskcheck_table(diskcheck.recorded(path)).set_index("target")
    assert checks.loc["lab:powercut", "lost"] == 0 and checks.loc["lab:powercut", "zero_loss_upper_pct"] > 0
    assert checks.loc["lab:liar", "lost"] > 0 and checks.loc["lab:liar", "pulls_losing"] > 0
    df, meta = sweep.load(SWEEP)
    lines = analysis.promise_lines(analysis.plausibility_table(df, meta), checks.reset_index())
    assert lines[0].startswith("**ext4 on /dev/vda**: " + LIKELY_CACHE)
    assert "The other 8 targets" in lines[1] and "(4)" in lines[1]
    assert any("lab:liar" in line and f"lost {checks.loc['lab:liar', 'lost']:,} of" in line for line in lines)
