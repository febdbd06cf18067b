"""``lab:liar``: a device that acknowledges syncs it does not keep, as a volatile write cache does.

``LiarVolume`` is the power-cut ``Volume`` (``fsyncstudy.lab.powercut``) with one lie.  A sync
returns as soon as its data is in the device's cache; the device destages its cache in order, and a
sync's data stays in the cache for ``window_ms`` after the sync returned.  A cut loses what the cache
still holds: every sync acknowledged in the last ``window_ms`` (and every sync still in flight), on
top of what the honest volume drops (the data never synced).  ``window_ms = 0`` is an honest device.

How: a sync writes its pages through to the backing file as the honest volume does, but first keeps
the bytes it overwrites (an undo record, with the time the sync returned).  Records older than the
window are forgotten (destaged); a cut writes the bytes of the younger ones back, newest first, so
the backing directory holds what the device had destaged.  Memory is what the syncs of one window
overwrote.  The backing files are never fsynced (the lie needs no host durability: the host does not
crash), so a sync costs the FUSE round trip only: fast, as a lying disk is.

The lie covers file data and sizes.  Namespace operations still reach the backing directory at once
(see docs/lab.md): a file whose only sync was lost stays, with its earlier content (empty if new).

Standard library only, testable in-process like ``Volume``.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .powercut import PAGE, CutReport, FileState, Volume, _Snapshot

#: How long an acknowledged sync stays in the liar's volatile cache by default (ms).
DEFAULT_WINDOW_MS = 100.0


@dataclass
class _Undo:
    """What one sync overwrote in a backing file: enough to take its write-back back."""

    key: tuple[int, int]
    path: str
    size: int                                  # the backing file's size before the write-back
    saved: list = field(default_factory=list)  # [(offset, old bytes)]
    nbytes: int = 0                            # the bytes the sync wrote
    acked_ns: int | None = None                # when the sync returned (CLOCK_MONOTONIC); None: in flight


@dataclass
class LiarCutReport(CutReport):
    """What one cut of the liar dropped: the honest volume's report, and the acknowledged syncs it lost."""

    window_ms: float = 0.0
    lied_syncs: int = 0                        # acknowledged syncs whose data the cut took back
    lied_bytes: int = 0
    lied_files: list[str] = field(default_factory=list)
    newest_lied_age_ms: float | None = None    # how long before the cut the newest lost sync returned
    oldest_lied_age_ms: float | None = None


class LiarFile(FileState):
    """A file of the liar: its write-back first hands what it overwrites to the volume's undo log."""

    remember = None                            # set by LiarVolume._state_for

    def write_back(self, snap: _Snapshot, frozen) -> bool:
        self.remember(self, snap)
        return super().write_back(snap, frozen)


