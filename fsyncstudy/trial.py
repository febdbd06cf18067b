"""One measured run of one strategy on one target: ``run_trial`` -> ``TrialResult``.

Standard library only: the protocol node calls this directly.
"""
from __future__ import annotations

import datetime as _dt
import errno
import os
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from . import engine, measures, writepaths
from .log import AlignedFramer, DirectRefused, Framer, LogFile, read_log
from .strategies import (SELF_SYNCING_METHODS, Strategy, check_preallocation, check_sync_method, check_write_mode,
                         parse, quote)
from .places import pick_directory, resolve_directory
from .targets import Target, describe

#: Space reserved up front by fallocate/zero-fill when a trial is bounded by time, not entries.
DEFAULT_PREALLOC_BYTES = 64 << 20
#: Payload bytes per entry unless told otherwise.
DEFAULT_PAYLOAD_BYTES = 128
#: Leave this much free on the target beyond what a trial needs.
SPACE_MARGIN_BYTES = 16 << 20
#: Bounds on what one trial may be asked, so that no request exhausts memory or runs for days:
#: entries (engine.MAX_ENTRIES, which also ends a duration-bound trial), payload bytes per entry,
#: writers (threads, for group commit and always), and seconds.
MAX_ENTRIES = engine.MAX_ENTRIES
MAX_PAYLOAD_BYTES = 1 << 20
MAX_WRITERS = 64
MAX_DURATION_S = 3600.0
#: ``run_rounds`` repeats a request's trials in alternating rounds while they fit this budget (seconds) ...
ROUND_BUDGET_S = 1.5
#: ... up to this many rounds.
MAX_ROUNDS = 5
#: A trial given a deadline stops its writer this long before it for each timed entry, leaving the time
#: to turn them into a result (``summarize``, and the engine's derivations after its timed window):
#: about twice what 10,000,000 batch_10ms entries took here (14.7 s), the most per entry of any kind.
SUMMARY_RESERVE_NS = 3000

DeadlinePassed = engine.DeadlinePassed


class TargetFull(OSError):
    """The target lacks the space a trial needs."""


class DurabilityWarning(UserWarning):
    """The target cannot make data durable, so sync timings there mean little."""


@dataclass
class TrialResult:
    """Everything one trial measured.  Times: ``_us`` microseconds, ``_ms`` milliseconds, ``_s`` seconds."""

    strategy: str
    kind: str
    interval_ms: int | None
    sync_method: str
    prealloc: str
    payload_bytes: int
    record_bytes: int
    writers: int
    entries: int
    elapsed_s: float
    ops_per_sec: float
    syncs: int
    bytes_written: int
    ack_latency_us_p50: float | None
    ack_latency_us_p99: float | None
    ack_latency_us_max: float | None
    ack_latency_us_mean: float | None
    sync_latency_us_p50: float | None
    sync_latency_us_p99: float | None
    sync_latency_us_max: float | None
    sync_latency_us_mean: float | None
    flush_interval_ms_mean: float | None
    flush_interval_ms_p99: float | None
    #: Time from an entry's ack until a sync covering it returned; None when nothing was synced.
    exposure_ms_p50: float | None
    exposure_ms_p99: float | None
    exposure_ms_max: float | None
    exposure_ms_mean: float | None
    synced: bool
    nominal_loss_window_ms: float | None
    durability: str
    data_loss_window: str
    #: For ``none``: the kernel writes dirty data back once it is this old, checked at this period.
    writeback_expire_s: float | None
    writeback_interval_s: float | None
    target_path: str
    target_fstype: str
    target_durability: str
    target_reason: str
    prealloc_bytes: int = 0
    #: Every entry was written at offset 0 (pg_test_fsync's pattern); the file then holds only the last one.
    overwrite_offset0: bool = False
    verified: bool | None = None
    verify_detail: str = ""
    #: How many entries the ack latency percentiles rest on (``none`` times a random sample of its writes).
    timed_entries: int = 0
    #: What the harness's own bookkeeping costs per entry (ns), measured for this kind of loop against a
    #: bare loop of the same system calls on /dev/null (``engine.harness_ns``); None for buffered writes,
    #: whose loops it does not measure.
    harness_ns_per_entry: float | None = None
    #: CPU time of the whole process (every thread, user + system) over the run, per entry, and as a
    #: share of the elapsed time; ``bound`` is "cpu" when that share plus ``cpu_wait_share`` is at least
    #: CPU_BOUND_SHARE (the process never waited for storage: the result measures the write loop and
    #: the kernel's copy, not the storage), else "storage".
    cpu_s: float | None = None
    cpu_us_per_entry: float | None = None
    cpu_share: float | None = None
    #: The share of the elapsed time the process's threads were ready to run but waited for a CPU that
    #: other processes had (a busy machine); ``bound`` counts it with ``cpu_share``.
    cpu_wait_share: float | None = None
    bound: str = ""
    #: On a lab FUSE target: the CPU time of its daemon (every thread) over the run, as a share of the
    #: elapsed time; ``bound`` is "fuse-daemon" when the writer and the daemon together were on a CPU at
    #: least CPU_BOUND_SHARE of it (``bound_of``).
    daemon_cpu_share: float | None = None
    #: The ack and sync latencies of the trial as log-linear histograms in ns (``measures.histogram``,
    #: encoded 'bucket:count ...'), so percentiles over trials pooled together can be recomputed.
    ack_latency_hist: str = ""
    sync_latency_hist: str = ""
    #: Fewer than PERCENTILE_MIN_N values: the "p99" is the largest value, and is labelled so.
    ack_p99_is_max: bool = False
    sync_p99_is_max: bool = False
    started_at: str = ""
    warnings: list[str] = field(default_factory=list)
    # -- the write path (docs/strategies.md#write-paths); the defaults are the path every dataset before
    # them measured, so a row without these columns reads as that path
    #: "per-entry" (a write() per entry) or "buffered" (a user-space buffer, written per flush or when full).
    write_mode: str = "per-entry"
    #: sync_file_range(SYNC_FILE_RANGE_WRITE) every this many bytes written (0: off).
    bytes_per_sync: int = 0
    #: The log rolled to a new segment file every this many bytes (0: one file), reusing the oldest of
    #: ``recycle`` + 1 segments from then on (0: always a new file).
    segment_bytes: int = 0
    recycle: int = 0
    #: Rolls to a new segment, and the ack latency of the first entry after each (its roll's cost is in it),
    #: beside the trial's ack_latency_us_p50; None without a roll.
    roll_count: int = 0
    roll_ack_us_p50: float | None = None
    roll_ack_us_max: float | None = None
    #: Buffered writes: time from an entry's ack until the write() that put it into the kernel returned
    #: (what a process kill loses, not only a power cut); None for per-entry writes (0 by construction).
    process_exposure_ms_p99: float | None = None
    process_exposure_ms_max: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


