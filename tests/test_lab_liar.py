"""lab:liar's model (fsyncstudy.lab.liar.LiarVolume) in-process: no FUSE, no root.

The liar acknowledges a sync and keeps it only ``window_ms`` after it returned; tests/test_diskcheck.py
checks the same through a real FUSE mount, with our engine writing and the checker finding the loss.
"""
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsyncstudy.lab.liar import LiarVolume
from fsyncstudy.lab.powercut import PAGE

RW_NEW = os.O_RDWR | os.O_CREAT | os.O_EXCL


def backing(vol, name="f") -> bytes:
    with open(os.path.join(vol.root, name), "rb") as f:
        return f.read()


def wait_past(vol):
    """Let the volume's window pass: the liar's cache destages by age, so the test waits real time."""
    time.sleep(vol.window_ms / 1000 + 0.005)


@pytest.fixture
def liar(disk_dir):
    v = LiarVolume(disk_dir, window_ms=30)
    yield v
    v.close()


def test_a_cut_loses_the_syncs_of_the_last_window_and_keeps_older_ones(liar):
    fh = liar.create("/f", 0o644, RW_NEW)
    old = os.urandom(3 * PAGE + 100)
    liar.write(fh, old, 0)
    liar.fsync(fh, datasync=True)
    wait_past(liar)                                   # destaged: on the media now
    liar.write(fh, b"y" * 5000, 2000)                 # overwrites and extends
    liar.fsync(fh, datasync=True)                     # acknowledged...
    assert backing(liar) == old[:2000] + b"y" * 5000 + old[7000:]
    report = liar.cut()
    assert backing(liar) == old                       # ...and lost, to the byte
    assert report.lied_syncs == 1 and report.lied_files == ["/f"]
    assert 0 <= report.newest_lied_age_ms < liar.window_ms
    assert liar.status()["liar"]["lied_syncs"] == 1


def test_with_a_window_of_zero_it_keeps_every_acknowledged_sync(disk_dir):
    vol = LiarVolume(disk_dir, window_ms=0)
    try:
        fh = vol.create("/f", 0o644, RW_NEW)
        vol.write(fh, b"kept", 0)
        vol.fsync(fh, datasync=False)
        report = vol.cut()
        assert backing(vol) == b"kept" and report.lied_syncs == 0
    finally:
        vol.close()


def test_an_o_dsync_write_is_a_sync_it_lies_about_too(liar):
    fh = liar.create("/f", 0o644, RW_NEW | os.O_DSYNC)
    liar.write(fh, b"a" * 100, 0)
    assert backing(liar) == b"a" * 100                # written through at once, as the honest volume does
    assert liar.cut().lied_syncs == 1
    assert backing(liar) == b""                       # a new file whose only sync was lost stays, empty


def test_destaged_syncs_are_forgotten_so_memory_is_one_window(liar):
    fh = liar.create("/f", 0o644, RW_NEW)
    for i in range(20):
        liar.write(fh, b"x" * PAGE, i * PAGE)
        liar.fsync(fh, datasync=True)
    assert liar.status()["liar"]["volatile_syncs"] == 20
    wait_past(liar)
    assert liar.status()["liar"]["volatile_syncs"] == 0
    assert liar._fds == {}                            # its own descriptors closed with the last record
    assert liar.cut().lied_syncs == 0 and backing(liar) == b"x" * 20 * PAGE


def test_the_window_is_changed_by_inject_and_checked(liar):
    liar.inject(liar_window_ms=5.0, sync_delay_ms=0.0)
    assert liar.window_ms == 5.0
    for bad in (-1, float("inf"), "10", True):
        with pytest.raises(ValueError, match="liar_window_ms"):
            liar.inject(liar_window_ms=bad)


OPS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 5 * PAGE), st.integers(1, 2 * PAGE)),
    st.tuples(st.just("truncate"), st.integers(0, 6 * PAGE), st.just(0)),
    st.tuples(st.just("sync"), st.just(0), st.just(0))), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.binary(max_size=3 * PAGE), ops=OPS)
def test_with_a_long_window_a_cut_takes_every_sync_back_to_the_byte(disk_dir, initial, ops):
    # a file already on the media, then writes, truncations and syncs the device keeps in its cache
    path = disk_dir / "f"
    path.write_bytes(initial)
    vol = LiarVolume(disk_dir, window_ms=60_000)
    try:
        fh = vol.open("/f", os.O_RDWR)
        for op, a, b in ops:
            if op == "write":
                vol.write(fh, bytes([len(op) + a % 251]) * b, a)
            elif op == "truncate":
                vol.truncate(None, a, fh)
            else:
                vol.fsync(fh, datasync=False)
        vol.fsync(fh, datasync=False)
        vol.cut()
        assert path.read_bytes() == initial
    finally:
        vol.close()
        path.unlink()


# -- through a real FUSE mount, with the engine writing ------------------------------------------

from fsyncstudy.lab import requirement  # noqa: E402


@pytest.mark.skipif(bool(requirement("liar")), reason=f"lab:liar: {requirement('liar')}")
def test_the_engine_writes_through_lab_liar_and_a_cut_loses_what_it_acknowledged():
    from conftest import REPO
    from fsyncstudy import engine, read_log
    from fsyncstudy.log import Framer, LogFile
    from fsyncstudy.strategies import parse
    from fsyncstudy.trial import payload_for
    from fsyncstudy.lab import Lab, cut, inject, reset
    from fsyncstudy.lab.core import TARGET_NAMES
    import shutil
    import tempfile
    assert "liar" not in TARGET_NAMES                  # never measured unless named
    (REPO / "build" / "lab-test").mkdir(parents=True, exist_ok=True)
    d = tempfile.mkdtemp(prefix="liar-", dir=REPO / "build" / "lab-test")
    with Lab(d, targets=["liar"]) as lab:
        mp = lab.directory("lab:liar")
        assert "LIAR" in lab.describe("lab:liar").label and lab.describe("lab:liar").emulated
        inject(mp, liar_window_ms=60_000.0)            # nothing destages during the test
        log = LogFile(mp, name="liar.log")             # our engine's log, written through the mount
        engine.run(parse("always"), log.fd, log.sync_function(), Framer(payload_for(128)),
                   Framer(payload_for(128)).frame_range(0, 300), engine.Stop(entries=300))
        log.close()
        assert read_log(mp / "liar.log").entries == 300   # every entry synced and acknowledged
        report = cut(mp)
        assert report["lied_syncs"] >= 300 and report["window_ms"] == 60_000.0
        reset(mp)
        assert read_log(mp / "liar.log").entries == 0     # and every one of them gone
    shutil.rmtree(d)
