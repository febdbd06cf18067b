import pytest

from fsyncstudy.strategies import MAX_INTERVAL_MS, StrategyError, parse


@pytest.mark.parametrize("name, kind, interval, durability, window, nominal", [
    ("always", "always", None, "every_write", "0ms", 0.0),
    ("none", "none", None, "os_dependent", "seconds", None),
    ("batch_10ms", "batch", 10, "every_10ms", "10ms", 10.0),
    ("batch_0ms", "batch", 0, "every_0ms", "0ms", 0.0),
    ("batch_60000ms", "batch", 60000, "every_60000ms", "60000ms", 60000.0),
    ("group_0ms", "group", 0, "group_commit", "0ms", 0.0),
    ("group_50ms", "group", 50, "group_commit", "0ms", 0.0),
])
def test_labels_follow_the_table(name, kind, interval, durability, window, nominal):
    st = parse(name)
    assert (st.kind, st.interval_ms, st.durability, st.data_loss_window, st.nominal_loss_window_ms) == (
        kind, interval, durability, window, nominal)
    assert st.acks_durable == (kind in ("always", "group"))


def test_labels_repeat_the_digits_as_spelled():
    assert parse("batch_010ms").durability == "every_010ms"
    assert parse("batch_010ms").interval_ms == 10


@pytest.mark.parametrize("bad", ["", "Always", "batch", "batch_ms", "batch_-1ms", "batch_1.5ms", " none",
                                 f"batch_{MAX_INTERVAL_MS + 1}ms", "batch_10s", 10, None, ["always"]])
def test_unknown_names_are_refused_with_what_is_accepted(bad):
    with pytest.raises(StrategyError, match="always|interval|string"):
        parse(bad)