#: The write path's fields of TrialResult: a dataset written before them lacks these columns, and
#: ``dataset.load`` gives them their defaults there (the path every such dataset measured).
WRITE_PATH_FIELDS = ("write_mode", "bytes_per_sync", "segment_bytes", "recycle", "roll_count", "roll_ack_us_p50",
                     "roll_ack_us_max", "process_exposure_ms_p99", "process_exposure_ms_max")


def writeback_bounds() -> tuple[float | None, float | None]:
    """The kernel's dirty_expire and dirty_writeback periods in seconds (None where unreadable)."""
    out = []
    for name in ("dirty_expire_centisecs", "dirty_writeback_centisecs"):
        try:
            out.append(int(Path("/proc/sys/vm", name).read_text()) / 100)
        except (OSError, ValueError):
            out.append(None)
    return out[0], out[1]


def human_bytes(n: float) -> str:
    """A byte count as people read it: 512 B, 144 kiB, 16.0 MiB, 1.50 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}" if abs(n) < 1000 else f"{n:,.0f} {unit}"
        n /= 1024
    return f"{n} B"


def _check_int(name: str, v, lo: int, hi: int, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer in {lo:,}..{hi:,}, got {quote(v)}")


#: A nearest-rank p99 of fewer values than this is the maximum (with 99 values, the 99th is the 99th of 99).
PERCENTILE_MIN_N = 100
#: A trial whose process was on a CPU for at least this share of its elapsed time is CPU-bound.
CPU_BOUND_SHARE = 0.8


def payload_for(nbytes: int) -> bytes:
    """The same incompressible payload every run (compressing filesystems would flatter zeros)."""
    return random.Random(0x5EED).randbytes(nbytes)


def space_needed(entries: int | None, record_bytes: int, prealloc: str, prealloc_bytes: int) -> int:
    data = (entries or 0) * record_bytes
    return max(data, prealloc_bytes if prealloc != "append" else 0)


def run_trial(strategy: str | Strategy, entries: int | None = None, duration_s: float | None = None,
              directory: str | os.PathLike | None = None, sync_method: str = "fdatasync",
              prealloc: str = "append", payload_bytes: int = DEFAULT_PAYLOAD_BYTES, writers: int = 1,
              prealloc_bytes: int | None = None, verify: bool = False,
              target: Target | None = None, overwrite_offset0: bool = False,
              on_timeline=None, direct: bool = False, deadline: float | None = None,
              write_mode: str = "per-entry", bytes_per_sync: int = 0, segment_bytes: int = 0,
              recycle: int = 0) -> TrialResult:
    """Run one trial: write entries to a fresh log in ``directory`` by ``strategy`` and measure.

    The trial writes at least ``entries`` entries and runs at least ``duration_s``
    seconds (give one or both).  The log file is removed afterwards, also on error.
    ``overwrite_offset0`` (``always`` and ``none`` only) writes every entry at offset 0 of
    the file instead of appending, as pg_test_fsync does; a peer-parity mode, not a log.
    ``on_timeline(timeline)`` is called with the raw ``engine.Timeline`` before it is summarized,
    for callers that need more than the summary (a full percentile list).
    ``direct`` (with ``overwrite_offset0``, records of whole 4096-byte blocks) writes with O_DIRECT,
    as pg_test_fsync's open_* tests do; another peer-parity mode.
    ``deadline`` (``time.monotonic()`` seconds) is one the trial never returns after: its writer stops
    there (``engine.Stop.hard_ns``, earlier by ``SUMMARY_RESERVE_NS`` an entry, for the summary) and
    it raises ``DeadlinePassed``, its log removed; a system call under way at the deadline (a write, a
    sync) is waited for.
    The write path (docs/strategies.md#write-paths): ``sync_method`` "rwf_dsync" or "direct_dsync"
    (``always``, ``group_<N>ms``); ``write_mode`` "buffered" (``batch_<N>ms``, ``none``);
    ``bytes_per_sync`` (sync_file_range every N bytes); ``segment_bytes`` and ``recycle`` (segment files).
    """
    st = strategy if isinstance(strategy, Strategy) else parse(strategy)
    check_sync_method(sync_method)
    check_preallocation(prealloc)
    check_write_path(st, sync_method, writers, write_mode, bytes_per_sync, segment_bytes, recycle,
                     overwrite_offset0 or direct)
    if entries is None and duration_s is None:
        raise ValueError("give entries, duration_s or both")
    _check_int("entries", entries, 1, MAX_ENTRIES, allow_none=True)
    if duration_s is not None and not (isinstance(duration_s, (int, float)) and 0 < duration_s <= MAX_DURATION_S):
        raise ValueError(f"duration_s must be a number of seconds in (0, {MAX_DURATION_S:g}], got {quote(duration_s)}")
    _check_int("payload_bytes", payload_bytes, 0, MAX_PAYLOAD_BYTES)
    _check_int("writers", writers, 1, MAX_WRITERS)
    if prealloc_bytes is not None:
        _check_int("prealloc_bytes", prealloc_bytes, 0, 1 << 40)
    if writers > 1 and not st.acks_durable:
        raise ValueError(f"{st.name}: several writers are only meaningful for group_<N>ms (group commit) and for "
                         "always (each writer syncing its own entries)")
    if writers > 1 and sync_method.startswith("open_"):
        raise ValueError(f"{sync_method} with several writers: every write is synchronous and one log's writes "
                         "are serialized; use fdatasync or fsync")
    if writers > 1 and overwrite_offset0:
        raise ValueError("overwrite_offset0 goes with one writer only")
    if overwrite_offset0 and st.kind not in ("always", "none"):
        raise ValueError(f"overwrite_offset0 goes only with 'always' or 'none', not {st.name}")
    if direct and not overwrite_offset0:
        raise ValueError("direct goes only with overwrite_offset0 (whole blocks at offset 0, as pg_test_fsync)")
    if sync_method.startswith("open_") and st.kind != "always":
        raise ValueError(f"{sync_method} makes every write synchronous, so it only goes with 'always', "
                         f"not {st.name}")
    if directory is None:
        directory = pick_directory()
    directory = os.fspath(resolve_directory(directory))   # a path, or a lab target such as "lab:xfs"
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"target directory {directory} does not exist")
    tgt = target or describe(directory)

    payload = payload_for(payload_bytes)
    framer = AlignedFramer(payload) if direct else Framer(payload)   # AlignedFramer refuses partial blocks
    if segment_bytes and segment_bytes < max(writepaths.MIN_SEGMENT_BYTES, framer.record_bytes):
        raise ValueError(f"segment_bytes must be at least {max(writepaths.MIN_SEGMENT_BYTES, framer.record_bytes):,} "
                         f"(a page, and one record of {framer.record_bytes:,} bytes), got {segment_bytes:,}")
    if segment_bytes:
        prealloc_bytes = segment_bytes     # each segment is preallocated to its size
    if prealloc_bytes is None:
        if overwrite_offset0:
            prealloc_bytes = framer.record_bytes
        else:
            prealloc_bytes = entries * framer.record_bytes if entries and duration_s is None else DEFAULT_PREALLOC_BYTES
    need = space_needed(1 if overwrite_offset0 else entries, framer.record_bytes, prealloc, prealloc_bytes)
    free = shutil.disk_usage(directory).free
    if need + SPACE_MARGIN_BYTES > free:
        raise TargetFull(28, f"{directory} has {human_bytes(free)} free; this trial needs {human_bytes(need)} "
                             f"plus a {human_bytes(SPACE_MARGIN_BYTES)} margin")

    notes = []
    if not tgt.can_be_durable:
        msg = f"{directory} is on {tgt.fstype}: {tgt.reason}; sync timings there measure no durability"
        warnings.warn(msg, DurabilityWarning, stacklevel=2)
        notes.append(msg)

    _check_deadline(deadline, "before its log was opened")
    first = framer.frame_range(0, engine.preframe_records(framer, entries))
    started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    daemon = fuse_daemon_pid(directory, tgt)
    path = WritePath(write_mode, bytes_per_sync, segment_bytes, recycle)
    try:
        tl, verified, detail = _run(st, directory, sync_method, prealloc, prealloc_bytes, writers, framer, first,
                                    entries, duration_s, verify, overwrite_offset0, on_timeline, direct, daemon,
                                    deadline, path)
    except DirectRefused as e:
        raise OSError(e.errno, f"direct_dsync: {directory} ({tgt.fstype}) refuses O_DIRECT "
                               f"({os.strerror(e.errno or 0)}): use rwf_dsync or open_dsync there") from e
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise TargetFull(errno.ENOSPC, f"{directory} ({tgt.fstype}) ran out of space during the trial: it had "
                                           f"{human_bytes(free)} free, the trial needed about {human_bytes(need)} "
                                           "plus what the filesystem keeps for itself; its log was removed") from e
        raise
    _check_deadline(deadline, f"after its {tl.entries:,} entries, before their summary")
    if duration_s and tl.entries >= MAX_ENTRIES and tl.end_ns - tl.start_ns < duration_s * 1e9:
        notes.append(f"stopped at {MAX_ENTRIES:,} entries (the most one trial writes) before {duration_s:g} s")
    return summarize(st, tl, sync_method=sync_method, prealloc=prealloc, payload_bytes=payload_bytes,
                     writers=writers, target=tgt, prealloc_bytes=prealloc_bytes if prealloc != "append" else 0,
                     verified=verified, verify_detail=detail, started_at=started_at, notes=notes,
                     overwrite_offset0=overwrite_offset0, path=path)


@dataclass
class WritePath:
    """How a trial's entries reach the log beyond its strategy and sync method (``run_trial``'s options),
    and what its segments did (``rolls``: (seq, ns) of ``writepaths.Segments``)."""

    write_mode: str = "per-entry"
    bytes_per_sync: int = 0
    segment_bytes: int = 0
    recycle: int = 0
    rolls: list = field(default_factory=list)


def compact_bytes(n: int) -> str:
    """A byte count in a label without spaces: 1MiB, 64KiB, 1000 (exact, or the plain number)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def path_label(sync_method: str = "fdatasync", write_mode: str = "per-entry", bytes_per_sync: int = 0,
               segment_bytes: int = 0, recycle: int = 0) -> str:
    """The one short name of a write path, "" for the plain one (a write() per entry, fdatasync, one file):
    the parts that differ from it joined by "+", e.g. "rwf_dsync", "buffered", "bytes_per_sync=1MiB",
    "segments=1MiB+recycle=2".  Rows, keys and tables name a path by it (``crash``, ``loadstudy``)."""
    parts = [sync_method] if sync_method != "fdatasync" else []
    if write_mode != "per-entry":
        parts.append(write_mode)
    if bytes_per_sync:
        parts.append(f"bytes_per_sync={compact_bytes(int(bytes_per_sync))}")
    if segment_bytes:
        parts.append(f"segments={compact_bytes(int(segment_bytes))}")
    if recycle:
        parts.append(f"recycle={int(recycle)}")
    return "+".join(parts)


