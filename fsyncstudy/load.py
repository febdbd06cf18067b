"""Open-loop load: entries arrive at a given rate, whether or not the writer is ready for them.

The closed-loop trial (``fsyncstudy.trial``) writes the next entry when the last one is
acknowledged, so a slow sync delays the entries that would have arrived during it and hides
their wait (coordinated omission).  Here every entry has an *intended* arrival time, fixed in
advance (constant spacing, or Poisson with a seeded generator); an entry that arrives while the
writer is busy waits in the queue, and its latency is timed from its intended arrival:

    latency   = acknowledged - intended arrival    (what a client sees)
    service   = acknowledged - write started       (what the closed loop measures)
    lateness  = write started - intended arrival, for entries the writer was idle for
                (the harness's own error: how late it woke)

One writer serves ``always``, ``batch_<N>ms`` and ``none`` in arrival order (a FIFO queue, as a log
with one appender); ``group_<N>ms`` runs ``clients`` writers sharing the rate, each with its own
arrivals, in leader/follower group commit, and ``always`` with ``clients`` > 1 the same writers each
syncing its own entries (group commit's baseline at the same clients).  Arrivals fall within the trial's duration; the writer
then has ``DRAIN`` more (a tenth of the duration, at least 50 ms) to finish the queue.  Entries still
queued after that are counted (``unserved``), their wait so far joins the latencies as a lower
bound, and the trial is marked saturated; so is one whose achieved rate (acknowledgements within
the duration) falls below 97% of the offered rate.  The writer loops are the engine's
(``engine.run_open``, beside the closed loops): waits sleep until ``engine.SPIN_S`` before the arrival,
then spin yielding the interpreter lock; the CPU the spinning costs is not counted as the strategy's.

Standard library only, except the latency histogram: ``hdrhistogram``, imported when a result is
summarized.
"""
from __future__ import annotations

import math
import os
import random
import resource
import time
from array import array
from dataclasses import asdict, dataclass

from . import engine, measures
from . import writepaths
from .log import Framer
from .strategies import Strategy, check_sync_method, parse
from .trial import (DEFAULT_PAYLOAD_BYTES, MAX_ENTRIES, WritePath, check_write_path, engine_options, open_log,
                    payload_for, write_function)

ARRIVALS = ("constant", "poisson")
#: After the last arrival, the queue may drain for this share of the duration (at least DRAIN_MIN_S).
DRAIN = 0.1
DRAIN_MIN_S = 0.05
#: The latency histogram: 1 us .. 10 min, 3 significant digits.
HIST_MAX_US = 600_000_000
PERCENTILES = (50, 90, 99, 99.9)


def schedule(rate: float, duration_s: float, kind: str = "constant", seed: int = 0) -> array:
    """Intended arrival times in ns from the trial's start, for ``duration_s`` at ``rate`` a second."""
    if kind not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {', '.join(ARRIVALS)}, got {kind!r}")
    if not (isinstance(rate, (int, float)) and 0 < rate <= 1e6 and math.isfinite(rate)):
        raise ValueError(f"rate must be a number of entries per second in (0, 1,000,000], got {rate!r}")
    n = int(rate * duration_s)
    if n < 1 or n > MAX_ENTRIES:
        raise ValueError(f"rate x duration must give 1..{MAX_ENTRIES:,} entries, got {n:,}")
    if kind == "constant":
        step = 1e9 / rate
        return array("q", (int(i * step) for i in range(n)))
    # Poisson: exponential gaps, every arrival that falls inside the duration (their number varies)
    rng, t, out, end = random.Random(seed), 0.0, array("q"), duration_s * 1e9
    while len(out) < MAX_ENTRIES:
        t += rng.expovariate(rate) * 1e9
        if t >= end:
            break
        out.append(int(t))
    return out


