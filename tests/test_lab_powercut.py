"""The power-cut model (fsyncstudy.lab.powercut.Volume) in-process: no FUSE, no root.

What a power cut keeps is decided here; tests/test_lab.py checks the same through a
real FUSE mount.
"""
import errno
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsyncstudy.lab.powercut import PAGE, Faults, Volume, check_faults

RW_NEW = os.O_RDWR | os.O_CREAT | os.O_EXCL


@pytest.fixture
def vol(disk_dir):
    v = Volume(disk_dir)
    yield v
    v.close()


def backing(vol, name="f") -> bytes:
    with open(os.path.join(vol.root, name), "rb") as f:
        return f.read()


def new_durable_file(vol, path="/f") -> int:
    fh = vol.create(path, 0o644, RW_NEW)
    vol.fsync(fh, datasync=False)
    return fh


def test_synced_data_survives_a_cut_byte_for_byte_and_unsynced_data_does_not(vol):
    fh = new_durable_file(vol)
    synced = os.urandom(10_000)
    vol.write(fh, synced, 0)
    vol.fsync(fh, datasync=True)
    vol.write(fh, b"x" * 5000, 3000)        # overwrites synced bytes and extends the file
    assert vol.read(fh, 20_000, 0) == synced[:3000] + b"x" * 5000 + synced[8000:]
    report = vol.cut()
    assert backing(vol) == synced
    assert report.files_with_unsynced_data == ["/f"]
    with pytest.raises(OSError) as e:
        vol.read(fh, 10, 0)
    assert e.value.errno == errno.EIO


