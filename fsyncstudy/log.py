"""The log file: record framing, opening and preallocating a log, syncing it, and
the reader that validates a log and stops at the first torn or corrupt record.

A record is a 16-byte header followed by the payload::

    offset  size  field
    0       4     payload length (little endian u32)
    4       4     CRC32 of the payload followed by the 8-byte sequence number
    8       8     sequence number (little endian u64), 0, 1, 2, ... in file order

A header of 16 zero bytes ends the log cleanly: it is unwritten preallocated space.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
import zlib
from dataclasses import dataclass

from .strategies import check_preallocation, check_sync_method

HEADER = struct.Struct("<IIQ")
_SEQ = struct.Struct("<Q")
#: A length above this is taken as corruption, not as a record.
MAX_PAYLOAD = 64 << 20
_ZERO_HEADER = bytes(HEADER.size)
#: ``zero-fill`` writes its zeros this many bytes at a time.  The size of those writes outlives them:
#: the page cache keeps the file in pieces as large as the writes that made it, and a later write +
#: sync of one 8 kB block costs the kernel more CPU inside a large piece.  Measured here (ext4, kernel
#: 6.18, a C loop of pwrite 8 kB at offset 0 + fdatasync over a 16 MiB file, 9 alternating rounds):
#: zeros written 1 MiB at a time left 40.2 us of system time per op, 64 KiB at a time 37.5 us, and
#: the loop ran 5.5% faster (open_datasync: 8.4%).  A log that wrote its own records page by page
#: would see the small pieces, so the zero-fill writes as a log does, not as a bulk copy.
ZERO_FILL_CHUNK = 64 << 10


class DeadlinePassed(Exception):
    """A run reached its hard deadline before its stop rule (``engine.Stop.hard_ns``, or a log's
    preparation its ``deadline``): it was stopped there and its timings are discarded (a run cut short
    is not the run that was asked for)."""


class Framer:
    """Frames records for one payload; the payload's CRC is computed once."""

    def __init__(self, payload: bytes):
        self.payload = bytes(payload)
        self.record_bytes = HEADER.size + len(self.payload)
        self._payload_crc = zlib.crc32(self.payload)

    def frame(self, seq: int) -> bytes:
        return HEADER.pack(len(self.payload), zlib.crc32(_SEQ.pack(seq), self._payload_crc), seq) + self.payload

    def frame_range(self, start: int, stop: int) -> list[bytes]:
        # A comprehension with local names: framing cost is paid outside the timed loop where it can be.
        pack, crc, seqpack, pcrc, payload, n = (HEADER.pack, zlib.crc32, _SEQ.pack, self._payload_crc,
                                                self.payload, len(self.payload))
        return [pack(n, crc(seqpack(s), pcrc), s) + payload for s in range(start, stop)]


def frame(seq: int, payload: bytes) -> bytes:
    """One framed record."""
    return Framer(payload).frame(seq)


@dataclass
class LogScan:
    """What the reader found: the valid prefix of a log and why it stopped."""

    entries: int          # valid records, with consecutive sequence numbers from first_seq
    first_seq: int | None
    last_seq: int | None
    valid_bytes: int      # length of the valid prefix
    file_bytes: int
    end: str              # clean | zeros | torn | corrupt | sequence
    detail: str = ""

    @property
    def clean(self) -> bool:
        return self.end in ("clean", "zeros")


def scan(data: bytes, expect_first_seq: int | None = 0) -> LogScan:
    """Validate a log image record by record and stop at the first bad one.

    ``torn``: a header or payload runs past the end (a write cut short);
    ``corrupt``: the CRC does not match or the length is absurd;
    ``sequence``: a valid record whose number does not follow its predecessor (stale data);
    ``zeros``: the rest starts with a zero header (preallocated space), a clean end.
    """
    off, n, first, last = 0, 0, None, None
    size = len(data)
    mv = memoryview(data)
    end, detail = "clean", ""
    while off < size:
        if size - off < HEADER.size:
            if not any(mv[off:]):
                end = "zeros"
            else:
                end, detail = "torn", f"{size - off} bytes of a header at offset {off}"
            break
        if mv[off:off + HEADER.size] == _ZERO_HEADER:
            end = "zeros"
            break
        length, crc, seq = HEADER.unpack_from(data, off)
        if length > MAX_PAYLOAD:
            end, detail = "corrupt", f"absurd length {length} at offset {off}"
            break
        stop = off + HEADER.size + length
        if stop > size:
            end, detail = "torn", f"record at offset {off} needs {stop - off} bytes, {size - off} remain"
            break
        payload = mv[off + HEADER.size:stop]
        if zlib.crc32(_SEQ.pack(seq), zlib.crc32(payload)) != crc:
            end, detail = "corrupt", f"CRC mismatch in record at offset {off} (seq {seq})"
            break
        want = (expect_first_seq if n == 0 else last + 1)
        if want is not None and seq != want:
            end, detail = "sequence", f"record at offset {off} has seq {seq}, expected {want}"
            break
        if n == 0:
            first = seq
        last = seq
        n += 1
        off = stop
    return LogScan(entries=n, first_seq=first, last_seq=last, valid_bytes=off, file_bytes=size,
                   end=end, detail=detail)