class LiarVolume(Volume):
    """``Volume`` whose syncs are kept only ``window_ms`` after they return (see the module docstring)."""

    state_class = LiarFile

    def __init__(self, backing, window_ms: float = DEFAULT_WINDOW_MS, **kw):
        kw.setdefault("backing_sync", False)
        super().__init__(backing, **kw)
        self.window_ms = _check_window(window_ms)
        self._undo: deque[_Undo] = deque()
        self._fds: dict[tuple[int, int], list[int]] = {}   # key -> [dup'd backing fd, records using it]
        self._undo_lock = threading.Lock()
        self._mine = threading.local()                     # the record of this thread's sync in progress
        self.lies = 0

    def _state_for(self, path: str, fd: int, writable: bool) -> FileState:
        state = super()._state_for(path, fd, writable)
        state.remember = self._remember
        return state

    # -- the undo log ------------------------------------------------------------------------

    def _remember(self, state: FileState, snap: _Snapshot) -> None:
        """Before a write-back: keep what it will overwrite (called under the file's sync lock)."""
        fd = state.fd
        size = os.fstat(fd).st_size
        rec = _Undo(state.key, state.path, size)
        if snap.valid < size:                    # the write-back truncates first: keep what it cuts off
            rec.saved.append((snap.valid, os.pread(fd, size - snap.valid, snap.valid)))
        for idx, data in snap.pages:
            off = idx * PAGE
            rec.nbytes += len(data)
            if off < min(size, snap.valid):
                rec.saved.append((off, os.pread(fd, min(PAGE, snap.valid - off), off)))
        with self._undo_lock:
            self._destage(time.monotonic_ns())
            slot = self._fds.get(state.key)
            if slot is None:
                # our own descriptor: the file's state may close its one before the record is forgotten
                slot = self._fds[state.key] = [os.dup(fd), 0]
            slot[1] += 1
            self._undo.append(rec)
        self._mine.rec = rec

    def _destage(self, now_ns: int) -> None:
        """Forget, in order, the records whose sync returned more than the window ago."""
        limit = now_ns - int(self.window_ms * 1e6)
        while self._undo and self._undo[0].acked_ns is not None and self._undo[0].acked_ns <= limit:
            self._release(self._undo.popleft().key)

    def _release(self, key) -> None:
        slot = self._fds[key]
        slot[1] -= 1
        if slot[1] == 0:
            os.close(slot[0])
            del self._fds[key]

    def _sync(self, state: FileState, datasync: bool) -> None:
        self._mine.rec = None
        try:
            super()._sync(state, datasync)
        finally:
            # a sync that failed is stamped too, so that it does not hold up the destaging behind it;
            # a cut takes back whatever it wrote all the same while it is in the window
            rec, self._mine.rec = self._mine.rec, None
            if rec is not None:
                with self._undo_lock:
                    rec.acked_ns = time.monotonic_ns()

    def _take_back(self, now_ns: int) -> dict:
        """The cut's lie: undo, newest first, every write-back the device had not destaged."""
        with self._undo_lock:
            self._destage(now_ns)
            lost = list(self._undo)
            self._undo.clear()
            for rec in reversed(lost):
                fd = self._fds[rec.key][0]
                for off, old in reversed(rec.saved):
                    os.pwrite(fd, old, off)
                os.ftruncate(fd, rec.size)
            for rec in lost:
                self._release(rec.key)
        ages = [(now_ns - r.acked_ns) / 1e6 for r in lost if r.acked_ns is not None]
        self.lies += len(ages)
        return {"window_ms": self.window_ms, "lied_syncs": len(ages),
                "lied_bytes": sum(r.nbytes for r in lost if r.acked_ns is not None),
                "lied_files": sorted({r.path for r in lost if r.acked_ns is not None}),
                "newest_lied_age_ms": round(min(ages), 3) if ages else None,
                "oldest_lied_age_ms": round(max(ages), 3) if ages else None}

    # -- power and settings --------------------------------------------------------------------

    def cut(self, tear: bool = False) -> LiarCutReport:
        with self.lock:
            now_ns = time.monotonic_ns()
            self.frozen = True                 # no write-back starts from here on,
            self.gen += 1                      # and a sync that has not returned yet fails with EIO
            while self.inflight:
                self.idle.wait()
            lie = self._take_back(now_ns)
        return LiarCutReport(**super().cut(tear=tear).as_dict(), **lie)

    def inject(self, **changes):
        """As ``Volume.inject``, and ``liar_window_ms``: how long an acknowledged sync stays volatile."""
        if "liar_window_ms" in changes:
            window = _check_window(changes.pop("liar_window_ms"))
            with self.lock:
                self.window_ms = window
        return super().inject(**changes)

    def status(self) -> dict:
        out = super().status()
        with self._undo_lock:
            self._destage(time.monotonic_ns())
            out["liar"] = {"window_ms": self.window_ms, "volatile_syncs": len(self._undo),
                           "lied_syncs": self.lies}
        return out

    def close(self) -> None:
        with self._undo_lock:
            for fd, _ in self._fds.values():
                os.close(fd)
            self._fds.clear()
            self._undo.clear()
        super().close()


def _check_window(window_ms) -> float:
    from .powercut import MAX_SYNC_DELAY_MS
    if isinstance(window_ms, bool) or not isinstance(window_ms, (int, float)) or \
            not 0 <= window_ms <= MAX_SYNC_DELAY_MS:
        raise ValueError(f"liar_window_ms must be a number of milliseconds in 0..{MAX_SYNC_DELAY_MS:g}, "
                         f"not {window_ms!r}")
    return float(window_ms)