#: The write path's columns of a crash or load row, with the plain path's values: a row written before
#: they existed measured that path (``dataset.added_columns``).
PATH_COLUMNS = {"sync_method": "fdatasync", "write_mode": "per-entry", "bytes_per_sync": 0, "segment_bytes": 0,
                "recycle": 0}


class PathOptions(NamedTuple):
    """A write path as ``run_trial``'s options of the same names name it (the crash experiment's and the
    load study's cells); the defaults are the plain path."""

    sync_method: str = "fdatasync"
    write_mode: str = "per-entry"
    bytes_per_sync: int = 0
    segment_bytes: int = 0
    recycle: int = 0

    @property
    def label(self) -> str:
        return path_label(*self)

    def write_path(self) -> "WritePath":
        return WritePath(self.write_mode, self.bytes_per_sync, self.segment_bytes, self.recycle)

    @classmethod
    def of_row(cls, row) -> "PathOptions":
        """A row's path (a dict of its fields, as text or typed); a field missing or empty, as in a dataset
        written before the columns, is the plain path's."""
        def get(name):
            v = row.get(name)
            return PATH_COLUMNS[name] if v is None or v == "" or v != v else v
        return cls(str(get("sync_method")), str(get("write_mode")), *(int(float(get(n))) for n in cls._fields[2:]))


