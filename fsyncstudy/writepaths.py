"""The write paths real WALs use beside a plain ``write()`` + sync: what the engine's ``write`` and
``sync`` parameters are bound to for them (docs/strategies.md#write-paths).

- ``rwf_dsync_write``: each write is ``pwritev2(..., RWF_DSYNC)``, one system call that writes and
  syncs only its own range (Linux 4.7+).
- ``TailBlock``: the log opened O_DIRECT|O_DSYNC, records packed into aligned 4096-byte blocks, the
  partly filled tail block rewritten in place until it is full (TigerBeetle, ScyllaDB, PostgreSQL's
  ``debug_io_direct=wal``).  The padding after the last record is zeros, which the log reader takes
  as the log's clean end.
- ``Deferred``: group commit with a write that syncs itself: writers append to a buffer and the
  leader's one write commits everything pending (PostgreSQL's WAL buffers with ``open_datasync``).
- ``with_bytes_per_sync``: ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` every N bytes written
  (RocksDB's ``wal_bytes_per_sync``): it starts writeback early, it makes nothing durable.
- ``Segments``: the log as segment files of N bytes, each created, preallocated and its directory
  synced before the first acknowledgement in it, optionally recycled (renamed and overwritten, as
  PostgreSQL and RocksDB's ``recycle_log_file_num`` do).

Standard library only (the protocol node's path imports this module); ctypes only when
``sync_file_range`` is asked for and ``os`` has none.
"""
from __future__ import annotations

import errno
import os
import threading
import time

from .log import DIRECT_BLOCK, LogFile, fsync_dir, probe_rwf_dsync, rwf_flag, scan  # noqa: F401 (re-exported)

#: sync_file_range(2)'s flag: start writeback of the dirty pages in the range, do not wait.
SYNC_FILE_RANGE_WRITE = 2
#: The smallest segment a log may roll at (one page; a record larger than this sets the minimum).
MIN_SEGMENT_BYTES = 4096
#: At most this many segment files at once (each holds an open descriptor until the trial ends):
#: give a larger --segment-bytes or --recycle for more.
MAX_SEGMENTS = 4096


class TooManySegments(ValueError):
    """A trial would create more segment files than MAX_SEGMENTS."""


# -- one system call that writes and syncs ------------------------------------------------------------

def rwf_dsync_write(fd: int, data, _flag=getattr(os, "RWF_DSYNC", 0)) -> int:
    """Write ``data`` at the file's offset and sync that range in the same system call (offset -1:
    pwritev2 then uses and moves the file offset, as write() does).  ``os.pwritev`` is looked up at each
    call, as the sync functions are, so that tests counting calls see every one."""
    return os.pwritev(fd, (data,), -1, _flag)


def rwf_dsync_write_at(fd: int, data, offset: int, _flag=getattr(os, "RWF_DSYNC", 0)) -> int:
    """``rwf_dsync_write`` at ``offset`` (several writers, each at an offset reserved for it)."""
    return os.pwritev(fd, (data,), offset, _flag)


# -- O_DIRECT|O_DSYNC: the tail block rewritten in place ---------------------------------------------

