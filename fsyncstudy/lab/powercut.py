"""The power-cut model: a private page cache in front of a backing directory.

``Volume`` is what the lab's FUSE filesystem (``fsyncstudy.lab.fusefs``) serves.  It
passes namespace operations (create, unlink, rename, mkdir, ...) straight through to
the backing directory, but keeps every file's *data* and *size* changes in its own
cache until the application syncs that file (``fsync``, ``fdatasync``, or a write on a
file opened ``O_SYNC``/``O_DSYNC``).  A sync writes the file's dirty pages through to
the backing file and fsyncs it.  So at any moment the backing directory holds what a
disk would hold after a power cut: ``cut()`` drops the cache, removes files whose
creation was never made durable, and freezes the volume (every operation fails with
EIO, as on a disk that lost power) until ``reset()``.

What it models and what it does not is documented in docs/lab.md.

Standard library only; no FUSE here, so the model is testable in-process.  The FUSE
adapter runs it in a separate process: a FUSE daemon in the same process as a writer
that calls fsync on it can deadlock on the GIL.
"""
from __future__ import annotations

import errno
import os
import random
import stat
import threading
import time
from dataclasses import asdict, dataclass, field

from ..log import fsync_dir

#: The cache's page size: tears and dirty tracking happen at this granularity, as in the kernel.
PAGE = 4096
#: fallocate(2) mode bits we model; anything else is refused with EOPNOTSUPP.
FALLOC_FL_KEEP_SIZE = 0x01

DELAY_DISTRIBUTIONS = ("fixed", "uniform", "normal", "exponential")


def _err(code: int, what: str = "") -> OSError:
    return OSError(code, f"{os.strerror(code)}{': ' + what if what else ''}")


@dataclass
class Faults:
    """What the volume is told to do wrong.  Changed by ``Volume.inject``."""

    #: None, "once" (the next file sync fails) or "always" (every file sync fails from now on).
    fsync_eio: str | None = None
    #: File syncs that still succeed before the injected failure starts.
    fsync_eio_after: int = 0
    #: Bytes that writes may still add before they fail with ENOSPC; None: no limit.
    enospc_after_bytes: int | None = None
    #: Delay added to every sync (file, directory, O_SYNC write), drawn from the distribution.
    sync_delay_ms: float = 0.0
    sync_delay_dist: str = "fixed"
    #: uniform: half-width of the interval around the mean; normal: standard deviation.
    sync_delay_spread_ms: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Snapshot:
    """What one sync writes back: the file's dirty state when the sync started."""

    pages: list            # [(index, bytes)]
    size: int
    valid: int
    durable_size: int
    falloc: list           # [(offset, length)]
    seq: int
    meta_dirty: bool


