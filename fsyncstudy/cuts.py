"""The power-cut harness: one for our own writers (``crash``) and for the real databases (``realdb``).

One cut:

1. fork a child that writes (our engine, or a database client) and reports every acknowledgement
   over a pipe the moment it makes it (``ACK``: how many are acknowledged so far, and when, in
   CLOCK_MONOTONIC ns), after a ``READY`` message; a child that fails sends ``FAILED`` and its
   error text instead;
2. at a seeded moment after ``READY`` (``moment_ms``) cut: a ``PowerCut`` cuts the power of the
   lab's power-cut filesystem (every unsynced byte is dropped, the mount freezes), a ``ProcessCut``
   SIGKILLs the child (the page cache survives); the cut's time is taken when that returns;
3. SIGKILL the child (and whatever else the caller names), read the rest of the pipe.

What counts as acknowledged is one rule for both: every report made before the cut's time.  A
report made after it (a write() that returned into a frozen mount's page cache) was not an
acknowledgement before the cut.  ``Observed.tally`` compares them with what the caller recovered
(our log reader, or the reopened database), and ``durable_lost`` is the one rule for "a setting
that acknowledges only after a covering sync lost an acknowledgement".

Standard library only; the lab is imported when a ``PowerCut`` is made.
"""
from __future__ import annotations

import os
import random
import select
import signal
import struct
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

#: One report on the pipe: (acknowledged so far, CLOCK_MONOTONIC ns); READY and FAILED in the first
#: field mark the other messages (FAILED: the second field is the length of the error text after it).
ACK = struct.Struct("<qq")
READY, FAILED = -1, -2
#: How long a child may take to get ready before the cut is recorded as an error.
READY_TIMEOUT_S = 30.0
#: The clock of the reports (CLOCK_MONOTONIC on Linux, as time.monotonic_ns; the cheapest call).
now_ns = time.perf_counter_ns


class CutError(RuntimeError):
    """A cut that could not be made (the child did not start, the log was not there to read)."""


def moment_ms(seed: int, window_ms: tuple[float, float], *parts) -> float:
    """The cut's moment after READY, in ms: drawn uniformly from ``window_ms`` by a generator seeded
    with the seed and the parts that name the cut (so a resumed or repeated run cuts at the same moments)."""
    return random.Random("/".join(str(p) for p in (seed, *parts))).uniform(*window_ms)


def ready(fd: int) -> None:
    os.write(fd, ACK.pack(READY, now_ns()))


def ack(fd: int, n: int) -> None:
    os.write(fd, ACK.pack(n, now_ns()))


def failed(fd: int, e: BaseException) -> None:
    try:
        msg = f"{type(e).__name__}: {e}".encode()[:4000]
        os.write(fd, ACK.pack(FAILED, len(msg)) + msg)
    except OSError:
        pass