def row_path_label(row) -> str:
    """``path_label`` of a row with the path's columns (``PathOptions.of_row``)."""
    return PathOptions.of_row(row).label


#: The sync methods whose writes need a sync call after them (the ones bytes_per_sync and segments go with).
_SYNC_CALL_METHODS = ("fdatasync", "fsync")


def check_write_path(st: Strategy, sync_method: str, writers: int, write_mode: str, bytes_per_sync: int,
                     segment_bytes: int, recycle: int, peer_mode: bool = False) -> None:
    """Refuse, in one line, a write path that does not go with the strategy or with itself."""
    check_write_mode(write_mode)
    _check_int("bytes_per_sync", bytes_per_sync, 0, 1 << 40)
    _check_int("segment_bytes", segment_bytes, 0, 1 << 40)
    _check_int("recycle", recycle, 0, writepaths.MAX_SEGMENTS - 1)
    new = sync_method in ("rwf_dsync", "direct_dsync") or write_mode != "per-entry" or bytes_per_sync or segment_bytes
    if peer_mode and new:
        raise ValueError("overwrite_offset0 and direct (pg_test_fsync's patterns) go with the plain write path only")
    if sync_method in ("rwf_dsync", "direct_dsync"):
        if st.kind not in ("always", "group"):
            raise ValueError(f"{sync_method} makes each write sync itself, so it goes only with always or "
                             f"group_<N>ms, not {st.name}")
        if sync_method == "direct_dsync" and st.kind == "always" and writers > 1:
            raise ValueError("direct_dsync with several writers under always: their records share the tail block, "
                             "which one writer rewrites at a time; use group_<N>ms (the leader's write commits the "
                             "group)")
    if write_mode == "buffered" and st.kind not in ("batch", "none"):
        raise ValueError(f"buffered writes acknowledge at the append, so they go only with batch_<N>ms and none, "
                         f"not {st.name} (which acknowledges after a sync)")
    if bytes_per_sync and sync_method not in _SYNC_CALL_METHODS:
        raise ValueError(f"bytes_per_sync starts writeback ahead of a later sync; with {sync_method} every write "
                         "is synchronous already: use fdatasync or fsync")
    if recycle and not segment_bytes:
        raise ValueError("recycle reuses segment files: give segment_bytes too")
    if segment_bytes:
        if sync_method not in _SYNC_CALL_METHODS:
            raise ValueError(f"segments go with fdatasync or fsync, not {sync_method}")
        if write_mode != "per-entry" or bytes_per_sync:
            raise ValueError("segments go with per-entry writes and without bytes_per_sync")


