"""The power-cut lab honours the write paths that sync without a sync call: a write with RWF_DSYNC
(pwritev2) and writes on a log opened O_DIRECT|O_DSYNC keep every acknowledged entry at a cut, on a real
FUSE mount of lab:powercut, while entries written with no sync at all are lost there (so the first
two are not vacuous).  The model's part is checked in-process too (no FUSE, no root)."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from fsyncstudy import engine, writepaths
from fsyncstudy.lab import Lab, cut, requirements, reset
from fsyncstudy.lab.powercut import Volume
from fsyncstudy.log import Framer, LogFile, read_log
from fsyncstudy.strategies import parse
from fsyncstudy.trial import payload_for

REQ = requirements()["lab:powercut"]


def test_the_model_syncs_a_write_whose_own_flags_say_o_dsync(disk_dir):
    vol = Volume(disk_dir)
    try:
        fh = vol.create("/f", 0o644, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        vol.fsync(fh, datasync=False)
        vol.write(fh, b"synced by its own flags", 0, os.O_DSYNC)
        vol.write(fh, b" and not this", 23)
        vol.cut()
        assert (disk_dir / "f").read_bytes() == b"synced by its own flags"
    finally:
        vol.close()


@pytest.fixture(scope="module")
def pc():
    """lab:powercut alone, up for this module (its own lab directory), torn down after it."""
    if REQ:
        pytest.skip(f"lab:powercut: {REQ}")
    base = Path(os.environ.get("FSYNCSTUDY_TEST_DIR", "/var/tmp"))
    d = Path(tempfile.mkdtemp(prefix="fsyncstudy-lab-writepaths-", dir=base))
    lab = Lab(d, targets=["powercut"], seed=7)
    try:
        lab.up()
        reason = lab.skipped().get("lab:powercut")
        if reason:
            pytest.skip(f"lab:powercut did not come up here: {reason}")
        yield lab.directory("powercut"), lab.backing("powercut")
    finally:
        lab.down()
        shutil.rmtree(d, ignore_errors=True)


def write_then_cut(pc, sync_method: str, strategy: str, write, n: int = 40) -> tuple[int, int]:
    """``n`` entries through the engine on a fresh log on lab:powercut, then a cut: (acknowledged, kept)."""
    mp, backing = pc
    framer = Framer(payload_for(128))
    log = LogFile(mp, sync_method, "append", 0)
    try:
        tl = engine.run(parse(strategy), log.fd, log.sync_function(own_writes=True), framer, framer.frame_range(0, n),
                        engine.Stop(n), write=write)
        cut(mp)
        kept = read_log(backing / os.path.basename(log.path))
        return tl.entries, kept.entries
    finally:
        log.close()
        reset(mp)
        log.remove()


def test_rwf_dsync_writes_keep_every_acknowledged_entry_at_a_cut(pc):
    acked, kept = write_then_cut(pc, "rwf_dsync", "always", writepaths.rwf_dsync_write)
    assert acked == kept == 40


def test_direct_dsync_writes_keep_every_acknowledged_entry_at_a_cut(pc):
    acked, kept = write_then_cut(pc, "direct_dsync", "always", writepaths.TailBlock(1 << 16).write)
    assert acked == kept == 40


def test_plain_writes_without_a_sync_are_lost_at_a_cut(pc):
    acked, kept = write_then_cut(pc, "fdatasync", "none", None)
    assert acked == 40 and kept == 0