class FileState:
    """One file's cached state, keyed by its backing inode; holds its own backing fd.

    Invariants: the file's content is the backing file's first ``valid`` bytes, zeros
    after them up to ``size``, with the cached pages laid over both; cached bytes
    beyond ``size`` are zero.  ``valid <= size``.
    """

    def __init__(self, fd: int, key: tuple[int, int], path: str, writable: bool):
        self.fd, self.key, self.path, self.writable = fd, key, path, writable
        st = os.fstat(fd)
        self.size = self.durable_size = self.valid = st.st_size
        self.min_size_since_snapshot = self.size
        self.pages: dict[int, bytearray] = {}
        self.dirty: set[int] = set()
        #: Pages whose sync failed: clean in the cache (readable) but never written back,
        #: as Linux does after a failed writeback (the "fsyncgate" behaviour).
        self.lost: set[int] = set()
        self.meta_dirty = False
        self.falloc: list[tuple[int, int]] = []
        self.handles = 0
        self.sync_lock = threading.Lock()
        self.last_write: tuple[int, int, bytes] | None = None   # (seq, offset, data), until a sync covers it

    # -- content ---------------------------------------------------------------------

    def unsynced(self) -> bool:
        return bool(self.dirty or self.meta_dirty or self.falloc)

    def _load(self, idx: int) -> bytearray:
        page = self.pages.get(idx)
        if page is None:
            start = idx * PAGE
            page = bytearray(PAGE)
            if start < self.valid:
                data = os.pread(self.fd, min(PAGE, self.valid - start), start)
                page[:len(data)] = data
            self.pages[idx] = page
        return page

    def read(self, off: int, n: int) -> bytes:
        if off >= self.size or n <= 0:
            return b""
        n = min(n, self.size - off)
        end = off + n
        out = bytearray(n)
        if off < self.valid:
            data = os.pread(self.fd, min(end, self.valid) - off, off)
            out[:len(data)] = data
        if self.pages:
            pages = self.pages
            for idx in range(off // PAGE, (end - 1) // PAGE + 1):
                page = pages.get(idx)
                if page is not None:
                    ps = idx * PAGE
                    a, b = max(off, ps), min(end, ps + PAGE)
                    out[a - off:b - off] = page[a - ps:b - ps]
        return bytes(out)

    def write(self, off: int, data: bytes, seq: int) -> None:
        end = off + len(data)
        mv = memoryview(data)
        pos = off
        pages, dirty, lost = self.pages, self.dirty, self.lost
        while pos < end:
            idx = pos // PAGE
            ps = idx * PAGE
            b = min(end, ps + PAGE)
            if pos == ps and b == ps + PAGE:
                pages[idx] = bytearray(mv[pos - off:b - off])   # a whole page: nothing to read first
            else:
                self._load(idx)[pos - ps:b - ps] = mv[pos - off:b - off]
            dirty.add(idx)
            lost.discard(idx)
            pos = b
        if end > self.size:
            self.size = end
            self.meta_dirty = True
        self.last_write = (seq, off, bytes(data))

    def truncate(self, length: int) -> None:
        if length < self.size:
            first_gone = -(-length // PAGE)
            for idx in [i for i in self.pages if i >= first_gone]:
                del self.pages[idx]
                self.dirty.discard(idx)
                self.lost.discard(idx)
            if length % PAGE and length // PAGE in self.pages:
                page = self.pages[length // PAGE]
                page[length % PAGE:] = bytes(PAGE - length % PAGE)
            self.valid = min(self.valid, length)
            self.min_size_since_snapshot = min(self.min_size_since_snapshot, length)
            if self.last_write and self.last_write[1] + len(self.last_write[2]) > length:
                self.last_write = None
        self.size = length
        self.meta_dirty = True

    def fallocate(self, mode: int, off: int, length: int) -> None:
        self.falloc.append((off, length))
        if not mode & FALLOC_FL_KEEP_SIZE and off + length > self.size:
            self.size = off + length
            self.meta_dirty = True

    # -- sync ------------------------------------------------------------------------

    def snapshot(self, seq: int) -> _Snapshot:
        snap = _Snapshot(pages=[(i, bytes(self.pages[i])) for i in sorted(self.dirty)], size=self.size,
                         valid=self.valid, durable_size=self.durable_size, falloc=self.falloc, seq=seq,
                         meta_dirty=self.meta_dirty)
        self.dirty, self.falloc, self.meta_dirty = set(), [], False
        self.min_size_since_snapshot = self.size
        return snap

    def write_back(self, snap: _Snapshot, frozen) -> bool:
        """Make the backing file hold the snapshot's content.  False if a cut stopped it midway."""
        fd = self.fd
        if snap.valid < snap.durable_size:
            os.ftruncate(fd, snap.valid)       # content past a truncation must not come back
        for off, length in snap.falloc:
            length = min(length, snap.size - off)
            if length > 0:
                os.posix_fallocate(fd, off, length)
        for idx, data in snap.pages:
            if frozen():
                return False                   # the power went while this sync was writing
            start = idx * PAGE
            if start < snap.size:
                os.pwrite(fd, data[:snap.size - start], start)
        if os.fstat(fd).st_size != snap.size:
            os.ftruncate(fd, snap.size)
        return True

    def synced(self, snap: _Snapshot) -> None:
        """The snapshot is durable: forget clean pages, move the valid mark."""
        self.durable_size = snap.size
        self.valid = min(snap.size, self.min_size_since_snapshot)
        for idx in [i for i in self.pages if i not in self.dirty and i not in self.lost]:
            del self.pages[idx]
        if self.last_write and self.last_write[0] <= snap.seq:
            self.last_write = None

    def failed(self, snap: _Snapshot) -> None:
        """The sync failed: its pages are marked clean without being written (never retried)."""
        for idx, _ in snap.pages:
            if idx not in self.dirty:
                self.lost.add(idx)
        # the new size stays pending: a later successful sync persists it, with the lost
        # pages reading back as whatever the disk had there (zeros past the old end)
        self.meta_dirty = self.meta_dirty or snap.meta_dirty
        if self.last_write and self.last_write[0] <= snap.seq:
            self.last_write = None

    def unsynced_bytes(self) -> int:
        return sum(min(PAGE, max(0, self.size - i * PAGE)) for i in self.dirty)


@dataclass
class _Handle:
    gen: int
    path: str
    flags: int
    state: FileState | None = None     # None for a directory
    is_dir: bool = False


@dataclass
class Stats:
    writes: int = 0
    bytes_written: int = 0
    file_syncs: int = 0
    dir_syncs: int = 0
    failed_syncs: int = 0
    cuts: int = 0
    enospc: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CutReport:
    """What one power cut dropped."""

    cut: int                                   # the number of this cut since the volume started
    files_with_unsynced_data: list[str] = field(default_factory=list)
    unsynced_bytes_dropped: int = 0
    removed_unsynced_files: list[str] = field(default_factory=list)
    torn: dict | None = None                   # the torn write, when a tear was asked for and possible
    tear_note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class Volume:
    """The power-cut filesystem's state over one backing directory.  Thread-safe.

    Paths are FUSE paths ("/", "/a/b"); file handles are small integers.  Every method
    raises OSError with the errno the application should see.

    ``backing_sync``: fsync the backing file on every sync (the ``powercut`` target, so a
    synced byte survives a real host crash as well), or only write it through to the
    host's page cache (the emulated devices, whose sync latency is the injected delay).
    """

    #: What a file's cached state is (``lab.liar`` gives its files a write-back that can be taken back).
    state_class = FileState

    def __init__(self, backing: str | os.PathLike, backing_sync: bool = True, faults: Faults | None = None,
                 seed: int | None = None):
        self.root = os.path.realpath(backing)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"backing directory {self.root} does not exist")
        self.backing_sync = backing_sync
        self.faults = faults or Faults()
        check_faults(self.faults)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)     # cut waits here for write-backs in flight
        self.flush_lock = threading.Lock()             # the emulated device does one flush at a time
        self.gen = 0
        self.frozen = False
        self.seq = 0
        self.inflight = 0
        self.states: dict[tuple[int, int], FileState] = {}
        self.handles: dict[int, _Handle] = {}
        self.next_fh = 1
        #: files created since neither they nor their directory were synced: a cut removes them
        self.unsynced_creates: dict[tuple[int, int], str] = {}
        self.stats = Stats()

    # -- helpers (called with self.lock held unless said otherwise) --------------------

    def bpath(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/")) if path not in ("", "/") else self.root

    def _check(self) -> None:
        if self.frozen:
            raise _err(errno.EIO, "the volume lost power (cut); reset it to use it again")

    def _handle(self, fh: int) -> _Handle:
        h = self.handles.get(fh)
        if h is None:
            raise _err(errno.EBADF)
        if h.gen != self.gen or self.frozen:
            raise _err(errno.EIO, "file handle from before a power cut")
        return h

    def _new_fh(self, h: _Handle) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = h
        return fh

    def _state_for(self, path: str, fd: int, writable: bool) -> FileState:
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        state = self.states.get(key)
        if state is not None and (state.writable or not writable):
            os.close(fd)
            state.path = path
            return state
        if state is not None:                  # upgrade a read-only state's fd
            os.close(state.fd)
            state.fd, state.writable = fd, True
            return state
        state = self.states[key] = self.state_class(fd, key, path, writable)
        return state

    def _open_backing(self, bp: str, extra: int = 0, mode: int = 0o644) -> tuple[int, bool]:
        try:
            return os.open(bp, os.O_RDWR | os.O_CLOEXEC | extra, mode), True
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EROFS, errno.ETXTBSY):
                raise
            return os.open(bp, os.O_RDONLY | os.O_CLOEXEC | extra, mode), False

    def _maybe_drop(self, state: FileState) -> None:
        if state.handles or state.sync_lock.locked():
            return
        try:
            gone = os.fstat(state.fd).st_nlink == 0
        except OSError:
            gone = True
        if gone or not (state.unsynced() or state.lost):
            self.states.pop(state.key, None)
            if gone:
                self.unsynced_creates.pop(state.key, None)
            os.close(state.fd)

    def _gc_unlinked(self) -> None:
        for state in [s for s in self.states.values() if not s.handles]:
            self._maybe_drop(state)
        for key, p in list(self.unsynced_creates.items()):
            try:
                st = os.lstat(self.bpath(p))
                if (st.st_dev, st.st_ino) != key:
                    del self.unsynced_creates[key]
            except OSError:
                del self.unsynced_creates[key]

    def _draw_delay_s(self) -> float:
        f = self.faults
        if f.sync_delay_ms <= 0:
            return 0.0
        m, s = f.sync_delay_ms, f.sync_delay_spread_ms
        if f.sync_delay_dist == "uniform":
            d = self.rng.uniform(m - s, m + s)
        elif f.sync_delay_dist == "normal":
            d = self.rng.gauss(m, s)
        elif f.sync_delay_dist == "exponential":
            d = self.rng.expovariate(1 / m)
        else:
            d = m
        return max(0.0, d) / 1000

    def _take_eio(self) -> bool:
        f = self.faults
        if f.fsync_eio is None:
            return False
        if f.fsync_eio_after > 0:
            f.fsync_eio_after -= 1
            return False
        if f.fsync_eio == "once":
            f.fsync_eio = None
        return True

    def _delay(self, seconds: float) -> None:
        # outside self.lock: writes to the cache go on while the device flushes
        if seconds:
            with self.flush_lock:
                time.sleep(seconds)

    # -- namespace (passed through) ----------------------------------------------------

    def stat(self, path: str | None, fh: int | None = None) -> dict:
        with self.lock:
            if fh is not None:
                h = self._handle(fh)
                st = os.fstat(h.state.fd) if h.state else os.lstat(self.bpath(h.path))
                state = h.state
            else:
                if path != "/":
                    self._check()
                st = os.lstat(self.bpath(path))
                state = self.states.get((st.st_dev, st.st_ino)) if stat.S_ISREG(st.st_mode) else None
            out = {k: getattr(st, k) for k in ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size",
                                               "st_blocks", "st_blksize", "st_rdev")}
            out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            if state is not None:
                out["st_size"] = state.size
                out["st_blocks"] = max(st.st_blocks, -(-state.size // 512))
            return out

    def statfs(self) -> dict:
        s = os.statvfs(self.root)
        return {k: getattr(s, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                                           "f_ffree", "f_favail", "f_namemax")}

    def _namespace(self, fn, *args):
        with self.lock:
            self._check()
            out = fn(*args)
            self._gc_unlinked()
            return out

    def readdir(self, path: str | None, fh: int | None = None) -> list[str]:
        with self.lock:
            self._check()
            p = self._handle(fh).path if fh is not None else path
            return [".", "..", *os.listdir(self.bpath(p))]

    def opendir(self, path: str) -> int:
        with self.lock:
            self._check()
            if not os.path.isdir(self.bpath(path)):
                raise _err(errno.ENOTDIR)
            return self._new_fh(_Handle(self.gen, path, os.O_RDONLY, is_dir=True))

    def releasedir(self, fh: int) -> None:
        with self.lock:
            self.handles.pop(fh, None)

    def mkdir(self, path: str, mode: int) -> None:
        self._namespace(os.mkdir, self.bpath(path), mode)

    def rmdir(self, path: str) -> None:
        self._namespace(os.rmdir, self.bpath(path))

    def unlink(self, path: str) -> None:
        self._namespace(os.unlink, self.bpath(path))

    def rename(self, old: str, new: str) -> None:
        def do():
            os.rename(self.bpath(old), self.bpath(new))
            prefix = old.rstrip("/") + "/"
            for table in (self.unsynced_creates,):
                for key, p in list(table.items()):
                    if p == old or p.startswith(prefix):
                        table[key] = new + p[len(old):]
            for s in self.states.values():
                if s.path == old or s.path.startswith(prefix):
                    s.path = new + s.path[len(old):]
        self._namespace(do)

    def symlink(self, target: str, source: str) -> None:
        self._namespace(os.symlink, source, self.bpath(target))

    def link(self, target: str, source: str) -> None:
        self._namespace(os.link, self.bpath(source), self.bpath(target))

    def readlink(self, path: str) -> str:
        return self._namespace(os.readlink, self.bpath(path))

    def mknod(self, path: str, mode: int, dev: int) -> None:
        self._namespace(os.mknod, self.bpath(path), mode, dev)

    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> None:
        with self.lock:
            self._check()
            if fh is not None and self._handle(fh).state:
                os.fchmod(self._handle(fh).state.fd, mode)
            else:
                os.chmod(self.bpath(path if fh is None else self._handle(fh).path), mode, follow_symlinks=False)

    def chown(self, path: str | None, uid: int, gid: int, fh: int | None = None) -> None:
        with self.lock:
            self._check()
            if fh is not None and self._handle(fh).state:
                os.fchown(self._handle(fh).state.fd, uid, gid)
            else:
                os.chown(self.bpath(path if fh is None else self._handle(fh).path), uid, gid, follow_symlinks=False)

    def utimens(self, path: str | None, times_ns: tuple[int, int] | None, fh: int | None = None) -> None:
        with self.lock:
            self._check()
            if fh is not None and self._handle(fh).state:
                target = self._handle(fh).state.fd
            else:
                target = self.bpath(path if fh is None else self._handle(fh).path)
            if times_ns is None:
                os.utime(target)
            else:
                os.utime(target, ns=times_ns)

    def access(self, path: str, amode: int) -> None:
        with self.lock:
            self._check()
            if not os.access(self.bpath(path), amode):
                raise _err(errno.EACCES)

    # -- files -------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        with self.lock:
            self._check()
            fd, writable = self._open_backing(self.bpath(path))
            state = self._state_for(path, fd, writable)
            state.handles += 1
            fh = self._new_fh(_Handle(self.gen, path, flags, state))
            if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
                state.truncate(0)
            return fh

    def create(self, path: str, mode: int, flags: int) -> int:
        with self.lock:
            self._check()
            bp = self.bpath(path)
            existed = os.path.lexists(bp)
            fd, writable = self._open_backing(bp, os.O_CREAT | (flags & os.O_EXCL), mode)
            state = self._state_for(path, fd, writable)
            if not existed:
                self.unsynced_creates[state.key] = path
            state.handles += 1
            fh = self._new_fh(_Handle(self.gen, path, flags, state))
            if existed and flags & os.O_TRUNC:
                state.truncate(0)
            return fh

    def release(self, fh: int) -> None:
        with self.lock:
            h = self.handles.pop(fh, None)
            if h is None or h.state is None:
                return
            if h.gen == self.gen:
                h.state.handles -= 1
                self._maybe_drop(h.state)

    def read(self, fh: int, size: int, off: int) -> bytes:
        with self.lock:
            return self._handle(fh).state.read(off, size)

    def write(self, fh: int, data: bytes, off: int, flags: int = 0) -> int:
        """Write ``data`` at ``off`` into the cache; synced at once when the file was opened O_DSYNC/O_SYNC or
        this write's own ``flags`` say so (pwritev2 with RWF_DSYNC/RWF_SYNC arrives as O_DSYNC/O_SYNC there)."""
        with self.lock:
            h = self._handle(fh)
            if h.flags & os.O_ACCMODE == os.O_RDONLY or not h.state.writable:
                raise _err(errno.EBADF)
            state = h.state
            if h.flags & os.O_APPEND:
                off = state.size
            left = self.faults.enospc_after_bytes
            if left is not None:
                if left <= 0:
                    self.stats.enospc += 1
                    raise _err(errno.ENOSPC, "injected: the volume is full")
                if len(data) > left:
                    data = data[:left]          # a short write, as a filling disk gives; the next one fails
                self.faults.enospc_after_bytes = left - len(data)
            self.seq += 1
            state.write(off, data, self.seq)
            self.stats.writes += 1
            self.stats.bytes_written += len(data)
        how = h.flags | flags
        if how & os.O_DSYNC:                    # O_SYNC includes the O_DSYNC bit on Linux
            self._sync(state, datasync=(how & os.O_SYNC) != os.O_SYNC)
        return len(data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        with self.lock:
            if fh is not None:
                state = self._handle(fh).state
                state.truncate(length)
                return
            self._check()
            fd, writable = self._open_backing(self.bpath(path))
            state = self._state_for(path, fd, writable)
            state.truncate(length)
            self._maybe_drop(state)

    def fallocate(self, fh: int, mode: int, off: int, length: int) -> None:
        with self.lock:
            h = self._handle(fh)
            if mode & ~FALLOC_FL_KEEP_SIZE:
                raise _err(errno.EOPNOTSUPP, "only plain and keep-size fallocate are modelled")
            left = self.faults.enospc_after_bytes
            grow = max(0, off + length - h.state.size)
            if left is not None and grow > left:
                self.stats.enospc += 1
                raise _err(errno.ENOSPC, "injected: the volume is full")
            if left is not None:
                self.faults.enospc_after_bytes = left - grow
            h.state.fallocate(mode, off, length)

    def fsync(self, fh: int, datasync: bool) -> None:
        with self.lock:
            state = self._handle(fh).state
        self._sync(state, datasync)

    def _sync(self, state: FileState, datasync: bool) -> None:
        with state.sync_lock:                  # a file's syncs write back in order
            with self.lock:
                self._check()
                gen = self.gen
                self.stats.file_syncs += 1
                snap = state.snapshot(self.seq)
                fail = self._take_eio()
                delay = self._draw_delay_s()
            self._delay(delay)
            if fail:
                with self.lock:
                    self.stats.failed_syncs += 1
                    if self.gen == gen:
                        state.failed(snap)
                raise _err(errno.EIO, "injected fsync failure: the data of this sync was not written")
            with self.lock:
                if self.frozen or self.gen != gen:
                    raise _err(errno.EIO, "the volume lost power during this sync")
                self.inflight += 1
            try:
                done = state.write_back(snap, lambda: self.frozen)
                if done and self.backing_sync:
                    (os.fdatasync if datasync else os.fsync)(state.fd)
            except OSError:
                with self.lock:
                    self.stats.failed_syncs += 1
                    if self.gen == gen:
                        state.failed(snap)
                raise
            finally:
                with self.lock:
                    self.inflight -= 1
                    self.idle.notify_all()
            with self.lock:
                if not done or self.gen != gen:
                    raise _err(errno.EIO, "the volume lost power during this sync")
                state.synced(snap)
                # ext4 commits a new file's directory entry with the file's own fsync
                self.unsynced_creates.pop(state.key, None)

    def fsyncdir(self, fh: int, datasync: bool) -> None:
        with self.lock:
            h = self._handle(fh)
            gen = self.gen
            self.stats.dir_syncs += 1
            delay = self._draw_delay_s()
        self._delay(delay)
        bp = self.bpath(h.path)
        if self.backing_sync:
            fsync_dir(bp)
        with self.lock:
            if self.frozen or self.gen != gen:
                raise _err(errno.EIO, "the volume lost power during this sync")
            d = h.path.rstrip("/") or "/"
            for key, p in list(self.unsynced_creates.items()):
                if (os.path.dirname(p) or "/") == d:
                    del self.unsynced_creates[key]

    # -- power and faults ------------------------------------------------------------

    def cut(self, tear: bool = False) -> CutReport:
        """Lose power: drop every unsynced byte, remove never-synced new files, freeze.

        ``tear``: the last unsynced write is torn at its last page boundary instead of
        dropped whole: the pages before that boundary reach the backing file.
        """
        with self.lock:
            self.frozen = True
            self.gen += 1
            self.stats.cuts += 1
            while self.inflight:
                self.idle.wait()               # write-backs stop at their next page
            report = CutReport(cut=self.stats.cuts)
            for s in self.states.values():
                if s.unsynced():
                    report.files_with_unsynced_data.append(s.path)
                    report.unsynced_bytes_dropped += s.unsynced_bytes()
            report.files_with_unsynced_data.sort()
            if tear:
                report.torn, report.tear_note = self._tear()
            dirs = set()
            for key, p in sorted(self.unsynced_creates.items(), key=lambda kv: kv[1]):
                bp = self.bpath(p)
                try:
                    st = os.lstat(bp)
                    if (st.st_dev, st.st_ino) == key and not stat.S_ISDIR(st.st_mode):
                        os.unlink(bp)
                        report.removed_unsynced_files.append(p)
                        dirs.add(os.path.dirname(bp))
                except OSError:
                    pass
            if self.backing_sync:
                for d in dirs:
                    fsync_dir(d)
            self.unsynced_creates.clear()
            for s in self.states.values():
                os.close(s.fd)
            self.states.clear()
            return report

    def _tear(self) -> tuple[dict | None, str]:
        cands = [s for s in self.states.values() if s.last_write is not None]
        if not cands:
            return None, "no unsynced write to tear"
        state = max(cands, key=lambda s: s.last_write[0])
        _, off, data = state.last_write
        end = off + len(data)
        boundary = (end - 1) // PAGE * PAGE
        if boundary <= off:
            return None, (f"the last unsynced write ({len(data)} bytes at offset {off} of {state.path}) "
                          "lies within one page: nothing to tear, it was dropped whole")
        kept = data[:boundary - off]
        os.pwrite(state.fd, kept, off)
        if self.backing_sync:
            os.fsync(state.fd)
        return ({"path": state.path, "offset": off, "bytes": len(data), "kept_bytes": len(kept),
                 "lost_bytes": len(data) - len(kept)}, "")

    def reset(self) -> dict:
        """Power back on: unfreeze.  Handles opened before the cut stay dead (EIO)."""
        with self.lock:
            self.frozen = False
        return self.status()

    def inject(self, **changes) -> Faults:
        """Change the faults; keys are ``Faults`` fields, values as there (None clears)."""
        with self.lock:
            new = Faults(**{**self.faults.as_dict(), **changes})
            check_faults(new)
            self.faults = new
            return Faults(**new.as_dict())

    def unsynced(self) -> list[dict]:
        """Files with data that a cut would drop now (LazyFS's "unsynced data report")."""
        with self.lock:
            return [{"path": s.path, "size": s.size, "durable_size": s.durable_size,
                     "dirty_pages": len(s.dirty), "unsynced_bytes": s.unsynced_bytes()}
                    for s in sorted(self.states.values(), key=lambda s: s.path) if s.unsynced()]

    def status(self) -> dict:
        with self.lock:
            return {"backing": self.root, "frozen": self.frozen, "generation": self.gen,
                    "backing_sync": self.backing_sync, "faults": self.faults.as_dict(),
                    "stats": self.stats.as_dict(), "cached_files": len(self.states),
                    "open_handles": sum(1 for h in self.handles.values() if h.gen == self.gen),
                    "unsynced_new_files": sorted(self.unsynced_creates.values())}

    def close(self) -> None:
        with self.lock:
            for s in self.states.values():
                os.close(s.fd)
            self.states.clear()
            self.handles.clear()


#: The longest sync delay an injection accepts (ms): an hour.
MAX_SYNC_DELAY_MS = 3_600_000.0


def check_faults(f: Faults) -> Faults:
    """Validate a fault setting; ValueError says what is wrong."""
    if f.fsync_eio not in (None, "once", "always"):
        raise ValueError(f"fsync_eio must be None, 'once' or 'always', not {f.fsync_eio!r}")
    if not isinstance(f.fsync_eio_after, int) or f.fsync_eio_after < 0:
        raise ValueError(f"fsync_eio_after must be a non-negative integer, not {f.fsync_eio_after!r}")
    if f.enospc_after_bytes is not None and (not isinstance(f.enospc_after_bytes, int) or f.enospc_after_bytes < 0):
        raise ValueError(f"enospc_after_bytes must be None or a non-negative integer, not {f.enospc_after_bytes!r}")
    for name in ("sync_delay_ms", "sync_delay_spread_ms"):
        v = getattr(f, name)
        # a delay of an hour or more is a mistake, and inf would make every sync fail with EINVAL
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_SYNC_DELAY_MS:
            raise ValueError(f"{name} must be a number of milliseconds in 0..{MAX_SYNC_DELAY_MS:g}, not {v!r}")
    if f.sync_delay_dist not in DELAY_DISTRIBUTIONS:
        raise ValueError(f"sync_delay_dist must be one of {', '.join(DELAY_DISTRIBUTIONS)}, not {f.sync_delay_dist!r}")
    return f
