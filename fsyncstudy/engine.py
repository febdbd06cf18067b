"""The writer engine: the loops that append framed records and sync them by strategy.

Each loop does exactly what ``fsyncstudy.strategies`` defines and records a raw
``Timeline`` (monotonic nanoseconds); ``fsyncstudy.trial`` turns it into numbers.
``write`` and ``sync`` are parameters so that the crash experiments can report every
acknowledgement as it happens (``fsyncstudy.crash``); they are bound to locals, so the
timed loops pay nothing for that.
Per entry we keep at most three timestamps (``always``: at the write, the sync and the ack) and
per sync three, in ``array('q')``; what can be derived is derived after the timed window.  That
bookkeeping is a few tens of nanoseconds in a hot loop, but not beside a blocking call: Python
code run just after one returns runs cold, and on this project's VM the timed ``always`` loop ran
0.94-0.96 of the same calls made from C on the same file, against 0.98-0.99 for an untimed Python
loop (``benchmarks/loop_cost.py``, docs/peers.md).

A sync *covers* entry i when its writer had seen entry i's write return before the
sync started; ``sync_hi[j]`` is the number of entries sync j covers (all seq < hi).
That is conservative: an entry whose write returned just as a sync began is counted
against the next sync, so measured exposure can only be overstated, never hidden.
"""
from __future__ import annotations

import errno
import functools
import itertools
import math
import operator
import os
import random
import signal
import threading
import time
from array import array
from dataclasses import dataclass, field

from .log import DeadlinePassed, Framer
from .strategies import KINDS, Strategy
from .writepaths import Deferred

#: Records framed per block once the pre-framed ones run out (duration-bound trials) ...
CHUNK = 4096
#: ... and at most this many bytes of them.
CHUNK_BYTES = 8 << 20
#: At most this many records, and this many bytes of records, are framed before timing starts
#: (about 45 MB at 128-byte payloads; PG_MAX_FRAMED_BYTES of 8 kB records); beyond them records
#: are framed in blocks as the writer goes.
PREFRAME_MAX = 1 << 18
PREFRAME_BYTES = 256 << 20
#: No run writes more entries than this, whatever its duration: it bounds the per-entry arrays
#: (8 or 16 bytes an entry; 40 under group commit) to a few hundred MB.
MAX_ENTRIES = 10_000_000
#: How long the back-to-back (N = 0) flusher naps when it finds nothing to sync.
IDLE_POLL_S = 50e-6


class SyncFailed(OSError):
    """A sync returned an error: nothing written since the last good sync may be durable."""


@dataclass
class Stop:
    """When a writer stops: after at least ``entries`` entries and ``duration_ns`` since the first write,
    and at the latest after ``max_entries``.

    ``hard_ns`` (``time.perf_counter_ns``; 0: none) is a deadline the run never goes past whatever
    its stop rule: a writer that finds it passed raises ``DeadlinePassed``.  It is tested where the
    stop rule is, so the timed loops pay nothing more per entry: at each entry (``none``: at each
    timed write), once its system call has returned.  It comes earlier by ``reserve_ns`` for each
    timed entry the block under way would bring the run to: time kept for turning the timings into a
    result (``trial.summarize``), so that a run that ends just before it is not summarized past it."""

    entries: int = 0
    duration_ns: int = 0
    max_entries: int = MAX_ENTRIES
    hard_ns: int = 0
    reserve_ns: int = 0

    def deadline(self, first_write_ns: int) -> int:
        return first_write_ns + self.duration_ns if self.duration_ns else 0

    def limit(self, timed: int) -> int:
        """The hard deadline for a run that will have timed ``timed`` entries (``_NEVER`` without one)."""
        return self.hard_ns - self.reserve_ns * timed if self.hard_ns else _NEVER

    def done(self, entries: int, t: int, first_write_ns: int) -> bool:
        """Whether a run that wrote ``entries`` by ``t`` met its stop rule (not its hard deadline)."""
        return entries >= self.entries and (not self.duration_ns or t >= self.deadline(first_write_ns))


def _deadline_passed(stop: Stop, entries: int, timed: int | None = None) -> DeadlinePassed:
    """Why a run stopped at its hard deadline: after ``entries``, of which ``timed`` (default: all) were timed."""
    timed = entries if timed is None else timed
    kept = f" less {stop.reserve_ns * timed / 1e9:.2g} s kept for their summary" if stop.reserve_ns else ""
    return DeadlinePassed(f"stopped at its deadline{kept}, after {entries:,} entries")


@dataclass
class Timeline:
    """Raw timings of one run, in ``time.perf_counter_ns`` nanoseconds, entries in seq order."""

    start_ns: int = 0                                              # taken just before the first write()
    end_ns: int = 0                                                # end of the timed window
    latency: array = field(default_factory=lambda: array("q"))     # per entry: write() called -> ack
    acks: array = field(default_factory=lambda: array("q"))        # per entry ack time; empty for none
    sync_starts: array = field(default_factory=lambda: array("q"))
    sync_ends: array = field(default_factory=lambda: array("q"))
    sync_hi: array = field(default_factory=lambda: array("q"))     # sync j covers seq < sync_hi[j]
    # buffered writes only (``write_mode="buffered"``): write() j of the user-space buffer returned at
    # write_ends[j] and put every entry below write_hi[j] into the kernel (an acknowledged entry not yet
    # there is lost at a process kill too)
    write_ends: array = field(default_factory=lambda: array("q"))
    write_hi: array = field(default_factory=lambda: array("q"))
    record_bytes: int = 0
    final_sync: bool = False        # the last sync is batch's end-of-run sync, not a flusher tick
    count: int = -1                 # entries written, where not every one is timed (none)
    cpu_ns: int | None = None       # the process's CPU time over the run (every thread), when measured
    cpu_wait_ns: int | None = None  # time its threads waited for a CPU (run queue) over the run, when measured
    daemon_cpu_ns: int | None = None  # a lab FUSE daemon's CPU time over the run, when the target has one

    @property
    def entries(self) -> int:
        return self.count if self.count >= 0 else len(self.latency)