class ProcessCut:
    """SIGKILL the child; what it wrote is read where it was written."""

    kind = "process"

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.label = str(self.directory)

    def cut(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    def recover_path(self, name: str) -> Path:
        return self.directory / name

    def restore(self) -> None:
        pass


class PowerCut:
    """Cut the power of a lab power-cut filesystem (which must be up); ``restore`` brings it back,
    serving exactly what the cut kept (its backing directory)."""

    kind = "power"

    def __init__(self, target: str = "lab:powercut", lab_dir=None):
        from . import lab  # optional: needs the lab's FUSE filesystem up
        self._lab = lab
        self.mount = Path(lab.resolve_target(target, lab_dir))
        self.backing = Path(lab.backing_of(target, lab_dir))
        self.label = target
        self.directory = self.mount

    def cut(self, pid: int) -> None:
        self._lab.cut(str(self.mount))

    def recover_path(self, name: str) -> Path:
        return self.backing / name

    def restore(self) -> None:
        self._lab.reset(str(self.mount))


@dataclass
class Observed:
    """What one cut saw: the reports made before the cut (``his``: acknowledged so far, ``ts``: when),
    the cut's time, and the child's own failure text if it sent one."""

    t_cut: int
    his: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    failure: str = ""
    #: when the child said it was ready (its clock, as ``ts``): no acknowledgement is older than the cut's
    #: distance from it, however late a busy machine made the cut
    t_ready: int | None = None

    @property
    def acked(self) -> int:
        return self.his[-1] if self.his else 0

    def tally(self, recovered: int | None) -> dict:
        """acked, lost_acked, oldest_lost_age_ms, newest_ack_age_ms against what was recovered
        (consecutive from the first; None: nothing could be read, so the loss is unknown)."""
        lost = max(0, self.acked - recovered) if recovered is not None else None
        oldest = None
        if lost:
            # acknowledgements come in order: the first lost one is number recovered + 1
            j = bisect_right(self.his, recovered)
            oldest = (self.t_cut - self.ts[j]) / 1e6
        return dict(acked=self.acked, lost_acked=lost, oldest_lost_age_ms=oldest,
                    newest_ack_age_ms=(self.t_cut - self.ts[-1]) / 1e6 if self.ts else None)


def durable_lost(row: dict, acks_durable: bool) -> bool:
    """The one rule: a cut recorded without error, under a setting that acknowledges only after a
    covering sync, lost an acknowledged entry (a broken durability promise, or a broken disk)."""
    return acks_durable and not row.get("error") and bool(row.get("lost_acked"))


def run_cut(child, after_ms: float, cutter, who: str = "writer", also_kill=None, context=None,
            ready_timeout_s: float = READY_TIMEOUT_S) -> Observed:
    """Fork ``child(fd)`` (which reports on ``fd`` with ``ready``/``ack``), cut it with ``cutter`` at
    ``after_ms`` after it is ready, SIGKILL it, call ``also_kill()`` (a database server), and return
    what was observed.  A child that does not get ready raises ``CutError`` with its own failure
    text, else ``context()``'s (a server's log), else "no word from it".  The cutter's ``restore``
    is the caller's to call (after reading what a power cut kept)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, which never returns into our frames
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is ours to handle: we kill the child
            child(w)
        except BaseException as e:  # the frozen mount after a power cut ends up here (EIO): expected
            failed(w, e)
            os._exit(1)
        finally:
            os._exit(0)
    os.close(w)
    buf = bytearray()
    t_cut = None
    try:
        ok = _read_until(r, buf, lambda: len(buf) >= ACK.size, deadline_ns=now_ns() + int(ready_timeout_s * 1e9))
        if not ok or ACK.unpack_from(buf)[0] != READY:
            os.kill(pid, signal.SIGKILL)
            _drain(r, buf)
            why = _parse(buf, None)[2] or (context() if context else "") or "no word from it"
            raise CutError(f"the {who} did not start: {why}")
        t_ready = ACK.unpack_from(buf)[1]
        del buf[:ACK.size]
        cut_ns = t_ready + int(after_ms * 1e6)
        # wait for the moment (an early end of the pipe means the child died on its own)
        _read_until(r, buf, lambda: now_ns() >= cut_ns, deadline_ns=cut_ns)
        cutter.cut(pid)
        t_cut = now_ns()
        _kill(pid)
        if also_kill is not None:
            also_kill()
        _drain(r, buf)
    finally:
        os.close(r)
        _kill(pid)
        os.waitpid(pid, 0)
    his, ts, failure = _parse(buf, t_cut)
    return Observed(t_cut, his, ts, failure, t_ready)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _parse(buf: bytearray, t_cut: int | None) -> tuple[list[int], list[int], str]:
    """The reports made by ``t_cut``, and the child's failure text if it sent one (its last message)."""
    his, ts = [], []
    n = len(buf) - len(buf) % ACK.size
    for off in range(0, n, ACK.size):
        hi, t = ACK.unpack_from(buf, off)
        if hi == FAILED:
            return his, ts, bytes(buf[off + ACK.size:off + ACK.size + t]).decode(errors="replace")
        if t_cut is None or t <= t_cut:
            his.append(hi)
            ts.append(t)
    return his, ts, ""


def _read_until(fd: int, buf: bytearray, done, deadline_ns: int) -> bool:
    while not done():
        left = (deadline_ns - now_ns()) / 1e9
        if left <= 0:
            return done()
        if select.select([fd], [], [], min(left, 0.05))[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return done()
            buf += chunk
    return True


def _drain(fd: int, buf: bytearray) -> None:
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        buf += chunk