class TailBlock:
    """Appends records to a log opened O_DIRECT|O_DSYNC in whole aligned blocks: each write copies the
    record into an aligned buffer holding the tail block and writes the blocks it spans at the tail
    block's offset (so a partly filled block is written again with each record until it is full, then
    the next one starts).  Bytes after the last record are zeros: the reader's clean end."""

    def __init__(self, max_write_bytes: int, block: int = DIRECT_BLOCK):
        import mmap
        self.block = block
        cap = (max_write_bytes // block + 2) * block
        self.buf = mmap.mmap(-1, cap)        # page aligned, zero filled
        self.view = memoryview(self.buf)
        self.used = 0                        # bytes of records in the buffer (the tail block's and after)
        self.base = 0                        # file offset of the buffer's first byte
        self.cap = cap

    def write(self, fd: int, data) -> int:
        n, used, blk = len(data), self.used, self.block
        if used + n > self.cap:
            raise ValueError(f"a write of {n:,} bytes exceeds the tail block buffer of {self.cap:,}")
        self.buf[used:used + n] = data
        end = used + n
        span = -(-end // blk) * blk
        k = os.pwrite(fd, self.view[:span], self.base)
        if k != span:
            raise OSError(errno.ENOSPC, f"short write: {k} of {span} bytes of a direct block write (is the target full?)")
        full = end - end % blk
        if full:
            # the tail block's bytes move to the buffer's start; what they leave is zeroed, so the
            # padding written after the last record is always zeros
            rest = end - full
            self.buf[:rest] = self.buf[full:end]
            self.buf[rest:end] = bytes(end - rest)
            self.base += full
            end = rest
        self.used = end
        return n


# -- group commit whose leader's write syncs --------------------------------------------------------

class Deferred:
    """Group commit with a write that syncs itself (``rwf_dsync_write``, ``TailBlock.write``): a writer's
    ``append`` (under the log lock) only buffers its record; the leader's ``flush`` (its sync) writes
    everything buffered with one such write.  Every record appended before the leader read its
    high-water mark is in that write: appends happen under the log lock before the mark moves."""

    def __init__(self, commit_write):
        self.commit_write = commit_write
        self.recs: list = []
        self.committed = 0               # records the commit writes have written (durable: each syncs itself)

    def append(self, fd: int, rec) -> int:
        self.recs.append(rec)
        return len(rec)

    def flush(self, fd: int) -> None:
        recs = self.recs
        n = len(recs)                    # records appended later stay for the next leader
        if not n:
            return
        data = b"".join(recs[:n])
        del recs[:n]                     # one operation under the GIL: a concurrent append is kept
        k = self.commit_write(fd, data)
        if k != len(data):
            raise OSError(errno.ENOSPC, f"short write: {k} of {len(data)} bytes of a group's commit write")
        self.committed += n


# -- sync_file_range every N bytes ------------------------------------------------------------------

def sync_file_range_call():
    """``sync_file_range(fd, offset, nbytes, flags)``: ``os``'s where it has one, else libc's through
    ctypes; an OSError naming why where neither exists."""
    f = getattr(os, "sync_file_range", None)
    if f is not None:
        return f
    import ctypes
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        raise OSError(errno.ENOSYS, "bytes_per_sync needs sync_file_range(2) (Linux), which neither os nor the "
                                    "C library here has: drop --bytes-per-sync") from None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int

    def sync_file_range(fd: int, offset: int, nbytes: int, flags: int) -> None:
        if fn(fd, offset, nbytes, flags) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"sync_file_range failed: {os.strerror(e)}")
    return sync_file_range


def probe_sync_file_range(fd: int, call) -> None:
    """One call on the log before timing (nbytes 0: to the end of the file, still empty or synced)."""
    try:
        call(fd, 0, 0, SYNC_FILE_RANGE_WRITE)
    except OSError as e:
        raise OSError(e.errno, f"bytes_per_sync: sync_file_range is refused here ({os.strerror(e.errno or 0)}): "
                               "drop --bytes-per-sync") from e


def with_bytes_per_sync(write, nbytes: int, call):
    """``write`` followed, each time another ``nbytes`` have been written since the log's start, by
    ``call(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)`` over exactly those bytes (the log is written from
    offset 0, in order)."""
    state = [0, 0]                       # bytes written, bytes whose writeback was started

    def write_then_start_writeback(fd: int, data) -> int:
        k = write(fd, data)
        done, start = state[0] + k, state[1]
        state[0] = done
        while done - start >= nbytes:
            call(fd, start, nbytes, SYNC_FILE_RANGE_WRITE)
            start += nbytes
        state[1] = start
        return k
    return write_then_start_writeback


# -- segments ---------------------------------------------------------------------------------------

class Segments:
    """A log in segment files of ``segment_bytes`` each (records never straddle two), in ``directory``.

    ``write(fd, rec)`` (``fd`` ignored) appends to the current segment, rolling first when the record
    would not fit: the next segment is created and preallocated as ``prealloc`` says, fsynced, and its
    directory fsynced (``LogFile``), all before the write, so before the first acknowledgement in it.
    With ``recycle`` K > 0, once K + 1 segments exist a roll reuses the oldest instead: renamed to the
    new segment's name (the directory fsynced) and overwritten from its start, as if a checkpoint had
    just retired it.  ``sync(fd)`` syncs every segment written since the last sync began.  Every segment
    file is removed when the ``with`` block ends, also on an error or Ctrl-C.

    ``rolls``: (seq of the first entry in the new segment, ns from the roll's start until that entry's
    write returned)."""

    def __init__(self, directory, sync_method: str, prealloc: str, segment_bytes: int, recycle: int = 0,
                 deadline: float | None = None, stem: str | None = None):
        self.directory, self.sync_method, self.prealloc = os.fspath(directory), sync_method, prealloc
        self.segment_bytes, self.recycle, self.deadline = segment_bytes, recycle, deadline
        # ``stem``: a name another process can find the segments by (the crash experiment's reader)
        self.stem = stem or f".fsyncstudy-{os.getpid()}-{os.urandom(6).hex()}"
        self.live: list[LogFile] = []     # in log order
        self.first_seq: list[int] = []    # the seq of each live segment's first entry
        self.recycled_flags: list[bool] = []
        self.made = 0                     # segments created or recycled so far
        self.recycled = 0
        self.count = 0                    # entries written
        self.used = 0                     # bytes in the current segment
        self.rolls: list[tuple[int, int]] = []
        self.lock = threading.Lock()
        self._method = os.fsync if sync_method == "fsync" else os.fdatasync
        try:
            self._next_segment()
        except BaseException:
            self.remove()
            raise
        self.dirty = [self.cur]

    @property
    def fd(self) -> int:
        return self.live[0].fd

    @property
    def path(self) -> str:
        return self.cur.path

    def _name(self, k: int) -> str:
        return segment_name(self.stem, k)

    def _next_segment(self) -> None:
        name = self._name(self.made)
        if self.recycle and len(self.live) > self.recycle:
            seg = self.live.pop(0)
            self.first_seq.pop(0)
            self.recycled_flags.pop(0)
            new = os.path.join(self.directory, name)
            os.rename(seg.path, new)
            seg.path = new
            fsync_dir(self.directory)      # the new name is durable before the first ack in it
            os.lseek(seg.fd, 0, os.SEEK_SET)
            self.recycled += 1
            recycled = True
        else:
            if len(self.live) >= MAX_SEGMENTS:
                raise TooManySegments(f"this trial would need more than {MAX_SEGMENTS:,} segment files: give a larger "
                                      "--segment-bytes, or --recycle")
            seg = LogFile(self.directory, self.sync_method, self.prealloc, self.segment_bytes, name=name,
                          deadline=self.deadline)
            recycled = False
        self.live.append(seg)
        self.first_seq.append(self.count)
        self.recycled_flags.append(recycled)
        self.made += 1
        self.cur, self.cur_fd, self.used = seg, seg.fd, 0

    def write(self, fd: int, rec) -> int:
        n = len(rec)
        if self.used + n > self.segment_bytes:
            t = time.perf_counter_ns()
            with self.lock:               # a sync under way in another thread (batch's flusher) sees either segment list
                self._next_segment()
                self.dirty.append(self.cur)
            k = os.write(self.cur_fd, rec)
            self.rolls.append((self.count, time.perf_counter_ns() - t))
        else:
            k = os.write(self.cur_fd, rec)
        self.used += k
        self.count += 1
        return k

    def sync(self, fd: int) -> None:
        """Sync every segment written since the last sync began (the one a roll left, and the current)."""
        with self.lock:
            segs, self.dirty = self.dirty, [self.cur]
        for seg in segs:
            self._method(seg.fd)

    def sync_function(self, own_writes: bool = False):
        return self.sync

    def verify(self, entries: int) -> tuple[bool, str]:
        """Read every live segment back: each holds exactly its entries, in order; a recycled segment may
        go on with the older records it held (a lower seq: stale, as the reader reports)."""
        ok, got = True, 0
        ends = self.first_seq[1:] + [entries]
        for seg, first, end, recycled in zip(self.live, self.first_seq, ends, self.recycled_flags):
            with open(seg.path, "rb") as f:
                s = scan(f.read(), expect_first_seq=first)
            want = end - first
            stale = recycled and s.end == "sequence"
            if not (s.clean or stale) or s.entries != want:
                ok = False
            got += s.entries
        kept = entries - self.first_seq[0] if self.live else 0
        note = f", {self.recycled} recycled (their older entries overwritten)" if self.recycled else ""
        return ok and got == kept, (f"{got} of {kept} entries read back from {len(self.live)} segments"
                                    f"{note}; {self.made - 1} rolls")

    def remove(self) -> None:
        err = None
        for seg in self.live:
            try:
                seg.remove()
            except OSError as e:
                err = err or e
        self.live = []
        if err is not None:
            raise err

    def __enter__(self) -> "Segments":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


# -- reading segments back (the crash experiment's recovery) ------------------------------------------

def segment_name(stem: str, k: int) -> str:
    """The file name of segment ``k`` (the k-th created or recycled) of the log named ``stem``."""
    return f"{stem}-{k:06d}.log"


def segment_files(directory, stem: str) -> list[tuple[int, str]]:
    """The segment files of the log ``stem`` in ``directory``, as (k, path) in log order (by k: a recycled
    segment takes the next k, so the order of the numbers is the order of the log)."""
    out = []
    prefix = stem + "-"
    for name in os.listdir(directory):
        k = name[len(prefix):-len(".log")]
        if name.startswith(prefix) and name.endswith(".log") and len(k) == 6 and k.isdigit():
            out.append((int(k), os.path.join(os.fspath(directory), name)))
    return sorted(out)


def scan_segments(images: list[tuple[int, bytes]]):
    """Read a segmented log back, segment after segment in log order (``images``: (k, bytes) of every live
    segment): one ``LogScan`` of the chain of records with consecutive sequence numbers across them.

    Each segment is read from its start until its end or its first bad record; the next one must start
    with the record after the last one read, else the log ends there.  A recycled segment goes on, after
    the records written since it was recycled, with the older records it held before (lower sequence
    numbers): that is its clean end, ``stale``, never counted.  The chain starts at sequence 0 when
    segment 0 is among them; when it is not, the segments before were retired by recycling, and the chain
    starts wherever the oldest live one does (``first_seq``)."""
    from .log import HEADER, LogScan
    total = file_bytes = valid = 0
    first = last = None
    end, detail = "clean", "no segment"
    for i, (k, data) in enumerate(images):
        if i == 0:
            want = 0 if k == 0 else None
        else:
            want = last + 1 if last is not None else (0 if images[0][0] == 0 else None)
        s = scan(data, expect_first_seq=want)
        file_bytes += s.file_bytes
        end, detail = s.end, f"segment {k}: {s.detail or s.end}"
        if s.end == "sequence":
            seq = HEADER.unpack_from(data, s.valid_bytes)[2]
            expected = want if s.entries == 0 else s.last_seq + 1
            if expected is not None and seq < expected:
                end, detail = "stale", f"segment {k}: older records (seq {seq}) after seq {expected - 1}: recycled"
        if s.entries:
            first = s.first_seq if first is None else first
            last = s.last_seq
            total += s.entries
            valid += s.valid_bytes
        # the chain goes on into the next segment only past a segment's clean end (stale data after its
        # records, preallocated zeros or its file's end), and only if the segment held records
        if not s.entries or end not in ("clean", "zeros", "stale"):
            break
    return LogScan(entries=total, first_seq=first, last_seq=last, valid_bytes=valid, file_bytes=file_bytes,
                   end=end, detail=f"{len(images)} segments; the chain ends in {detail}")