def read_log(path: str | os.PathLike, expect_first_seq: int | None = 0) -> LogScan:
    """Read and validate a log file (see ``scan``)."""
    with open(path, "rb") as f:
        return scan(f.read(), expect_first_seq)


def _open_flags(sync_method: str) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    if sync_method in ("open_dsync", "direct_dsync"):   # direct_dsync's O_DIRECT comes after the preparation
        flags |= os.O_DSYNC
    elif sync_method == "open_sync":
        flags |= os.O_SYNC
    return flags


def set_direct(fd: int) -> None:
    """Turn on O_DIRECT for an open file (EINVAL where the filesystem has no direct I/O)."""
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)


class DirectRefused(OSError):
    """The filesystem refused O_DIRECT on the log (EINVAL): ``direct_dsync`` cannot run there."""


def rwf_flag() -> int:
    """``os.RWF_DSYNC``, or an OSError saying why this Python or OS has none."""
    flag = getattr(os, "RWF_DSYNC", None)
    if flag is None or not hasattr(os, "pwritev"):
        raise OSError(errno.ENOTSUP, "rwf_dsync needs os.pwritev and os.RWF_DSYNC (Linux 4.7+), which this "
                                     "Python does not have: use fdatasync")
    return flag


def probe_rwf_dsync(fd: int) -> None:
    """Write one byte at offset 0 with RWF_DSYNC and take it back: an OSError naming why the kernel or
    filesystem refuses it (EOPNOTSUPP before Linux 4.7), never a silent fallback.  The file is empty after."""
    flag = rwf_flag()
    try:
        os.pwritev(fd, [b"\0"], 0, flag)
    except OSError as e:
        raise OSError(e.errno, f"rwf_dsync: pwritev2 with RWF_DSYNC is refused here ({os.strerror(e.errno)}): "
                               "the kernel or the filesystem lacks it (Linux 4.7+); use fdatasync") from e
    os.ftruncate(fd, 0)


class AlignedFramer(Framer):
    """A ``Framer`` whose records lie in page-aligned memory, as O_DIRECT writes need (a Python bytes
    object's data is not block aligned): each record of ``frame_range`` is a memoryview of one
    anonymous mmap per range, in whole ``DIRECT_BLOCK`` blocks.  So a direct write is one
    ``pwrite`` of a record framed before timing, with no copy into a bounce buffer inside the timed
    loop (that copy cost 2-4% of a ~100 us O_SYNC write here, measured with
    ``benchmarks/loop_cost.py``)."""

    def __init__(self, payload: bytes):
        super().__init__(payload)
        if self.record_bytes % DIRECT_BLOCK:
            fits = (self.record_bytes // DIRECT_BLOCK + 1) * DIRECT_BLOCK - HEADER.size
            raise ValueError(f"direct I/O writes whole {DIRECT_BLOCK}-byte blocks: records of {self.record_bytes} "
                             f"bytes are not (payload_bytes {fits} would be)")

    def frame_range(self, start: int, stop: int) -> list[memoryview]:
        import mmap
        n, rb = max(0, stop - start), self.record_bytes
        if not n:
            return []
        buf = mmap.mmap(-1, n * rb)   # page aligned; freed when the last record view is
        pack_into, crc, seqpack, pcrc, payload, plen = (HEADER.pack_into, zlib.crc32, _SEQ.pack, self._payload_crc,
                                                        self.payload, len(self.payload))
        for i, seq in enumerate(range(start, stop)):
            off = i * rb
            pack_into(buf, off, plen, crc(seqpack(seq), pcrc), seq)
            buf[off + HEADER.size:off + rb] = payload
        view = memoryview(buf)
        return [view[i * rb:(i + 1) * rb] for i in range(n)]


#: The unit of a direct write: records written with O_DIRECT are whole multiples of it.
DIRECT_BLOCK = 4096


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a directory's entries durable (a new file's name, a rename)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ours(name: str) -> bool:
    parts = name.split("-")
    return name.startswith(".fsyncstudy-") and name.endswith(".log") and len(parts) >= 3 and parts[1].isdigit()


def remove_stale(directory: str | os.PathLike) -> list[str]:
    """Remove trial logs left in ``directory`` by writers that are gone (a SIGKILL, a power cut).

    Our log files are named ``.fsyncstudy-<pid>-<id>.log`` and each is held under an exclusive
    flock for its whole life (``LogFile``); the kernel drops the lock when its holder dies, however it
    dies.  So a log whose lock can be taken is stale, and one whose lock cannot is in use, whatever
    its pid says: pids mean nothing across PID namespaces (containers sharing a volume).
    """
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not _ours(name):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:  # still that file
                os.unlink(path)
                removed.append(name)
        except OSError:
            pass  # in use (its writer holds the lock), or gone already
        finally:
            os.close(fd)
    return removed