def chunk_records(framer: Framer) -> int:
    """Records per block framed on demand: CHUNK, or fewer when they are big."""
    return max(1, min(CHUNK, CHUNK_BYTES // framer.record_bytes))


def preframe_records(framer: Framer, entries: int | None) -> int:
    """How many records to frame before timing: the entries asked for, within PREFRAME_MAX and
    PREFRAME_BYTES; a duration-bound run (no entries) starts with one block."""
    if not entries:
        return chunk_records(framer)
    return max(1, min(entries, PREFRAME_MAX, PREFRAME_BYTES // framer.record_bytes))


def _feed(framer: Framer, first: list[bytes], stop: Stop):
    """Record blocks: the pre-framed ones, then more framed on demand, ``stop.max_entries`` in all.

    The cap ends the iteration, so the timed loops pay nothing per entry for it."""
    cap = stop.max_entries
    if stop.entries and not stop.duration_ns:
        cap = min(cap, stop.entries)   # a count, not a duration: exactly that many
    yield first if len(first) <= cap else first[:cap]  # no copy inside the timed window
    seq, step = len(first), chunk_records(framer)
    while seq < cap:
        yield framer.frame_range(seq, min(seq + step, cap))
        seq += step


def _short_write(done: int, want: int) -> OSError:
    return OSError(errno.ENOSPC, f"short write: {done} of {want} bytes written (is the target full?)")


def _wrap_sync_error(e: OSError) -> SyncFailed:
    return SyncFailed(e.errno, f"sync failed ({os.strerror(e.errno) if e.errno else e}): entries written "
                               "since the last successful sync may be lost; not retrying (a retried fsync "
                               "can report success after the kernel dropped the data)")


def run_always(fd: int, sync, framer: Framer, first: list[bytes], stop: Stop, write=None) -> Timeline:
    """Write, sync, acknowledge; one sync per entry.  ``sync`` None: O_DSYNC/O_SYNC writes sync themselves.

    ``write(fd, data) -> int`` replaces ``os.write`` (a pwrite at offset 0 as pg_test_fsync does, or
    the crash experiment's reporting write).

    The loop between two system calls is kept as short as Python allows: per entry it takes the
    clock at the write, at the sync and at the ack, and appends them; everything else in the
    ``Timeline`` (latencies, what each sync covers) is derived after the timed window.  Work here
    costs more than its CPU time, because it runs cold just after a blocking call: measured with
    ``benchmarks/loop_cost.py`` beside ~90 us syncs, the three clock reads cost about 1.5% and
    their three stores about 1% more.
    """
    tl = Timeline(record_bytes=framer.record_bytes)
    starts, mids, ends = array("q"), array("q"), array("q")
    ta, ma, ea = starts.append, mids.append, ends.append
    clk, rl = time.perf_counter_ns, framer.record_bytes
    w = write or os.write
    tl.start_ns = clk()
    n_min = stop.entries
    soft = stop.deadline(tl.start_ns) or _NEVER   # a count alone: the feed ends the loop there
    for block in _feed(framer, first, stop):
        # the hard deadline, kept clear of the summary of this block's entries too, and one test per
        # entry for both deadlines
        limit = stop.limit(len(ends) + len(block))
        deadline = min(soft, limit)
        # two copies of one loop, so that neither tests per entry whether there is a sync call
        if sync is None:
            for rec in block:
                t = clk()
                k = w(fd, rec)
                a = clk()
                if k != rl:
                    raise _short_write(k, rl)
                ta(t); ea(a)
                if t >= deadline and (len(ends) >= n_min or t >= limit):
                    break
            else:
                continue
        else:
            for rec in block:
                t = clk()
                k = w(fd, rec)
                if k != rl:
                    raise _short_write(k, rl)
                s = clk()
                try:
                    sync(fd)
                except OSError as e:   # zero cost unless raised (Python 3.11)
                    raise _wrap_sync_error(e) from e
                a = clk()
                ta(t); ma(s); ea(a)
                if t >= deadline and (len(ends) >= n_min or t >= limit):
                    break
            else:
                continue
        if t >= limit and not stop.done(len(ends), t, tl.start_ns):
            raise _deadline_passed(stop, len(ends))
        break
    # derived after the timed window, at most five arrays of one int64 per entry at any time
    n = len(ends)
    tl.end_ns = ends[-1]
    tl.latency = array("q", map(operator.sub, ends, starts))
    tl.sync_starts = mids if sync is not None else starts   # O_DSYNC/O_SYNC: the write is the sync
    del starts, mids
    tl.acks = ends
    tl.sync_ends = array("q", ends)
    tl.sync_hi = array("q", range(1, n + 1))
    return tl


def _pwrite_offset0(fd: int, data: bytes, _pwrite=os.pwrite) -> int:
    return _pwrite(fd, data, 0)


#: A deadline that never comes (a run bounded by its count only).
_NEVER = 1 << 62


@functools.cache
def _sample_gaps(n: int = 1 << 16, seed: int = 0x5EED) -> array:
    """How many untimed entries come before each timed one: geometric with mean SAMPLE_EVERY - 1,
    seeded (so random positions, the same in every run).  Drawn on first use, not at import (65,536
    draws cost about 25 ms, which the protocol node paid at start-up)."""
    rng, p = random.Random(seed), 1 / SAMPLE_EVERY
    return array("q", (int(math.log(1 - rng.random()) / math.log(1 - p)) for _ in range(n)))


#: ``none`` times one write in this many, on average, at random positions.  Timing every write was
#: most of the loop's cost beyond a bare write loop (0.80 of its speed here); a systematic sample
#: (every 16th) was biased: writes that start a new page are the slow ones, and they fall at fixed
#: positions (its p99 read 1.2 us against 3.9 us for all writes); a random sample of the same runs
#: gave the same percentiles (p99 within 0.3%, p99.9 within 4%).
SAMPLE_EVERY = 16
#: ... except in a run of at most this many entries, which times them all.
TIME_ALL_UP_TO = 4096
_NO_GAPS = array("q", [0])


def run_none(fd: int, framer: Framer, first: list[bytes], stop: Stop, write=None) -> Timeline:
    """Write and acknowledge; never sync.

    Only latencies are kept (no sync will ever cover an entry, so ack times serve no exposure),
    and only for one write in SAMPLE_EVERY, at random positions: the loop between them is a bare
    write loop.  Short writes are caught per block (the bytes written are summed).  A count of
    entries is written exactly (the feed ends there); a run bounded by time tests the clock at each
    timed write, so it can write a few entries more than it would timing every write.  ``write`` as
    for ``run_always``.
    """
    tl = Timeline(record_bytes=framer.record_bytes)
    la = tl.latency.append
    w, clk, rl, islice_ = write or os.write, time.perf_counter_ns, framer.record_bytes, itertools.islice
    exact = not stop.duration_ns and stop.entries > 0   # a count: the feed ends there, no stop test at all
    # a short run times every write: its few writes would leave a sample too small for percentiles
    gaps = _sample_gaps() if not exact or stop.entries > TIME_ALL_UP_TO else _NO_GAPS
    gi, mask = 0, len(gaps) - 1
    n = 0
    tl.start_ns = clk()
    n_min, soft = stop.entries, stop.deadline(tl.start_ns)
    for block in _feed(framer, first, stop):
        it, pos, size, total, stopping = iter(block), 0, len(block), 0, False
        # the hard deadline, kept clear of the summary of this block's timed entries; one test per
        # timed write for both deadlines (a count alone has no other)
        limit = stop.limit(len(tl.latency) + (size if gaps is _NO_GAPS else size // SAMPLE_EVERY + 1))
        deadline = limit if exact else min(soft, limit)
        while pos < size:
            seg = gaps[gi]
            gi = (gi + 1) & mask
            if seg:
                for rec in islice_(it, seg):
                    total += w(fd, rec)
                pos = min(size, pos + seg)
                if pos >= size:
                    break
            t = clk()
            total += w(fd, next(it))
            la(clk() - t)
            pos += 1
            if t >= deadline and (t >= limit or not exact and n + pos >= n_min):
                stopping = True
                break
        if total != pos * rl:
            raise OSError(errno.ENOSPC, f"short write: {total} of {pos * rl} bytes written in a block of "
                                        f"{pos} entries (is the target full?)")
        n += pos
        if stopping:
            if t >= limit and not stop.done(n, t, tl.start_ns):
                raise _deadline_passed(stop, n, len(tl.latency))
            break
    tl.end_ns = clk()
    tl.count = n
    return tl


class _Flusher(threading.Thread):
    """The background syncer of batch_<N>ms.

    Ticks every N ms from its start; at a tick it syncs if unsynced data exists.  A sync
    that overruns its tick is followed at once by the next one; missed ticks are not
    replayed.  N = 0: syncs back to back, napping ``IDLE_POLL_S`` when nothing is unsynced.
    """

    def __init__(self, fd: int, sync, interval_ns: int, tl: Timeline, drain=None):
        super().__init__(name="fsyncstudy-flusher", daemon=True)
        self.fd, self.sync, self.interval_ns, self.tl = fd, sync, interval_ns, tl
        # buffered writes: drain(hi) writes the entries below hi from the user-space buffer before the sync
        self.drain = drain
        self.written = 0          # entries whose write() has returned (buffered: appended), set by the writer
        self.synced = 0           # entries covered by a completed sync
        self.error: OSError | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        clk, halt, sync, fd, interval = time.perf_counter_ns, self.halt, self.sync, self.fd, self.interval_ns
        ssa, sea, sha = self.tl.sync_starts.append, self.tl.sync_ends.append, self.tl.sync_hi.append
        tick = clk() + interval
        try:
            while not halt.is_set():
                if interval:
                    delay = tick - clk()
                    if delay > 0 and halt.wait(delay / 1e9):
                        return
                hi = self.written
                if hi > self.synced:
                    if self.drain is not None:
                        self.drain(hi)
                    s = clk()
                    sync(fd)
                    e = clk()
                    ssa(s); sea(e); sha(hi)
                    self.synced = hi
                elif not interval and halt.wait(IDLE_POLL_S):
                    return
                if interval:
                    tick += interval
                    now = clk()
                    if tick < now:
                        tick = now
        except _WriteFailed as e:
            self.error = e
        except OSError as e:
            self.error = _wrap_sync_error(e)


class _WriteFailed(OSError):
    """The write() of a user-space buffer failed: its entries, acknowledged already, are lost."""


def run_batch(fd: int, sync, interval_ms: int, framer: Framer, first: list[bytes], stop: Stop,
              write=None) -> Timeline:
    """Write and acknowledge at once; a background flusher syncs every N ms; a final sync covers the end."""
    tl = Timeline(record_bytes=framer.record_bytes)
    fl = _Flusher(fd, sync, interval_ms * 1_000_000, tl)
    la, aa = tl.latency.append, tl.acks.append
    w, clk, rl = write or os.write, time.perf_counter_ns, framer.record_bytes
    i = 0
    fl.start()
    tl.start_ns = clk()
    n_min, soft = stop.entries, stop.deadline(tl.start_ns)
    try:
        for block in _feed(framer, first, stop):
            # the hard deadline, kept clear of the summary of this block's entries; one test per entry
            # for both deadlines (a count alone has no other: the feed ends the loop at it)
            limit = stop.limit(i + len(block))
            deadline = (min(soft, limit) if soft else limit) if soft or n_min else 0
            for rec in block:
                t = clk()
                k = w(fd, rec)
                a = clk()
                if fl.error is not None:
                    # a sync failed: this entry and every later one stay unacknowledged
                    raise fl.error
                if k != rl:
                    raise _short_write(k, rl)
                i += 1
                la(a - t); aa(a)
                fl.written = i
                if t >= deadline and (i >= n_min or t >= limit):
                    break
            else:
                continue
            if t >= limit and not stop.done(i, t, tl.start_ns):
                raise _deadline_passed(stop, i)
            break
    finally:
        fl.halt.set()
        fl.join()
    _final_sync(fl, fd, sync, i, tl)
    tl.end_ns = tl.sync_ends[-1]
    return tl


#: ``none`` with buffered writes: the user-space buffer is written once it holds at least this many bytes
#: (Redis' aof_buf and PostgreSQL's wal_buffers are written by size or by time; 64 KiB is one write of a
#: few hundred small records).
BUFFER_BYTES = 64 << 10


class _Buffer:
    """The user-space log buffer of ``write_mode="buffered"``: the writer appends records (the ack), and
    ``drain(hi)`` writes the entries below ``hi`` with one write() and records when they reached the
    kernel.  A deque: the writer appends and the batch flusher pops without a lock."""

    def __init__(self, fd: int, write, tl: Timeline):
        import collections
        self.fd, self.write, self.tl = fd, write or os.write, tl
        self.recs = collections.deque()
        self.drained = 0

    def drain(self, hi: int) -> None:
        n = hi - self.drained
        if n <= 0:
            return
        pop = self.recs.popleft
        data = b"".join([pop() for _ in range(n)])
        try:
            k = self.write(self.fd, data)
        except OSError as e:
            raise _WriteFailed(e.errno, f"the write of {n:,} buffered entries failed ({os.strerror(e.errno or 0)}): "
                                        "they were acknowledged and are lost") from e
        if k != len(data):
            raise _WriteFailed(errno.ENOSPC, f"short write: {k} of {len(data)} bytes of {n:,} buffered entries "
                                             "(is the target full?)")
        self.tl.write_ends.append(time.perf_counter_ns()); self.tl.write_hi.append(hi)
        self.drained = hi


def _appending(append, ack):
    """``append``, then ``ack(n)`` with the entries appended so far: the buffered loops' acknowledgement
    reported where it is made (the crash experiment's); the loops bind it only when asked, so the default
    path's append stays the deque's own method."""
    if ack is None:
        return append
    count = [0]

    def append_and_ack(rec) -> None:
        append(rec)
        count[0] += 1
        ack(count[0])
    return append_and_ack


def run_batch_buffered(fd: int, sync, interval_ms: int, framer: Framer, first: list[bytes], stop: Stop,
                       write=None, ack=None) -> Timeline:
    """batch_<N>ms with buffered writes: an entry is appended to a user-space buffer and acknowledged; at
    each tick the flusher writes the buffer with one write() and syncs; a final write and sync cover the end.
    ``ack(n)``: called as each entry is appended (acknowledged), with the entries appended so far."""
    tl = Timeline(record_bytes=framer.record_bytes)
    buf = _Buffer(fd, write, tl)
    fl = _Flusher(fd, sync, interval_ms * 1_000_000, tl, drain=buf.drain)
    la, aa, ap = tl.latency.append, tl.acks.append, _appending(buf.recs.append, ack)
    clk = time.perf_counter_ns
    i = 0
    fl.start()
    tl.start_ns = clk()
    n_min, soft = stop.entries, stop.deadline(tl.start_ns)
    try:
        for block in _feed(framer, first, stop):
            limit = stop.limit(i + len(block))
            deadline = (min(soft, limit) if soft else limit) if soft or n_min else 0
            for rec in block:
                t = clk()
                ap(rec)
                a = clk()
                if fl.error is not None:
                    raise fl.error
                i += 1
                la(a - t); aa(a)
                fl.written = i
                if t >= deadline and (i >= n_min or t >= limit):
                    break
            else:
                continue
            if t >= limit and not stop.done(i, t, tl.start_ns):
                raise _deadline_passed(stop, i)
            break
    finally:
        fl.halt.set()
        fl.join()
    _final_sync(fl, fd, sync, i, tl)
    tl.end_ns = tl.sync_ends[-1]
    return tl


def run_none_buffered(fd: int, framer: Framer, first: list[bytes], stop: Stop, write=None,
                      buffer_bytes: int = BUFFER_BYTES, ack=None) -> Timeline:
    """none with buffered writes: an entry is appended to a user-space buffer and acknowledged; the buffer
    is written with one write() once it holds ``buffer_bytes``, and once more at the end; never synced.
    ``ack`` as for ``run_batch_buffered``."""
    tl = Timeline(record_bytes=framer.record_bytes)
    buf = _Buffer(fd, write, tl)
    la, aa, ap, recs = tl.latency.append, tl.acks.append, _appending(buf.recs.append, ack), buf.recs
    clk = time.perf_counter_ns
    per_write = max(1, -(-buffer_bytes // framer.record_bytes))
    i = 0
    tl.start_ns = clk()
    n_min, soft = stop.entries, stop.deadline(tl.start_ns)
    for block in _feed(framer, first, stop):
        limit = stop.limit(i + len(block))
        deadline = (min(soft, limit) if soft else limit) if soft or n_min else 0
        for rec in block:
            t = clk()
            ap(rec)
            a = clk()
            i += 1
            la(a - t); aa(a)
            if len(recs) >= per_write:
                buf.drain(i)
            if t >= deadline and (i >= n_min or t >= limit):
                break
        else:
            continue
        if t >= limit and not stop.done(i, t, tl.start_ns):
            raise _deadline_passed(stop, i)
        break
    buf.drain(i)
    tl.end_ns = tl.write_ends[-1] if tl.write_ends else clk()
    return tl


def _final_sync(fl: _Flusher, fd: int, sync, n: int, tl) -> None:
    """After the flusher stopped: its error, else one more sync if entries below ``n`` are not covered."""
    if fl.error is not None:
        raise fl.error
    if fl.synced < n:
        if fl.drain is not None:
            fl.drain(n)
        s = time.perf_counter_ns()
        try:
            sync(fd)
        except OSError as e:
            raise _wrap_sync_error(e) from e
        tl.sync_starts.append(s); tl.sync_ends.append(time.perf_counter_ns()); tl.sync_hi.append(n)
        tl.final_sync = True


class _GroupCommit:
    """Leader/follower group commit (as PostgreSQL and RocksDB do it).

    A writer appends its record under the log lock, then waits for a sync that covers
    it.  If no sync is in progress it becomes the leader: it waits ``delay`` seconds for
    more writers to join (N = 0: no wait), syncs everything written so far, and wakes
    the followers.  An entry is acknowledged only once a covering sync has returned.
    With ``own_sync`` the same writers each sync their own entry instead (``always`` with
    several writers: the baseline group commit is measured against).
    """

    def __init__(self, fd: int, sync, delay_s: float, framer: Framer, first: list[bytes], stop: Stop,
                 tl: Timeline, own_sync: bool = False, write_at=None):
        self.fd, self.sync, self.delay_s, self.framer, self.stop, self.tl = fd, sync, delay_s, framer, stop, tl
        self.block, self.block_base = first, 0
        self.cond = threading.Condition(threading.Lock())
        self.next_seq = 0
        self.synced = 0
        self.leading = False
        self.deadline = 0
        self.write = os.write
        self.error: BaseException | None = None
        self.halt = threading.Event()     # set by stop_writers(): a waiting leader stops waiting
        # how each entry is committed: shared syncs (group commit), or each writer's own (always, W writers)
        self.commit_one = self._own if own_sync else self._shared
        self.own_syncs: list[tuple[int, int, int]] = []     # (seq, sync start, sync end) of _own
        # a positioned write that syncs itself (rwf_dsync): each writer's entry at an offset reserved
        # under the lock, written and synced outside it, concurrently with the others' (_own_at)
        self.write_at, self.next_off = write_at, 0
        if write_at is not None:
            self.commit_one = self._own_at

    def _record(self, seq: int) -> bytes:
        # seq grows by one under the lock, so only the current block is ever needed
        k = seq - self.block_base
        if k >= len(self.block):
            self.block_base += len(self.block)
            self.block = self.framer.frame_range(self.block_base, self.block_base + chunk_records(self.framer))
            k = seq - self.block_base
        return self.block[k]

    def writer(self, out: list) -> None:
        """One closed-loop writer thread: the next entry as soon as the last one is acknowledged."""
        seqs, lats, acks = array("q"), array("q"), array("q")
        out.append((seqs, lats, acks))
        clk, commit = time.perf_counter_ns, self.commit_one
        while True:
            t = clk()
            seq = commit(t)
            if seq is None:
                return
            a = clk()
            seqs.append(seq); lats.append(a - t); acks.append(a)

    def _stopping(self, t: int) -> bool:
        """With the lock held: whether a closed-loop writer whose clock reads ``t`` writes no more; at the
        hard deadline the run's error is ``DeadlinePassed`` (each entry waits for a sync: the test of it
        is nothing beside that)."""
        seq, stop = self.next_seq, self.stop
        if stop.hard_ns and t >= stop.limit(seq) and not stop.done(seq, t, self.tl.start_ns):
            self.error = _deadline_passed(stop, seq)
            self.cond.notify_all()
            return True
        return (seq >= stop.entries and t >= self.deadline) or seq >= stop.max_entries

    def _shared(self, t: int | None = None) -> int | None:
        """Group commit: append the next entry under the log lock and wait for a sync that covers it
        (``_commit``); its seq, or None once the run stops (``t``: a closed-loop writer's clock, for the
        stop rule) or failed."""
        cond = self.cond
        with cond:
            try:
                if self.error is not None or (t is not None and self._stopping(t)):
                    return None
                return self._commit()
            except BaseException as e:
                # Recorded before the lock is released, so no other writer writes, syncs or
                # acknowledges after a failed write or sync (a second sync of the same pages
                # is the retry fsyncgate forbids).  The trial re-raises it.
                if self.error is None:
                    self.error = e
                cond.notify_all()
                return None

    def _own(self, t: int | None = None) -> int | None:
        """``always`` with several writers: append the next entry under the log lock, then sync it
        here, outside the lock, concurrently with the other writers' syncs.  Its seq once its own sync
        returned, and only if no writer's write or sync has failed by then (a failed sync's error is
        reported once per open file, so a concurrent sync on the same file may return 0 for pages
        that were dropped); None once the run stops or failed."""
        cond, clk = self.cond, time.perf_counter_ns
        with cond:
            if self.error is not None or (t is not None and self._stopping(t)):
                return None
            seq = self.next_seq
            try:
                k = self.write(self.fd, self._record(seq))
                if k != self.framer.record_bytes:
                    raise _short_write(k, self.framer.record_bytes)
            except BaseException as e:
                self.error = e
                cond.notify_all()
                return None
            self.next_seq = seq + 1
        s = clk()
        try:
            self.sync(self.fd)
        except OSError as e:
            with cond:
                if self.error is None:
                    self.error = _wrap_sync_error(e)
                cond.notify_all()
            return None
        if self.error is not None:
            return None
        self.own_syncs.append((seq, s, clk()))
        return seq

    def _own_at(self, t: int | None = None) -> int | None:
        """``always`` with several writers and a positioned write that syncs itself: reserve the next
        entry's offset under the log lock, then write and sync it there outside the lock (pwritev2 with
        RWF_DSYNC at that offset), concurrently with the other writers'.  Its seq once that returned, and
        only if no writer has failed by then; None once the run stops or failed."""
        cond, clk = self.cond, time.perf_counter_ns
        with cond:
            if self.error is not None or (t is not None and self._stopping(t)):
                return None
            seq, off = self.next_seq, self.next_off
            rec = self._record(seq)
            self.next_seq, self.next_off = seq + 1, off + len(rec)
        s = clk()
        try:
            k = self.write_at(self.fd, rec, off)
            if k != len(rec):
                raise _short_write(k, len(rec))
        except OSError as e:
            with cond:
                if self.error is None:
                    self.error = _wrap_sync_error(e) if e.errno != errno.ENOSPC else e
                cond.notify_all()
            return None
        if self.error is not None:
            return None
        self.own_syncs.append((seq, s, clk()))
        return seq

    def _commit(self) -> int | None:
        """With the lock held: append the next record and wait until a sync covers it (leading one
        if none is under way); its seq, or None when the writers were stopped meanwhile."""
        seq = self.next_seq
        k = self.write(self.fd, self._record(seq))
        if k != self.framer.record_bytes:
            raise _short_write(k, self.framer.record_bytes)
        self.next_seq = seq + 1
        while self.synced <= seq:
            if self.error is not None:
                return None
            if self.leading:
                self.cond.wait()
                continue
            self._lead()
        return seq

    def _lead(self) -> None:
        """Called with the lock held; releases it while waiting and syncing."""
        cond, clk = self.cond, time.perf_counter_ns
        self.leading = True
        cond.release()
        try:
            if self.delay_s and self._gather():
                return  # stopped while gathering: no sync, nobody acknowledged
            hi = self.next_seq  # every seq below it has its write() returned
            s = clk()
            try:
                if self.sync is not None:
                    self.sync(self.fd)
            except OSError as e:
                raise _wrap_sync_error(e) from e
            e_ = clk()
        finally:
            cond.acquire()  # held from here until the writer has recorded a failure
            self.leading = False
            cond.notify_all()
        self.tl.sync_starts.append(s); self.tl.sync_ends.append(e_); self.tl.sync_hi.append(hi)
        if hi > self.synced:
            self.synced = hi

    def _gather(self) -> bool:
        """The leader's wait of ``delay_s`` for more writers, without the lock; True when the run was
        stopped meanwhile: by ``stop_writers``, or by its hard deadline, which a wait of up to a minute
        (group_60000ms) would otherwise pass."""
        if not self.stop.hard_ns:
            return self.halt.wait(self.delay_s)
        left = (self.stop.limit(self.next_seq) - time.perf_counter_ns()) / 1e9
        if left >= self.delay_s:
            return self.halt.wait(self.delay_s)
        if not self.halt.wait(max(0.0, left)):
            self.stop_writers(_deadline_passed(self.stop, self.next_seq))
        return True

    def open_writer(self, due: array, deadline_ns: int, out: list, work_us: float) -> None:
        """One open-loop writer thread: each entry at its own arrival (``run_open``)."""
        mine = (array("q"), array("q"), array("q"), array("q"), array("q"), array("q"))  # seq, intended, started,
        out.append(mine)                                                                   # ack, late, spin cpu
        seqs, ints, sts, acks, lates, spin = mine
        clk, commit = time.perf_counter_ns, self.commit_one
        for d in due:
            if clk() >= deadline_ns or self.error is not None:
                return
            if clk() < d:
                spin.append(wait_until(d))
                s = clk()
                lates.append(s - d)
            else:
                s = clk()
            seq = commit()
            if seq is None:
                return
            a = clk()
            seqs.append(seq); ints.append(d); sts.append(s); acks.append(a)
            _burn(work_us)

    def stop_writers(self, why: BaseException) -> None:
        """Make every writer return as soon as its current system call does (Ctrl-C, SIGTERM)."""
        with self.cond:
            if self.error is None:
                self.error = why
            self.halt.set()
            self.cond.notify_all()


class _HeldSignals:
    """Hold what SIGINT and SIGTERM would raise (KeyboardInterrupt, Terminated) for the duration of a
    ``with`` block (``pending`` says one came), then raise it.  Blocking them with a signal mask is not
    enough: one delivered just before is handled at Python's next check, wherever that falls.  Only in
    the main thread (the only one Python runs handlers in)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "_HeldSignals":
        self.pending: list[int] = []
        self.old: dict = {}
        if threading.current_thread() is threading.main_thread():
            try:
                for sig in self.SIGNALS:
                    self.old[sig] = signal.signal(sig, self._hold)
            except BaseException:
                self._restore()
                raise
        return self

    def _hold(self, signum, frame) -> None:
        self.pending.append(signum)

    def _restore(self) -> None:
        err = None
        for sig, handler in list(self.old.items()):
            try:
                signal.signal(sig, handler)
            except BaseException as e:   # a new signal handled as its handler came back: restore the rest first
                err = err or e
        self.old.clear()
        if err is not None:
            raise err

    def __exit__(self, *exc) -> None:
        old = dict(self.old)
        self._restore()
        if exc[0] is None:
            for signum in self.pending:
                handler = old.get(signum)
                if callable(handler):
                    handler(signum, None)      # raises what it would have raised
                elif handler == signal.SIG_DFL:
                    os.kill(os.getpid(), signum)


#: How often the group commit's main thread looks for a held Ctrl-C while its writers run.
POLL_S = 0.05


def _join_all(threads) -> None:
    """Join every writer that was started (they return within a system call once told to stop)."""
    for th in threads:
        if th.ident is not None:
            th.join()


def run_threads(threads: list[threading.Thread], stop_writers) -> None:
    """Start the writer ``threads`` and wait until they return.  Ctrl-C and SIGTERM are held for the
    whole run and acted on here: ``stop_writers(exc)`` tells the writers to return, every one started
    is joined, and only then is the signal's exception raised, so the caller never closes the log under
    a running writer (one left running would write its next record to whatever file reuses the fd
    number: seen, into the pipe of a subprocess started right after).  Raising them where Python would
    (inside Thread.start() or Thread.join()) leaves threads that run but count as stopped: an interrupt
    inside start() (CI, 2026-11-28), and in 3.11 one inside join(), whose bpo-45274 fix releases the
    lock the live thread holds (CI and a busy machine, 2026-12-07)."""
    with _HeldSignals() as held:
        try:
            for th in threads:
                th.start()
            while not held.pending and any(th.is_alive() for th in threads):
                for th in threads:
                    th.join(POLL_S)   # a held signal only records itself: the join returns or times out
                    if held.pending:
                        break
        except BaseException as e:
            stop_writers(e)
            _join_all(threads)
            raise
        if held.pending:
            stop_writers(KeyboardInterrupt())
            _join_all(threads)
            # leaving the block raises what the signal would have raised (KeyboardInterrupt, Terminated)


def run_group(fd: int, sync, interval_ms: int, writers: int, framer: Framer, first: list[bytes],
              stop: Stop, write=None) -> Timeline:
    """Group commit with ``writers`` threads (``_GroupCommit``)."""
    return _run_writers(_GroupCommit(fd, sync, interval_ms / 1000, framer, first, stop,
                                     Timeline(record_bytes=framer.record_bytes)), writers, write)


def run_always_writers(fd: int, sync, writers: int, framer: Framer, first: list[bytes], stop: Stop,
                       write=None, write_at=None) -> Timeline:
    """``always`` with ``writers`` threads on one log, each writing and syncing its own entries
    (``_GroupCommit._own``): the baseline group commit is measured against at the same writers.
    ``write_at(fd, data, offset)``: a positioned write that syncs itself (rwf_dsync), used instead of a
    write and a sync (``_GroupCommit._own_at``)."""
    if write_at is not None:
        gc = _GroupCommit(fd, None, 0.0, framer, first, stop, Timeline(record_bytes=framer.record_bytes),
                          own_sync=True, write_at=write_at)
        tl = _run_writers(gc, writers, None)
        _own_syncs_in_order(gc.own_syncs, tl)
        return tl
    if sync is None:
        raise ValueError("always with several writers needs a sync call (fdatasync or fsync): with "
                         "open_datasync/open_sync every write is synchronous and one log's writes are serialized")
    gc = _GroupCommit(fd, sync, 0.0, framer, first, stop, Timeline(record_bytes=framer.record_bytes), own_sync=True)
    tl = _run_writers(gc, writers, write)
    _own_syncs_in_order(gc.own_syncs, tl)
    return tl


def _run_writers(gc: _GroupCommit, writers: int, write) -> Timeline:
    """Run ``writers`` closed-loop threads on ``gc`` until its stop rule; the timeline, entries in seq order."""
    tl = gc.tl
    gc.write = write or os.write
    outs: list = []
    threads = [threading.Thread(target=gc.writer, args=(outs,), name=f"fsyncstudy-writer-{k}", daemon=True)
               for k in range(writers)]
    tl.start_ns = time.perf_counter_ns()
    gc.deadline = gc.stop.deadline(tl.start_ns)
    run_threads(threads, gc.stop_writers)
    if gc.error is not None:
        raise gc.error
    n = sum(len(o[0]) for o in outs)
    tl.latency, tl.acks = array("q", bytes(8 * n)), array("q", bytes(8 * n))
    for seqs, lats, acks in outs:
        for seq, lat, a in zip(seqs, lats, acks):
            tl.latency[seq] = lat
            tl.acks[seq] = a
    tl.end_ns = max(tl.acks) if n else tl.start_ns
    return tl


def _own_syncs_in_order(own: list[tuple[int, int, int]], tl) -> None:
    """Each entry's own sync, listed in seq order as the one covering it (``sync_hi`` = seq + 1; a sync
    also covers the entries written before it started, so this overstates exposure, never hides it)."""
    own.sort()
    tl.sync_starts = array("q", (s for _, s, _ in own))
    tl.sync_ends = array("q", (e for _, _, e in own))
    tl.sync_hi = array("q", (seq + 1 for seq, _, _ in own))


def _committing(d: Deferred, ack):
    """A deferred group's sync: its leader's commit write, then ``ack`` with every entry committed so far."""
    if ack is None:
        return d.flush

    def flush_and_ack(fd: int) -> None:
        d.flush(fd)
        ack(d.committed)
    return flush_and_ack


def run(st: Strategy, fd: int, sync, framer: Framer, first: list[bytes], stop: Stop, writers: int = 1,
        write=None, offset0: bool = False, write_mode: str = "per-entry", deferred: bool = False,
        write_at=None, ack=None) -> Timeline:
    """The one dispatch from a strategy to its loop (the trial and the crash experiment both call it).

    ``sync`` is the call that makes written data durable (None: O_DSYNC/O_SYNC writes are);
    ``write`` replaces ``os.write`` (see ``run_always``); ``writers``: threads on the one log, for
    group commit (sharing syncs) and ``always`` (each syncing its own entries);
    ``offset0`` (``always`` and ``none``) writes every record at offset 0, as pg_test_fsync does;
    ``write_mode`` "buffered" (``batch`` and ``none``): entries go to a user-space buffer, acknowledged
    there, and reach the kernel in one write() per flush (batch) or per full buffer (none);
    ``deferred`` (group commit, ``write`` one that syncs itself): writers only buffer their records and
    the leader's one ``write`` commits them (``writepaths.Deferred``); ``write_at`` (``always`` with
    several writers): a positioned write that syncs itself, each writer's at its own offset.
    ``ack(n)`` (buffered and deferred only, where no ``write`` or ``sync`` the caller wraps is the ack
    point): called with the entries acknowledged so far, as a buffered entry is appended, and as a
    group's commit write returns (every entry it wrote: all durable then).
    """
    if ack is not None and write_mode != "buffered" and not deferred:
        raise ValueError("ack goes with buffered or deferred writes; elsewhere wrap write or sync")
    if write_mode == "buffered":
        if st.kind == "batch":
            return run_batch_buffered(fd, sync, st.interval_ms, framer, first, stop, write=write, ack=ack)
        if st.kind == "none":
            return run_none_buffered(fd, framer, first, stop, write=write, ack=ack)
        raise ValueError(f"buffered writes go only with batch_<N>ms and none, not {st.name}")
    if deferred:
        if st.kind != "group":
            raise ValueError(f"deferred writes go only with group_<N>ms, not {st.name}")
        d = Deferred(write or os.write)
        return run_group(fd, _committing(d, ack), st.interval_ms, writers, framer, first, stop, write=d.append)
    if offset0:
        if write is not None or st.kind not in ("always", "none"):
            raise ValueError(f"offset0 goes only with 'always' or 'none' and the engine's own write, not {st.name}")
        write = _pwrite_offset0
    if st.kind == "always":
        if writers > 1:
            if offset0:
                raise ValueError("offset0 goes with one writer only")
            return run_always_writers(fd, sync, writers, framer, first, stop, write=write, write_at=write_at)
        return run_always(fd, sync, framer, first, stop, write=write)
    if st.kind == "none":
        return run_none(fd, framer, first, stop, write=write)
    if st.kind == "batch":
        return run_batch(fd, sync, st.interval_ms, framer, first, stop, write=write)
    if st.kind == "group":
        return run_group(fd, sync, st.interval_ms, writers, framer, first, stop, write=write)
    raise ValueError(f"the engine has no loop for {st.kind!r}")


# -- the open loop: entries arrive at their intended times (``fsyncstudy.load``) ----------------------

#: Before an intended arrival the writer sleeps until this close (a sleep overshoots by tens of us),
#: then spins on os.sched_yield(), which lets go of the interpreter lock on every turn (0.55 us a
#: call here).  Measured on this machine: a plain busy spin held the lock so long that batch_10ms's
#: exposure reached 57-176 ms at 20,000 entries/s; time.sleep(0) costs 16-70 us a call, which made the
#: generator that late; sched_yield keeps it at about 1.4 us (p50) and the exposure at 10 ms.
SPIN_S = 150e-6


def wait_until(t_ns: int, clk=time.perf_counter_ns, sleep=time.sleep, cpu=time.thread_time_ns,
                yield_=os.sched_yield) -> int:
    """Wait for ``t_ns``; returns the CPU time the final yield-spin cost this thread (ns), so that
    the harness's waiting is not counted as the strategy's work."""
    left = (t_ns - clk()) / 1e9
    if left > SPIN_S:
        sleep(left - SPIN_S)
    c = cpu()
    while clk() < t_ns:
        yield_()          # lets go of the interpreter lock for a moment: the batch flusher may run
    return cpu() - c


@dataclass
class OpenTimeline:
    """Raw timings of an open-loop run (ns, perf_counter); per entry in arrival order."""

    start_ns: int = 0
    end_ns: int = 0
    intended: array = field(default_factory=lambda: array("q"))   # absolute intended arrival
    started: array = field(default_factory=lambda: array("q"))    # write() called
    acks: array = field(default_factory=lambda: array("q"))       # acknowledged (0: never)
    sync_starts: array = field(default_factory=lambda: array("q"))
    sync_ends: array = field(default_factory=lambda: array("q"))
    sync_hi: array = field(default_factory=lambda: array("q"))
    lateness: array = field(default_factory=lambda: array("q"))   # for entries the writer was idle for
    spin_cpu_ns: int = 0                                            # CPU the waits' spinning cost
    final_sync: bool = False                                        # as Timeline's
    write_ends: array = field(default_factory=lambda: array("q"))  # buffered writes: as Timeline's
    write_hi: array = field(default_factory=lambda: array("q"))


def _burn(us: float) -> None:
    """Spend ``us`` microseconds of CPU in this thread (an application's work between entries)."""
    if us > 0:
        end = time.perf_counter_ns() + int(us * 1000)
        while time.perf_counter_ns() < end:
            pass


def _buffered_write(st: Strategy, buf: "_Buffer", record_bytes: int):
    """The open loop's ``write`` under buffered writes: the entry is appended to the user-space buffer (its
    ack); batch's flusher drains it at each tick, none's buffer is drained here once it holds BUFFER_BYTES."""
    recs = buf.recs
    if st.kind == "batch":
        def append(fd: int, rec) -> int:
            recs.append(rec)
            return len(rec)
        return append
    per_write, n = max(1, -(-BUFFER_BYTES // record_bytes)), [0]

    def append_or_drain(fd: int, rec) -> int:
        recs.append(rec)
        n[0] += 1
        if len(recs) >= per_write:
            buf.drain(n[0])
        return len(rec)
    return append_or_drain


def _open_one_writer(st: Strategy, fd: int, sync, framer: Framer, due: array, deadline_ns: int, tl: OpenTimeline,
                      work_us: float, write=None, write_mode: str = "per-entry") -> None:
    """always / batch / none: one writer, entries in arrival order.  ``write`` and ``write_mode`` as
    ``run``'s (a buffered entry is acknowledged when appended)."""
    clk, w, rl = time.perf_counter_ns, write or os.write, framer.record_bytes
    buf = None
    if write_mode == "buffered":
        if st.kind not in ("batch", "none"):
            raise ValueError(f"buffered writes go only with batch_<N>ms and none, not {st.name}")
        buf = _Buffer(fd, write, tl)
        w = _buffered_write(st, buf, rl)
    flusher = None
    if st.kind == "batch":
        flusher = _Flusher(fd, sync, st.interval_ms * 1_000_000, tl, drain=buf.drain if buf is not None else None)
        flusher.start()
    step = chunk_records(framer)
    block, base = framer.frame_range(0, min(len(due), step)), 0
    ia, sa, aa, la = tl.intended.append, tl.started.append, tl.acks.append, tl.lateness.append
    try:
        for i, d in enumerate(due):
            if clk() >= deadline_ns:
                break
            if i - base >= len(block):
                base += len(block)
                block = framer.frame_range(base, min(len(due), base + step))
            if clk() < d:
                tl.spin_cpu_ns += wait_until(d)
                s = clk()
                la(s - d)
            else:
                s = clk()
            k = w(fd, block[i - base])
            if k != rl:
                raise _short_write(k, rl)
            if st.kind == "always":
                ss = clk()
                if sync is not None:
                    try:
                        sync(fd)
                    except OSError as e:
                        raise _wrap_sync_error(e) from e
                a = clk()
                tl.sync_starts.append(ss); tl.sync_ends.append(a); tl.sync_hi.append(i + 1)
            else:
                a = clk()
                if flusher is not None:
                    if flusher.error is not None:
                        raise flusher.error
                    flusher.written = i + 1
            ia(d); sa(s); aa(a)
            _burn(work_us)
    finally:
        if flusher is not None:
            flusher.halt.set()
            flusher.join()
    if flusher is not None:
        _final_sync(flusher, fd, sync, len(tl.acks), tl)   # the final covering sync, as in the closed loop
    elif buf is not None:
        buf.drain(len(tl.acks))                             # none's last partial buffer, as in the closed loop


def _open_writers(st: Strategy, fd: int, sync, framer: Framer, due: array, clients: int, deadline_ns: int,
                  tl: OpenTimeline, work_us: float, write=None, deferred: bool = False, write_at=None) -> None:
    """Several writers on one log, the arrivals dealt round robin (each client offers rate / clients):
    group commit, or ``always`` with each writer syncing its own entries.  ``write``, ``deferred`` and
    ``write_at`` as ``run``'s."""
    own = st.kind == "always"
    if own and sync is None and write_at is None:
        raise ValueError("always with several writers needs a sync call (fdatasync or fsync)")
    if deferred:
        if st.kind != "group":
            raise ValueError(f"deferred writes go only with group_<N>ms, not {st.name}")
        d = Deferred(write or os.write)
        sync, write = d.flush, d.append
    gc = _GroupCommit(fd, sync, (st.interval_ms or 0) / 1000, framer, framer.frame_range(0, chunk_records(framer)),
                      Stop(), tl, own_sync=own, write_at=write_at if own else None)
    gc.write = write or os.write
    outs: list = []
    threads = [threading.Thread(target=gc.open_writer, args=(due[k::clients], deadline_ns, outs, work_us),
                                name=f"fsyncstudy-writer-{k}", daemon=True) for k in range(clients)]
    run_threads(threads, gc.stop_writers)
    if gc.error is not None:
        raise gc.error
    rows = sorted((s, d, b, a) for o in outs for s, d, b, a in zip(o[0], o[1], o[2], o[3]))
    for _, d, b, a in rows:
        tl.intended.append(d); tl.started.append(b); tl.acks.append(a)
    for o in outs:
        tl.lateness.extend(o[4])
        tl.spin_cpu_ns += sum(o[5])
    if own:
        _own_syncs_in_order(gc.own_syncs, tl)


def run_open(st: Strategy, fd: int, sync, framer: Framer, start_ns: int, due: array, deadline_ns: int,
             clients: int = 1, work_us: float = 0.0, write=None, write_mode: str = "per-entry",
             deferred: bool = False, write_at=None) -> OpenTimeline:
    """The open loop's one dispatch: from ``start_ns`` serve entries arriving at ``due`` (absolute
    perf_counter ns) until ``deadline_ns``; ``always``/``batch``/``none`` with one writer in arrival
    order, ``group`` (and ``always`` with ``clients`` > 1) with ``clients`` writers dealt the arrivals
    round robin.  ``work_us``: CPU spent after each entry (an application's work).  The write path:
    ``write``, ``write_mode``, ``deferred`` and ``write_at`` as ``run``'s."""
    tl = OpenTimeline(start_ns=start_ns)
    if write_mode == "buffered" and (st.kind == "group" or clients > 1):
        raise ValueError(f"buffered writes go only with batch_<N>ms and none, one client, not {st.name}")
    wait_until(start_ns)
    if st.kind == "group" or clients > 1:
        _open_writers(st, fd, sync, framer, due, clients, deadline_ns, tl, work_us, write, deferred, write_at)
    else:
        _open_one_writer(st, fd, sync, framer, due, deadline_ns, tl, work_us, write, write_mode)
    return tl


_HARNESS_NS: dict[str, float] = {}


def harness_ns(kind: str, n: int = 20_000) -> float:
    """What the engine's bookkeeping costs per entry for a kind of strategy, in ns: its loop against
    a bare loop of the same system calls, both on /dev/null with a sync that does nothing, so that
    only the Python around the calls differs.  The engine's side is its timed window (what is derived
    after it is not counted).  Measured once per process (about 0.1 s), the best of 3."""
    if kind in _HARNESS_NS:
        return _HARNESS_NS[kind]
    framer = Framer(bytes(128))
    recs = framer.frame_range(0, n)
    noop = lambda fd: None   # noqa: E731
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        def engine_loop() -> int:
            if kind == "group":
                tl = run_group(fd, noop, 0, 1, framer, recs, Stop(n))
            elif kind == "batch":
                tl = run_batch(fd, noop, 10, framer, recs, Stop(n))
            elif kind == "always":
                tl = run_always(fd, noop, framer, recs, Stop(n))
            else:
                tl = run_none(fd, framer, recs, Stop(n))
            return tl.end_ns - tl.start_ns

        def bare_loop() -> int:
            w, s = os.write, noop
            t = time.perf_counter_ns()
            if KINDS[kind].acks_durable:   # a sync per entry
                for r in recs:
                    w(fd, r)
                    s(fd)
            else:
                for r in recs:
                    w(fd, r)
            return time.perf_counter_ns() - t
        best = [min(f() for _ in range(3)) for f in (engine_loop, bare_loop)]
    finally:
        os.close(fd)
    _HARNESS_NS[kind] = max(0.0, (best[0] - best[1]) / n)
    return _HARNESS_NS[kind]
