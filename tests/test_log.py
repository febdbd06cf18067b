import os
import zlib

from fsyncstudy.log import HEADER, AlignedFramer, Framer, frame, read_log, remove_stale, scan


def log_of(n, payload=b"p" * 10):
    f = Framer(payload)
    return b"".join(f.frame_range(0, n))


def test_record_layout_is_length_crc_seq_payload():
    rec = frame(7, b"hello")
    length, crc, seq = HEADER.unpack_from(rec)
    assert (length, seq, rec[HEADER.size:]) == (5, 7, b"hello")
    assert crc == zlib.crc32(b"hello" + (7).to_bytes(8, "little"))
    assert Framer(b"hello").frame_range(7, 8) == [rec]


def test_a_whole_log_reads_back_clean():
    s = scan(log_of(100))
    assert (s.entries, s.first_seq, s.last_seq, s.end, s.clean) == (100, 0, 99, "clean", True)


def test_empty_and_zero_filled_tails_end_cleanly():
    assert scan(b"").entries == 0 and scan(b"").clean
    s = scan(log_of(5) + bytes(4096))
    assert (s.entries, s.end, s.clean) == (5, "zeros", True)
    assert scan(log_of(5) + bytes(3)).end == "zeros"


def test_a_torn_tail_is_detected_and_the_prefix_kept():
    data = log_of(10)
    rec = len(data) // 10
    for cut in (1, HEADER.size - 1, HEADER.size + 3, rec - 1):
        s = scan(data[:9 * rec + cut])
        assert (s.entries, s.end, s.valid_bytes) == (9, "torn", 9 * rec), cut


def test_a_flipped_bit_stops_the_reader_at_that_record():
    data = bytearray(log_of(10))
    rec = len(data) // 10
    data[4 * rec + HEADER.size + 2] ^= 0x01
    s = scan(bytes(data))
    assert (s.entries, s.end) == (4, "corrupt")
    assert "seq 4" in s.detail


def test_an_absurd_length_is_corruption_not_a_huge_read():
    data = bytearray(log_of(3))
    data[0:4] = (1 << 31).to_bytes(4, "little")
    assert scan(bytes(data)).end == "corrupt"


def test_stale_records_out_of_sequence_end_the_log():
    f = Framer(b"x")
    data = b"".join([f.frame(0), f.frame(1), f.frame(5)])
    s = scan(data)
    assert (s.entries, s.end) == (2, "sequence")


def test_read_log_reads_a_file(tmp_path):
    p = tmp_path / "x.log"
    p.write_bytes(log_of(3))
    assert read_log(p).entries == 3


def test_a_log_is_stale_only_once_its_writer_is_gone(tmp_path):
    import signal
    import subprocess
    import sys
    code = ("import sys, time; from fsyncstudy.log import LogFile; "
            "log = LogFile(sys.argv[1]); print(log.path, flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        path = p.stdout.readline().strip()
        assert remove_stale(tmp_path) == [] and os.path.exists(path)  # held by a live writer
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        assert remove_stale(tmp_path) == [os.path.basename(path)] and not os.path.exists(path)
    finally:
        if p.poll() is None:
            p.kill()


def test_zero_fill_writes_as_a_log_does_not_as_a_bulk_copy(tmp_path, monkeypatch):
    # 1 MiB writes left large page-cache pieces that made every later 8 kB write+sync cost ~3 us
    # more system time (see ZERO_FILL_CHUNK); the zeros go in 64 KiB writes, and all of them land
    import fsyncstudy.log as logmod
    sizes, real_write = [], os.write

    def spy(fd, data):
        sizes.append(len(data))
        return real_write(fd, data)
    monkeypatch.setattr(logmod.os, "write", spy)
    with logmod.LogFile(tmp_path, "fdatasync", "zero-fill", (1 << 20) + 100) as log:
        assert os.path.getsize(log.path) == (1 << 20) + 100
        with open(log.path, "rb") as f:
            assert f.read() == bytes((1 << 20) + 100)
    assert sum(sizes) == (1 << 20) + 100 and max(sizes) <= 64 << 10 and len(sizes) == 17


def test_aligned_records_are_the_same_records_in_page_aligned_memory():
    import ctypes
    import mmap

    import pytest
    payload = bytes(range(256)) * 32
    payload = payload[:8192 - HEADER.size]
    plain, aligned = Framer(payload), AlignedFramer(payload)
    recs = aligned.frame_range(5, 9)
    assert [bytes(r) for r in recs] == plain.frame_range(5, 9)
    for r in recs:   # what O_DIRECT needs: each record starts on a page and fills whole 4 kB blocks
        assert isinstance(r, memoryview) and len(r) % 4096 == 0
        assert ctypes.addressof(ctypes.c_char.from_buffer(r)) % mmap.PAGESIZE == 0
    assert aligned.frame_range(3, 3) == []
    with pytest.raises(ValueError, match="whole 4096-byte blocks.*payload_bytes 4080"):
        AlignedFramer(bytes(100))