def _check_deadline(deadline: float | None, where: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlinePassed(f"stopped at its deadline {where}")


def _hard_ns(deadline: float | None) -> int:
    """A ``time.monotonic()`` deadline on the engine's clock (``time.perf_counter_ns``); 0 for none."""
    if deadline is None:
        return 0
    return max(1, time.perf_counter_ns() + int((deadline - time.monotonic()) * 1e9))


def open_log(directory, sync_method, prealloc, prealloc_bytes, direct, deadline, path: WritePath,
             name: str | None = None):
    """The log a path writes: a ``LogFile``, or ``writepaths.Segments`` (``name``: the file's, or the
    segments' stem)."""
    if path.segment_bytes:
        _allow_descriptors(writepaths.MAX_SEGMENTS + 64)
        return writepaths.Segments(directory, sync_method, prealloc, path.segment_bytes, path.recycle, deadline,
                                   stem=name)
    return LogFile(directory, sync_method, prealloc, prealloc_bytes, name=name, direct=direct, deadline=deadline)



def _allow_descriptors(n: int) -> None:
    """Raise this process's soft limit on open files towards ``n`` (segments hold one each)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def write_function(log, sync_method: str, framer: Framer, path: WritePath):
    """What the engine's ``write`` is bound to for this path; None for the plain ``os.write`` (the default
    paths are not wrapped, so they pay nothing for the others)."""
    write = None
    if sync_method == "rwf_dsync":
        write = writepaths.rwf_dsync_write
    elif sync_method == "direct_dsync":
        write = writepaths.TailBlock(max(framer.record_bytes * 64, engine.CHUNK_BYTES // 16)).write
    elif path.segment_bytes:
        write = log.write
    if path.bytes_per_sync:
        call = writepaths.sync_file_range_call()
        writepaths.probe_sync_file_range(log.fd, call)
        write = writepaths.with_bytes_per_sync(write or os.write, path.bytes_per_sync, call)
    return write



def engine_options(st: Strategy, sync_method: str, writers: int, path: WritePath) -> dict:
    """``engine.run``'s options for a path beside its ``write`` and ``sync``: buffered writes, a deferred
    group (its leader's write syncs), an always writer's positioned self-syncing write."""
    own_at = sync_method == "rwf_dsync" and st.kind == "always" and writers > 1
    return {"write_mode": path.write_mode, "deferred": st.kind == "group" and sync_method in SELF_SYNCING_METHODS,
            "write_at": writepaths.rwf_dsync_write_at if own_at else None}


def _run(st, directory, sync_method, prealloc, prealloc_bytes, writers, framer, first, entries, duration_s, verify,
         overwrite_offset0, on_timeline, direct=False, daemon: int | None = None, deadline: float | None = None,
         path: WritePath | None = None):
    """One engine run on a fresh log that is removed afterwards, also after an error.  ``daemon``: the
    pid of the FUSE daemon serving the target, whose CPU time over the run is measured too; ``deadline``
    as ``run_trial``'s; ``path``: the write path (``WritePath``; its ``rolls`` are filled in)."""
    path = path or WritePath()
    with open_log(directory, sync_method, prealloc, prealloc_bytes, direct, deadline, path) as log:
        sync = log.sync_function(own_writes=True)
        write = write_function(log, sync_method, framer, path)
        # at least one entry: a trial whose writer was first scheduled after its duration had passed (a busy
        # machine, a 0.02 s trial) measured nothing, and 0 entries a second is no measurement
        stop = engine.Stop(max(1, entries or 0), int(duration_s * 1e9) if duration_s else 0, MAX_ENTRIES,
                           hard_ns=_hard_ns(deadline), reserve_ns=SUMMARY_RESERVE_NS if deadline is not None else 0)
        d0 = process_cpu_ns(daemon)
        wait0, cpu0 = cpu_wait_ns(), time.process_time_ns()
        tl = engine.run(st, log.fd, sync, framer, first, stop, writers=writers, offset0=overwrite_offset0, write=write,
                        **engine_options(st, sync_method, writers, path))
        tl.cpu_ns, wait1 = time.process_time_ns() - cpu0, cpu_wait_ns()
        d1 = process_cpu_ns(daemon)
        tl.cpu_wait_ns = wait1 - wait0 if wait0 is not None and wait1 is not None else None
        tl.daemon_cpu_ns = d1 - d0 if d0 is not None and d1 is not None else None
        verified, detail = None, ""
        if path.segment_bytes:
            path.rolls = list(log.rolls)
        if verify and path.segment_bytes:
            verified, detail = log.verify(tl.entries)
        elif verify and overwrite_offset0:
            # only the last entry survives, at offset 0
            scan = read_log(log.path, expect_first_seq=None)
            verified = scan.clean and scan.entries == 1 and scan.last_seq == tl.entries - 1
            detail = f"last entry (seq {scan.last_seq}) read back at offset 0, end: {scan.end} {scan.detail}".strip()
        elif verify:
            scan = read_log(log.path)
            verified = scan.clean and scan.entries == tl.entries
            detail = f"{scan.entries} of {tl.entries} entries read back, end: {scan.end} {scan.detail}".strip()
        if on_timeline is not None:
            on_timeline(tl)  # while the log still exists
    return tl, verified, detail


def fuse_daemon_pid(directory, tgt: Target) -> int | None:
    """The pid of the lab's FUSE daemon serving ``directory``, or None (not a lab FUSE target)."""
    if not str(tgt.fstype).startswith("fuse.fsyncstudy"):
        return None
    from .lab.control import daemon_pid
    return daemon_pid(directory)


_TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 1e7


def process_cpu_ns(pid: int | None) -> int | None:
    """Another process's CPU time so far (user + system, every thread; /proc/<pid>/stat, in clock
    ticks of 10 ms here), in ns; None without a pid or where it cannot be read."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int((int(fields[11]) + int(fields[12])) * _TICK_NS)
    except (OSError, ValueError, IndexError):
        return None


def cpu_wait_ns() -> int | None:
    """How long this process's threads have waited for a CPU while runnable (the run-queue delay of
    ``/proc/self/task/*/schedstat``), in ns; None where the kernel does not say.  Threads that ended
    are not counted (their delay goes with them)."""
    total = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue   # a thread that just ended
    return total


def cpu_fields(cpu_ns: int | None, entries: int, elapsed_ns: int, wait_ns: int | None = None,
               daemon_ns: int | None = None) -> dict:
    """cpu_s, cpu_us_per_entry, cpu_share, cpu_wait_share and bound for a run (empty values without a
    CPU time).  ``bound`` is "cpu" when the process was on a CPU, or ready and waiting for one
    (``wait_ns``: other processes had it), for at least CPU_BOUND_SHARE of the time: it was not
    waiting for storage, so on a busy machine too it measures the loop, not the device."""
    if cpu_ns is None or elapsed_ns <= 0:
        return {"cpu_s": None, "cpu_us_per_entry": None, "cpu_share": None, "cpu_wait_share": None,
                "daemon_cpu_share": None, "bound": ""}
    share = cpu_ns / elapsed_ns
    wait_share = wait_ns / elapsed_ns if wait_ns is not None else None
    daemon = daemon_ns / elapsed_ns if daemon_ns is not None else None
    return {"cpu_s": cpu_ns / 1e9, "cpu_us_per_entry": cpu_ns / 1e3 / entries if entries else None,
            "cpu_share": share, "cpu_wait_share": wait_share, "daemon_cpu_share": daemon,
            "bound": bound_of(share, wait_share, daemon)}


def bound_of(share: float, wait_share: float | None = None, daemon: float | None = None) -> str:
    """What a trial waited for, from its measured CPU shares (the one rule; ``sweep.load`` applies it to
    datasets measured under an earlier one): "cpu" when the writer's process was on a CPU or waiting for
    one at least CPU_BOUND_SHARE of the time; on a FUSE target, "fuse-daemon" when the writer and the
    daemon together were on a CPU that long (each write is a round trip the writer sleeps through while
    the Python daemon works: the chain is busy on CPU, storage is not what it waits for); else "storage"."""
    busy = share + (wait_share or 0.0)
    if busy >= CPU_BOUND_SHARE:
        return "cpu"
    if daemon is not None and daemon == daemon and busy + daemon >= CPU_BOUND_SHARE:
        return "fuse-daemon"
    return "storage"


def summarize(st: Strategy, tl: engine.Timeline, *, sync_method: str, prealloc: str, payload_bytes: int,
              writers: int, target: Target, prealloc_bytes: int = 0, verified: bool | None = None,
              verify_detail: str = "", started_at: str = "", notes: list[str] | None = None,
              overwrite_offset0: bool = False, path: WritePath | None = None) -> TrialResult:
    """Turn a raw timeline into a TrialResult."""
    n = tl.entries
    elapsed_ns = tl.end_ns - tl.start_ns
    ack_sorted = sorted(tl.latency)
    ack = measures.summary(ack_sorted, 1e3, presorted=True)
    syncs = len(tl.sync_ends)
    sync_sorted = sorted(e - s for s, e in zip(tl.sync_starts, tl.sync_ends))
    sync_lat = measures.summary(sync_sorted, 1e3, presorted=True)
    flush = {"mean": None, "p99": None}
    if st.kind == "batch":
        ticks = tl.sync_starts[:-1] if tl.final_sync else tl.sync_starts
        flush = measures.summary(measures.intervals(ticks), 1e6)
    exp = {"p50": None, "p99": None, "max": None, "mean": None}
    if syncs:
        exp = measures.summary(measures.exposures(tl.acks, tl.sync_ends, tl.sync_hi), 1e6)
    expire = interval = None
    if st.kind == "none":
        expire, interval = writeback_bounds()
    return TrialResult(
        strategy=st.name, kind=st.kind, interval_ms=st.interval_ms, sync_method=sync_method, prealloc=prealloc,
        payload_bytes=payload_bytes, record_bytes=tl.record_bytes, writers=writers, entries=n,
        elapsed_s=elapsed_ns / 1e9, ops_per_sec=n / (elapsed_ns / 1e9) if elapsed_ns > 0 else float(n) * 1e9,
        syncs=syncs, bytes_written=n * tl.record_bytes,
        ack_latency_us_p50=ack["p50"], ack_latency_us_p99=ack["p99"], ack_latency_us_max=ack["max"],
        ack_latency_us_mean=ack["mean"],
        sync_latency_us_p50=sync_lat["p50"], sync_latency_us_p99=sync_lat["p99"],
        sync_latency_us_max=sync_lat["max"], sync_latency_us_mean=sync_lat["mean"],
        flush_interval_ms_mean=flush["mean"], flush_interval_ms_p99=flush["p99"],
        exposure_ms_p50=exp["p50"], exposure_ms_p99=exp["p99"], exposure_ms_max=exp["max"],
        exposure_ms_mean=exp["mean"], synced=syncs > 0,
        nominal_loss_window_ms=st.nominal_loss_window_ms, durability=st.durability,
        data_loss_window=st.data_loss_window, writeback_expire_s=expire, writeback_interval_s=interval,
        target_path=target.path, target_fstype=target.fstype, target_durability=target.durability,
        target_reason=target.reason, prealloc_bytes=prealloc_bytes, overwrite_offset0=overwrite_offset0,
        verified=verified,
        verify_detail=verify_detail, started_at=started_at, warnings=list(notes or []),
        timed_entries=len(tl.latency),
        harness_ns_per_entry=None if path and path.write_mode == "buffered" else engine.harness_ns(st.kind),
        **cpu_fields(tl.cpu_ns, n, elapsed_ns, tl.cpu_wait_ns, tl.daemon_cpu_ns),
        ack_latency_hist=measures.encode_histogram(measures.histogram(ack_sorted, presorted=True)),
        sync_latency_hist=measures.encode_histogram(measures.histogram(sync_sorted, presorted=True)),
        ack_p99_is_max=0 < len(ack_sorted) < PERCENTILE_MIN_N, sync_p99_is_max=0 < len(sync_sorted) < PERCENTILE_MIN_N,
        **path_fields(tl, path or WritePath()),
    )


def path_fields(tl: engine.Timeline, path: WritePath) -> dict:
    """The write path's fields of a TrialResult: the options, the rolls (the ack latency of each roll's
    first entry: the engine's where it timed every entry, else the roll and its write as the segment log
    timed them, which for ``none`` is that entry's ack latency), and the buffered writes' exposure."""
    out = {"write_mode": path.write_mode, "bytes_per_sync": path.bytes_per_sync, "segment_bytes": path.segment_bytes,
           "recycle": path.recycle, "roll_count": len(path.rolls)}
    if path.rolls:
        every = len(tl.latency) == tl.entries
        lat = sorted(tl.latency[seq] if every else ns for seq, ns in path.rolls if seq < tl.entries)
        roll = measures.summary(lat, 1e3, presorted=True)
        out.update(roll_ack_us_p50=roll["p50"], roll_ack_us_max=roll["max"])
    if len(tl.write_ends):
        exp = measures.summary(measures.exposures(tl.acks, tl.write_ends, tl.write_hi), 1e6)
        out.update(process_exposure_ms_p99=exp["p99"], process_exposure_ms_max=exp["max"])
    return out


def run_rounds(strategies: list[Strategy], entries: int, directory, budget_s: float = ROUND_BUDGET_S,
               max_rounds: int = MAX_ROUNDS, deadline: float | None = None,
               **options) -> tuple[list[list[TrialResult]], int, float]:
    """One trial per strategy in alternating rounds (forward, then backward, ...), while another
    round is expected to fit ``budget_s`` and at most ``max_rounds``; at least one round.

    Returns the trials per strategy (in the order given), the rounds run and the seconds spent.
    The protocol node answers with this; ``median_trial`` picks each strategy's result.
    ``deadline`` (``time.monotonic()`` seconds): every trial is given it (``run_trial``); a round is
    not started unless the last one's time fits before it, and a round it cuts short is dropped: the
    rounds that finished are returned, or, when the first did not, ``DeadlinePassed`` is raised.
    """
    target = describe(directory)
    for st in strategies:
        engine.harness_ns(st.kind)   # its calibration (up to 0.2 s, once a process) not in the first round's time
    trials: list[list[TrialResult]] = [[] for _ in strategies]
    order = list(range(len(strategies)))
    start = time.monotonic()
    rounds = 0
    while True:
        t0 = time.monotonic()
        try:
            for k in (order if rounds % 2 == 0 else order[::-1]):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the target's verdict goes into every result
                    trials[k].append(run_trial(strategies[k], entries=entries, directory=directory, target=target,
                                               deadline=deadline, **options))
        except DeadlinePassed:
            if not rounds:
                raise
            for ts in trials:
                del ts[rounds:]
            return trials, rounds, time.monotonic() - start
        rounds += 1
        now = time.monotonic()
        spent, last = now - start, now - t0
        if rounds >= max_rounds or spent + last > budget_s or (deadline is not None and now + last > deadline):
            return trials, rounds, time.monotonic() - start


def median_trial(trials: list[TrialResult]) -> TrialResult:
    """The trial with the median ops/sec; with an even number of trials, the slower of the middle two
    (the lower median: a real trial, never an average of two)."""
    ranked = sorted(trials, key=lambda r: r.ops_per_sec)
    return ranked[(len(ranked) - 1) // 2]


#: What one write() of a small record costs at the least, for estimates (measured ~1 us here).
MIN_WRITE_S = 0.5e-6


def probe_sync_s(directory, n: int = 8) -> float:
    """The median time of one small write + fdatasync in ``directory``: what the node's estimates use."""
    with LogFile(directory, "fdatasync", "append", 0) as log:
        times = []
        rec = Framer(payload_for(DEFAULT_PAYLOAD_BYTES)).frame(0)
        for _ in range(n):
            t = time.perf_counter()
            os.write(log.fd, rec)
            os.fdatasync(log.fd)
            times.append(time.perf_counter() - t)
    return sorted(times)[n // 2]


def estimate_s(strategies: list[Strategy], entries: int, writers: int, sync_s: float) -> float:
    """About how long one round of ``run_rounds`` takes at the least: a sync per entry for ``always``
    (``writers`` of them at once at the most), one per ``writers`` entries for group commit, each after its N ms wait, a write per entry for all."""
    total = 0.0
    for st in strategies:
        total += entries * MIN_WRITE_S
        if st.kind == "always":
            total += -(-entries // writers) * sync_s   # W writers' syncs may overlap: at the least this
        elif st.kind == "group":
            total += -(-entries // writers) * (st.interval_ms / 1000 + sync_s)
        elif st.kind == "batch":
            total += sync_s
    return total