@dataclass
class LoadResult:
    """One open-loop trial.  Times: ``_us`` microseconds, ``_ms`` milliseconds, ``_s`` seconds."""

    strategy: str
    kind: str
    interval_ms: int | None
    arrivals: str
    clients: int
    work_us: float
    offered_rate: float
    achieved_rate: float
    duration_s: float
    scheduled: int
    served: int
    unserved: int                      # still queued when the drain time ran out
    saturated: bool                    # achieved < 97% of offered, or entries left queued
    latency_us_p50: float | None       # from intended arrival; lower bounds when saturated
    latency_us_p90: float | None
    latency_us_p99: float | None
    latency_us_p999: float | None
    latency_us_max: float | None
    service_us_p50: float | None       # write started -> acknowledged
    service_us_p99: float | None
    service_us_max: float | None
    exposure_ms_p50: float | None      # ack -> covering sync returned (batch)
    exposure_ms_p99: float | None
    exposure_ms_max: float | None
    lateness_us_p50: float | None      # the generator's own error
    lateness_us_p99: float | None
    lateness_us_max: float | None
    cpu_us_per_entry: float | None     # the process's CPU (all threads) less the waits' spinning
    syncs: int
    target_path: str
    target_fstype: str
    target_durability: str
    latency_hist: str                  # HdrHistogram of latency from arrival (us), base64
    # the write path (``run_trial``'s options of the same names; docs/strategies.md#write-paths); a dataset
    # written before these columns measured the plain path (their defaults)
    sync_method: str = "fdatasync"
    write_mode: str = "per-entry"
    bytes_per_sync: int = 0
    segment_bytes: int = 0
    recycle: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _pcts(values_ns, unit: float) -> dict:
    s = sorted(values_ns)
    if not s:
        return {p: None for p in (*PERCENTILES, 100)}
    return {p: measures.percentile(s, p) / unit for p in (*PERCENTILES, 100)}