def test_a_cut_freezes_until_reset_and_old_handles_stay_dead(vol):
    fh = new_durable_file(vol)
    vol.cut()
    for call in (lambda: vol.stat("/f"), lambda: vol.open("/f", os.O_RDONLY), lambda: vol.write(fh, b"a", 0)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EIO
    vol.reset()
    with pytest.raises(OSError):
        vol.write(fh, b"a", 0)
    fh2 = vol.open("/f", os.O_RDWR)
    vol.write(fh2, b"abc", 0)
    assert vol.read(fh2, 10, 0) == b"abc"
    vol.release(fh)
    vol.release(fh2)


def test_a_new_file_never_synced_is_gone_after_a_cut_but_a_directory_sync_keeps_it(vol):
    vol.mkdir("/sub", 0o755)
    fh = vol.create("/sub/new", 0o644, RW_NEW)
    vol.write(fh, b"data", 0)
    vol.release(fh)
    fh = vol.create("/kept", 0o644, RW_NEW)
    vol.release(fh)
    dh = vol.opendir("/")
    vol.fsyncdir(dh, datasync=False)         # covers /kept, not /sub/new
    report = vol.cut()
    assert report.removed_unsynced_files == ["/sub/new"]
    assert sorted(os.listdir(vol.root)) == ["kept", "sub"] and os.listdir(os.path.join(vol.root, "sub")) == []
    assert backing(vol, "kept") == b""
    os.rmdir(os.path.join(vol.root, "sub"))


def test_dirty_data_of_a_closed_file_stays_cached_until_a_sync_or_a_cut(vol):
    fh = new_durable_file(vol)
    vol.write(fh, b"hello", 0)
    vol.release(fh)                          # close(2) does not sync
    assert vol.unsynced()[0]["path"] == "/f"
    fh = vol.open("/f", os.O_RDONLY)
    assert vol.read(fh, 5, 0) == b"hello"
    vol.fsync(fh, datasync=True)            # fsync through a read-only descriptor syncs too
    vol.release(fh)
    vol.cut()
    assert backing(vol) == b"hello"


def test_truncate_then_extend_reads_zeros_not_the_old_bytes(vol):
    fh = new_durable_file(vol)
    vol.write(fh, b"A" * 3 * PAGE, 0)
    vol.fsync(fh, datasync=True)
    vol.truncate(None, 100, fh)
    vol.truncate(None, 2 * PAGE, fh)
    assert vol.read(fh, 3 * PAGE, 0) == b"A" * 100 + bytes(2 * PAGE - 100)
    vol.cut()
    assert backing(vol) == b"A" * 3 * PAGE   # the truncation was never synced
    vol.reset()


def test_o_dsync_and_o_sync_writes_are_durable_when_they_return(vol):
    for flag in (os.O_DSYNC, os.O_SYNC):
        vol.reset()
        name = f"/s{flag}"
        fh = vol.create(name, 0o644, RW_NEW | flag)
        vol.write(fh, b"sync", 0)
        vol.cut()
        assert backing(vol, name[1:]) == b"sync"


def test_fallocate_extends_with_zeros_and_is_kept_only_when_synced(vol):
    fh = new_durable_file(vol)
    vol.fallocate(fh, 0, 0, 3 * PAGE)
    assert vol.stat(None, fh)["st_size"] == 3 * PAGE
    vol.write(fh, b"r" * 144, 0)
    vol.fsync(fh, datasync=True)
    vol.write(fh, b"s" * 144, 144)
    vol.cut()
    assert backing(vol) == b"r" * 144 + bytes(3 * PAGE - 144)


def test_tear_keeps_the_last_unsynced_write_up_to_its_last_page_boundary(vol):
    fh = new_durable_file(vol)
    vol.write(fh, b"a" * 4032, 0)
    vol.fsync(fh, datasync=True)
    vol.write(fh, b"b" * 144, 4032)         # crosses the page boundary at 4096
    report = vol.cut(tear=True)
    assert report.torn == {"path": "/f", "offset": 4032, "bytes": 144, "kept_bytes": 64, "lost_bytes": 80}
    assert backing(vol) == b"a" * 4032 + b"b" * 64


def test_tear_of_a_write_within_one_page_drops_it_whole_and_says_so(vol):
    fh = new_durable_file(vol)
    vol.write(fh, b"a" * 100, 0)
    report = vol.cut(tear=True)
    assert report.torn is None and "within one page" in report.tear_note
    assert backing(vol) == b""


def test_injected_fsync_eio_marks_the_data_clean_without_writing_it(vol):
    """fsyncgate: after a failed fsync a retry succeeds, yet the data never reaches the disk."""
    fh = new_durable_file(vol)
    vol.inject(fsync_eio="once")
    vol.write(fh, b"lost", 0)
    with pytest.raises(OSError) as e:
        vol.fsync(fh, datasync=True)
    assert e.value.errno == errno.EIO
    assert vol.read(fh, 4, 0) == b"lost"     # still in the cache
    vol.fsync(fh, datasync=True)             # the retry "succeeds"
    vol.cut()
    assert backing(vol) == bytes(4)          # the size was persisted, the data was not


def test_fsync_eio_after_lets_syncs_through_first_and_always_keeps_failing(vol):
    fh = vol.create("/f", 0o644, RW_NEW)
    vol.inject(fsync_eio="always", fsync_eio_after=2)
    vol.fsync(fh, True)
    vol.fsync(fh, True)
    for _ in range(3):
        with pytest.raises(OSError):
            vol.fsync(fh, True)
    vol.inject(fsync_eio=None)
    vol.fsync(fh, True)


def test_enospc_after_bytes_gives_a_short_write_then_enospc(vol):
    fh = new_durable_file(vol)
    vol.inject(enospc_after_bytes=1000)
    assert vol.write(fh, b"a" * 600, 0) == 600
    assert vol.write(fh, b"b" * 600, 600) == 400
    with pytest.raises(OSError) as e:
        vol.write(fh, b"c", 1000)
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as e:
        vol.fallocate(fh, 0, 0, 1 << 20)
    assert e.value.errno == errno.ENOSPC


def test_fault_settings_are_checked():
    with pytest.raises(ValueError, match="fsync_eio must be"):
        check_faults(Faults(fsync_eio="sometimes"))
    with pytest.raises(ValueError, match="enospc_after_bytes"):
        check_faults(Faults(enospc_after_bytes=-1))
    for bad in (float("inf"), float("nan"), -1.0, 1e300):
        with pytest.raises(ValueError, match="sync_delay_ms must be a number of milliseconds"):
            check_faults(Faults(sync_delay_ms=bad))


def test_unknown_fault_setting_is_refused(vol):
    with pytest.raises(TypeError):
        vol.inject(fsync_eio_every=3)
    with pytest.raises(ValueError, match="sync_delay_dist"):
        vol.inject(sync_delay_dist="pareto")


def test_the_sync_delay_is_drawn_from_its_distribution(disk_dir):
    v = Volume(disk_dir, faults=Faults(sync_delay_ms=8, sync_delay_dist="uniform", sync_delay_spread_ms=4), seed=1)
    draws = [v._draw_delay_s() * 1000 for _ in range(2000)]
    assert 4 <= min(draws) and max(draws) <= 12 and 7.5 < sum(draws) / len(draws) < 8.5
    v.inject(sync_delay_dist="fixed", sync_delay_ms=0.1)
    assert v._draw_delay_s() == pytest.approx(0.0001)
    v.close()


# -- the model against a reference byte image ------------------------------------------

OFFSETS = st.integers(0, 5 * PAGE)
OPS = st.lists(st.one_of(
    st.tuples(st.just("write"), OFFSETS, st.integers(1, 2 * PAGE + 7)),
    st.tuples(st.just("truncate"), OFFSETS, st.just(0)),
    st.tuples(st.just("fallocate"), OFFSETS, st.integers(1, 2 * PAGE)),
    st.tuples(st.just("sync"), st.just(0), st.just(0)),
    st.tuples(st.just("reopen"), st.just(0), st.just(0)),
), max_size=25)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, tear=st.booleans())
def test_reads_match_the_written_bytes_and_a_cut_leaves_exactly_the_last_synced_image(tmp_path_factory, ops,
                                                                                        tear):
    d = tmp_path_factory.mktemp("vol")
    vol = Volume(d, backing_sync=False)
    fh = new_durable_file(vol)
    logical, durable = bytearray(), b""
    counter = 0
    last_unsynced = None
    for op, a, b in ops:
        if op == "write":
            counter += 1
            data = bytes([counter % 251 + 1]) * b
            vol.write(fh, data, a)
            if len(logical) < a + b:
                logical.extend(bytes(a + b - len(logical)))
            logical[a:a + b] = data
            last_unsynced = (a, data)
        elif op == "truncate":
            vol.truncate(None, a, fh)
            del logical[a:]
            logical.extend(bytes(a - len(logical)))
            if last_unsynced and last_unsynced[0] + len(last_unsynced[1]) > a:
                last_unsynced = None
        elif op == "fallocate":
            vol.fallocate(fh, 0, a, b)
            logical.extend(bytes(max(0, a + b - len(logical))))
        elif op == "sync":
            vol.fsync(fh, datasync=True)
            durable = bytes(logical)
            last_unsynced = None
        else:
            vol.release(fh)
            fh = vol.open("/f", os.O_RDWR)
        assert vol.stat(None, fh)["st_size"] == len(logical)
        assert vol.read(fh, len(logical) + 10, 0) == bytes(logical)
    report = vol.cut(tear=tear)
    expect = bytearray(durable)
    if tear and report.torn:
        off, data = last_unsynced
        kept = data[:report.torn["kept_bytes"]]
        assert report.torn["offset"] == off and (off + len(kept)) % PAGE == 0
        expect.extend(bytes(max(0, off + len(kept) - len(expect))))
        expect[off:off + len(kept)] = kept
    assert backing(vol) == bytes(expect)
    vol.close()
