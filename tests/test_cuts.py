"""The power-cut harness on its own: real forked children, real pipes, real SIGKILLs."""
import os
import time

import pytest

from fsyncstudy import cuts


class Noted(cuts.ProcessCut):
    """A cut that leaves the child running (as a power cut does until the harness kills it)."""

    def __init__(self, directory):
        super().__init__(directory)
        self.calls = 0

    def cut(self, pid):
        self.calls += 1


def acking(fd):
    cuts.ready(fd)
    n = 0
    while True:
        n += 1
        cuts.ack(fd, n)
        time.sleep(0.0005)


def test_acknowledgements_are_counted_up_to_the_cut_and_none_after(tmp_path):
    cutter = Noted(tmp_path)
    seen = cuts.run_cut(acking, 40.0, cutter)
    assert cutter.calls == 1
    assert seen.acked > 10 and seen.his == sorted(seen.his)
    assert all(t <= seen.t_cut for t in seen.ts) and seen.failure == ""


def test_a_report_made_after_the_cut_is_not_an_acknowledgement():
    # a write() that returned into a frozen mount's page cache, reported after the power was cut
    buf = bytearray(cuts.ACK.pack(1, 100) + cuts.ACK.pack(2, 200) + cuts.ACK.pack(3, 301))
    assert cuts._parse(buf, 300) == ([1, 2], [100, 200], "")
    text = b"OSError: [Errno 5] Input/output error"
    buf += cuts.ACK.pack(cuts.FAILED, len(text)) + text
    assert cuts._parse(buf, 300)[2] == text.decode()


def test_the_tally_finds_the_first_lost_acknowledgement():
    seen = cuts.Observed(t_cut=10_000_000, his=[1, 2, 5, 6], ts=[1_000_000, 2_000_000, 6_000_000, 9_000_000])
    # 3 recovered: entries 4..6 are lost, the first of them acknowledged by the report at 6 ms
    assert seen.tally(3) == dict(acked=6, lost_acked=3, oldest_lost_age_ms=4.0, newest_ack_age_ms=1.0)
    assert seen.tally(6)["lost_acked"] == 0 and seen.tally(6)["oldest_lost_age_ms"] is None
    assert seen.tally(None)["lost_acked"] is None   # nothing readable: the loss is unknown, not zero


def test_a_child_that_fails_before_it_is_ready_is_an_error_with_its_own_words(tmp_path):
    def broken(fd):
        raise FileNotFoundError("no such log directory")
    with pytest.raises(cuts.CutError, match="did not start: FileNotFoundError: no such log directory"):
        cuts.run_cut(broken, 10.0, cuts.ProcessCut(tmp_path))


def test_a_child_that_never_gets_ready_times_out_with_the_callers_context(tmp_path):
    def silent(fd):
        time.sleep(60)
    t = time.monotonic()
    with pytest.raises(cuts.CutError, match="client did not start: the server said no"):
        cuts.run_cut(silent, 10.0, cuts.ProcessCut(tmp_path), who="client", ready_timeout_s=0.3,
                     context=lambda: "the server said no")
    assert time.monotonic() - t < 10


def test_a_process_cut_kills_the_child(tmp_path):
    pids = []

    class Recording(cuts.ProcessCut):
        def cut(self, pid):
            pids.append(pid)
            super().cut(pid)
    cuts.run_cut(acking, 20.0, Recording(tmp_path))
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)   # reaped by the harness: nothing left running


def test_one_rule_for_a_durable_setting_that_lost_an_acknowledgement():
    assert cuts.durable_lost({"lost_acked": 2, "error": ""}, acks_durable=True)
    assert not cuts.durable_lost({"lost_acked": 2, "error": ""}, acks_durable=False)
    assert not cuts.durable_lost({"lost_acked": 0, "error": ""}, acks_durable=True)
    assert not cuts.durable_lost({"lost_acked": None, "error": "DatabaseError: x"}, acks_durable=True)


def test_the_moment_is_seeded_by_what_names_the_cut():
    a = cuts.moment_ms(7, (30.0, 400.0), "power", "always", 3)
    assert a == cuts.moment_ms(7, (30.0, 400.0), "power", "always", 3) and 30.0 <= a <= 400.0
    assert a != cuts.moment_ms(7, (30.0, 400.0), "power", "always", 4)