def raise_terminated(signum, frame):
    """A SIGTERM handler that unwinds: ``finally`` blocks run, so a trial's log is removed."""
    raise SystemExit(128 + signum)


def unwind_on_sigterm() -> None:
    """Make SIGTERM unwind the main thread instead of killing the process where it stands
    (its default), unless something else already handles it."""
    import signal
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, raise_terminated)


class LogFile:
    """A fresh log file in a target directory, prepared for a trial and removed after it.

    Before timing starts the file (and its directory entry) is made durable: empty for
    ``append``, with its space reserved for ``fallocate``, written with zeros for
    ``zero-fill``.  So the first timed sync pays for the first entry, not for the file.
    """

    def __init__(self, directory: str | os.PathLike, sync_method: str = "fdatasync",
                 prealloc: str = "append", prealloc_bytes: int = 0, name: str | None = None,
                 direct: bool = False, deadline: float | None = None):
        self.sync_method = check_sync_method(sync_method)
        self.prealloc = check_preallocation(prealloc)
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, name or f".fsyncstudy-{os.getpid()}-{os.urandom(6).hex()}.log")
        self.prealloc_bytes = prealloc_bytes if prealloc != "append" else 0
        self.fd = -1
        self.deadline = deadline   # time.monotonic(): a zero-fill stops writing zeros there (DeadlinePassed)
        try:
            # inside the try: a Ctrl-C just after the open still removes the file (by its path)
            self.fd = os.open(self.path, _open_flags(sync_method), 0o644)
            # held for the log's whole life: how remove_stale in any process tells a live log from a stale one
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            if os.fstat(self.fd).st_ino != os.stat(self.path).st_ino:
                raise FileNotFoundError(f"{self.path} was removed as it was being created")
            if sync_method == "rwf_dsync":
                probe_rwf_dsync(self.fd)       # before the preparation: it leaves the file empty
            self._prepare()
            if direct or sync_method == "direct_dsync":
                # after the preparation (whose writes are not block aligned): the timed writes bypass
                # the page cache, as pg_test_fsync's open_* tests do; they must then come from an
                # aligned buffer in whole blocks (``AlignedFramer``, ``writepaths.TailBlock``)
                try:
                    set_direct(self.fd)
                except OSError as e:
                    raise DirectRefused(e.errno, f"{self.directory} refuses O_DIRECT ({os.strerror(e.errno or 0)})") from e
        except BaseException:
            self.remove()
            raise

    def _prepare(self) -> None:
        fd = self.fd
        if self.prealloc == "fallocate" and self.prealloc_bytes:
            os.posix_fallocate(fd, 0, self.prealloc_bytes)
        elif self.prealloc == "zero-fill" and self.prealloc_bytes:
            chunk = bytes(ZERO_FILL_CHUNK)
            left = self.prealloc_bytes
            deadline, clock = self.deadline if self.deadline is not None else float("inf"), time.monotonic
            while left > 0:
                left -= os.write(fd, chunk[:min(left, len(chunk))])
                if clock() >= deadline:   # gigabytes of zeros take seconds
                    raise DeadlinePassed(f"stopped at its deadline while zero-filling its log "
                                         f"({self.prealloc_bytes - left:,} of {self.prealloc_bytes:,} bytes)")
            os.lseek(fd, 0, os.SEEK_SET)
        os.fsync(fd)
        fsync_dir(self.directory)

    def sync_function(self, own_writes: bool = False):
        """The call that makes written data durable, or None when every write already is (O_DSYNC/O_SYNC,
        and the writes of rwf_dsync and direct_dsync).

        Looked up on ``os`` at call time so instrumentation (tests counting calls) sees every sync.
        rwf_dsync and direct_dsync are durable only through their own writes (``writepaths``): a caller
        that writes with plain ``write()`` would sync nothing, so it is refused unless it says
        ``own_writes`` (``trial.run_trial``, the crash experiment's writer and the open loop do: they bind
        the engine's ``write`` to the path's own, ``trial.write_function``).
        """
        if self.sync_method in ("rwf_dsync", "direct_dsync") and not own_writes:
            raise ValueError(f"{self.sync_method} is durable only through its own writes (pwritev2 RWF_DSYNC, "
                             "aligned direct blocks), which this run does not make: use run_trial, or fdatasync")
        if self.sync_method == "fdatasync":
            return os.fdatasync
        if self.sync_method == "fsync":
            return os.fsync
        return None

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def remove(self) -> None:
        try:
            os.unlink(self.path)  # while still holding the lock
        except FileNotFoundError:
            pass
        self.close()

    def __enter__(self) -> "LogFile":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