def run_load_trial(strategy: str | Strategy, rate: float, duration_s: float = 1.0, directory=None,
                   arrivals: str = "constant", clients: int = 1, seed: int = 0, work_us: float = 0.0,
                   sync_method: str = "fdatasync", payload_bytes: int = DEFAULT_PAYLOAD_BYTES,
                   target=None, on_timeline=None, write_mode: str = "per-entry", bytes_per_sync: int = 0,
                   segment_bytes: int = 0, recycle: int = 0) -> LoadResult:
    """Offer ``rate`` entries a second for ``duration_s`` to ``strategy`` on a fresh log in
    ``directory``; time each entry from its intended arrival.  ``clients`` > 1 only for group commit.
    ``on_timeline(OpenTimeline)`` sees the raw timings (every entry's arrival, start and ack).
    The write path as ``run_trial``'s (``sync_method`` rwf_dsync or direct_dsync, ``write_mode``
    buffered, ``bytes_per_sync``, ``segment_bytes``, ``recycle``), each acknowledged where it is: a write
    that syncs itself when it returns (always) or when the group's commit write does; a buffered entry
    when it is appended."""
    from hdrh.histogram import HdrHistogram

    from .places import pick_directory, resolve_directory
    from .targets import describe

    st = strategy if isinstance(strategy, Strategy) else parse(strategy)
    if not isinstance(clients, int) or isinstance(clients, bool) or not 1 <= clients <= 64:
        raise ValueError(f"clients must be an integer in 1..64, got {clients!r}")
    if clients > 1 and not st.acks_durable:
        raise ValueError(f"{st.name}: several clients share one log only under group commit (group_<N>ms) and "
                         "always (each client syncing its own entries)")
    if clients > 1 and sync_method.startswith("open_"):
        raise ValueError(f"{sync_method} with several clients: use fdatasync or fsync")
    check_sync_method(sync_method)
    check_write_path(st, sync_method, clients, write_mode, bytes_per_sync, segment_bytes, recycle)
    if write_mode == "buffered" and clients > 1:
        raise ValueError("buffered writes go with one client")
    if not (isinstance(duration_s, (int, float)) and 0 < duration_s <= 3600):
        raise ValueError(f"duration_s must be in (0, 3600], got {duration_s!r}")
    if not (isinstance(work_us, (int, float)) and 0 <= work_us <= 1e6):
        raise ValueError(f"work_us must be in 0..1,000,000, got {work_us!r}")
    due_rel = schedule(rate, duration_s, arrivals, seed)
    directory = os.fspath(resolve_directory(directory if directory is not None else pick_directory()))
    tgt = target or describe(directory)
    framer = Framer(payload_for(payload_bytes))
    if segment_bytes and segment_bytes < max(writepaths.MIN_SEGMENT_BYTES, framer.record_bytes):
        raise ValueError(f"segment_bytes must be at least {max(writepaths.MIN_SEGMENT_BYTES, framer.record_bytes):,}, "
                         f"got {segment_bytes:,}")
    path = WritePath(write_mode, bytes_per_sync, segment_bytes, recycle)
    with open_log(directory, sync_method, "append", 0, False, None, path) as log:
        sync = log.sync_function(own_writes=True)
        write = write_function(log, sync_method, framer, path)
        opts = engine_options(st, sync_method, clients, path)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter_ns() + 2_000_000      # 2 ms of grace before the first arrival
        due = array("q", (t0 + d for d in due_rel))
        end = t0 + int(duration_s * 1e9)
        deadline = end + int(max(DRAIN * duration_s, DRAIN_MIN_S) * 1e9)
        tl = engine.run_open(st, log.fd, sync, framer, t0, due, deadline, clients, work_us, write=write, **opts)
        tl.end_ns = max(deadline, tl.sync_ends[-1] if len(tl.sync_ends) else 0, tl.acks[-1] if len(tl.acks) else 0)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    if on_timeline is not None:
        on_timeline(tl)
    served = len(tl.acks)
    unserved = len(due) - served
    hist = HdrHistogram(1, HIST_MAX_US, 3)
    lat = [a - d for a, d in zip(tl.acks, tl.intended)]
    for v in lat:
        hist.record_value(max(1, min(HIST_MAX_US, v // 1000)))
    # entries still queued at the end waited at least this long: their latencies are lower bounds
    served_arrivals = set(tl.intended)
    waited = [deadline - d for d in due if d not in served_arrivals]
    for v in waited:
        hist.record_value(max(1, min(HIST_MAX_US, v // 1000)))
    lp = {p: (hist.get_value_at_percentile(p) if hist.get_total_count() else None) for p in PERCENTILES}
    sp = _pcts([a - s for a, s in zip(tl.acks, tl.started)], 1e3)
    lt = _pcts(tl.lateness, 1e3)
    exp = {"p50": None, "p99": None, "max": None}
    if st.kind == "batch" and len(tl.sync_ends):
        exp = measures.summary(measures.exposures(tl.acks, tl.sync_ends, tl.sync_hi), 1e6)
    achieved = sum(1 for a in tl.acks if a <= end) / duration_s
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) * 1e6 - tl.spin_cpu_ns / 1e3
    return LoadResult(
        strategy=st.name, kind=st.kind, interval_ms=st.interval_ms, arrivals=arrivals, clients=clients, work_us=work_us,
        offered_rate=len(due) / duration_s, achieved_rate=achieved, duration_s=duration_s, scheduled=len(due),
        served=served, unserved=unserved, saturated=unserved > 0 or achieved < 0.97 * len(due) / duration_s,
        latency_us_p50=lp[50], latency_us_p90=lp[90], latency_us_p99=lp[99], latency_us_p999=lp[99.9],
        latency_us_max=hist.get_max_value() if hist.get_total_count() else None,
        service_us_p50=sp[50], service_us_p99=sp[99], service_us_max=sp[100],
        exposure_ms_p50=exp["p50"], exposure_ms_p99=exp["p99"], exposure_ms_max=exp["max"],
        lateness_us_p50=lt[50], lateness_us_p99=lt[99], lateness_us_max=lt[100],
        cpu_us_per_entry=cpu / served if served else None, syncs=len(tl.sync_ends),
        target_path=tgt.path, target_fstype=tgt.fstype, target_durability=tgt.durability,
        latency_hist=hist.encode().decode(), sync_method=sync_method, write_mode=write_mode,
        bytes_per_sync=bytes_per_sync, segment_bytes=segment_bytes, recycle=recycle)


def pooled(encoded: list[str]):
    """One HdrHistogram of the latencies of several trials (their ``latency_hist`` columns): the
    percentiles of all their entries together, not an average of percentiles."""
    from hdrh.histogram import HdrHistogram
    total = HdrHistogram(1, HIST_MAX_US, 3)
    for e in encoded:
        if e:
            total.add(HdrHistogram.decode(e.encode() if isinstance(e, str) else e))
    return total
