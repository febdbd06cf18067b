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
arrivals, in leader/follower group commit.  Arrivals fall within the trial's duration; the writer
then has ``DRAIN`` more (a tenth of the duration, at least 50 ms) to finish the queue.  Entries still
queued after that are counted (``unserved``), their wait so far joins the latencies as a lower
bound, and the trial is marked saturated; so is one whose achieved rate (acknowledgements within
the duration) falls below 97% of the offered rate.  Waits sleep until ``SPIN_S`` before the arrival, then
spin yielding the interpreter lock; the CPU the spinning costs is not counted as the strategy's.

Standard library only, except the latency histogram: ``hdrhistogram``, imported when a result is
summarized.
"""
from __future__ import annotations

import math
import os
import random
import resource
import threading
import time
from array import array
from dataclasses import asdict, dataclass, field

from . import engine, measures
from .log import Framer, LogFile
from .strategies import Strategy, parse
from .trial import DEFAULT_PAYLOAD_BYTES, MAX_ENTRIES, payload_for

ARRIVALS = ("constant", "poisson")
#: Before an intended arrival the writer sleeps until this close (a sleep overshoots by tens of us),
#: then spins on os.sched_yield(), which lets go of the interpreter lock on every turn (0.55 us a
#: call here).  Measured on this machine: a plain busy spin held the lock so long that batch_10ms's
#: exposure reached 57-176 ms at 20,000 entries/s; time.sleep(0) costs 16-70 us a call, which made the
#: generator that late; sched_yield keeps it at about 1.4 us (p50) and the exposure at 10 ms.
SPIN_S = 150e-6
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


def _wait_until(t_ns: int, clk=time.perf_counter_ns, sleep=time.sleep, cpu=time.thread_time_ns,
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


def _burn(us: float) -> None:
    """Spend ``us`` microseconds of CPU in this thread (an application's work between entries)."""
    if us > 0:
        end = time.perf_counter_ns() + int(us * 1000)
        while time.perf_counter_ns() < end:
            pass


def _serve_one_writer(st: Strategy, fd: int, sync, framer: Framer, due: array, deadline_ns: int, tl: OpenTimeline,
                      work_us: float) -> None:
    """always / batch / none: one writer, entries in arrival order."""
    clk, w, rl = time.perf_counter_ns, os.write, framer.record_bytes
    flusher = None
    if st.kind == "batch":
        flusher = engine._Flusher(fd, sync, st.interval_ms * 1_000_000, tl)
        flusher.start()
    step = engine.chunk_records(framer)
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
                tl.spin_cpu_ns += _wait_until(d)
                s = clk()
                la(s - d)
            else:
                s = clk()
            k = w(fd, block[i - base])
            if k != rl:
                raise engine._short_write(k, rl)
            if st.kind == "always":
                ss = clk()
                if sync is not None:
                    try:
                        sync(fd)
                    except OSError as e:
                        raise engine._wrap_sync_error(e) from e
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
        if flusher.error is not None:
            raise flusher.error
        n = len(tl.acks)
        if flusher.synced < n:   # the final covering sync, as in the closed loop
            s = clk()
            try:
                sync(fd)
            except OSError as e:
                raise engine._wrap_sync_error(e) from e
            tl.sync_starts.append(s); tl.sync_ends.append(clk()); tl.sync_hi.append(n)


class _OpenGroup(engine._GroupCommit):
    """Group commit's leader/follower protocol, each writer taking entries at its own arrivals."""

    def open_writer(self, due: array, deadline_ns: int, out: list, work_us: float) -> None:
        mine = (array("q"), array("q"), array("q"), array("q"), array("q"), array("q"))  # seq, intended, started,
        out.append(mine)                                                                   # ack, late, spin cpu
        seqs, ints, sts, acks, lates, spin = mine
        clk, w, rl, cond = time.perf_counter_ns, self.write, self.framer.record_bytes, self.cond
        for d in due:
            if clk() >= deadline_ns or self.error is not None:
                return
            if clk() < d:
                spin.append(_wait_until(d))
                s = clk()
                lates.append(s - d)
            else:
                s = clk()
            with cond:
                try:
                    if self.error is not None:
                        return
                    seq = self.next_seq
                    k = w(self.fd, self._record(seq))
                    if k != rl:
                        raise engine._short_write(k, rl)
                    self.next_seq = seq + 1
                    while self.synced <= seq:
                        if self.error is not None:
                            return
                        if self.leading:
                            cond.wait()
                            continue
                        self._lead()
                    a = clk()
                except BaseException as e:
                    if self.error is None:
                        self.error = e
                    cond.notify_all()
                    return
            seqs.append(seq); ints.append(d); sts.append(s); acks.append(a)
            _burn(work_us)


def _serve_group(st: Strategy, fd: int, sync, framer: Framer, due: array, clients: int, deadline_ns: int,
                 tl: OpenTimeline, work_us: float) -> None:
    gc = _OpenGroup(fd, sync, st.interval_ms / 1000, framer, framer.frame_range(0, engine.chunk_records(framer)),
                    engine.Stop(), tl)
    outs: list = []
    # arrivals dealt round robin: each client offers rate / clients
    threads = [threading.Thread(target=gc.open_writer, args=(due[k::clients], deadline_ns, outs, work_us),
                                name=f"fsyncstudy-writer-{k}", daemon=True) for k in range(clients)]
    engine.run_threads(threads, gc.stop_writers)
    if gc.error is not None:
        raise gc.error
    rows = sorted((s, d, b, a) for o in outs for s, d, b, a in zip(o[0], o[1], o[2], o[3]))
    for _, d, b, a in rows:
        tl.intended.append(d); tl.started.append(b); tl.acks.append(a)
    for o in outs:
        tl.lateness.extend(o[4])
        tl.spin_cpu_ns += sum(o[5])


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
                   target=None, on_timeline=None) -> LoadResult:
    """Offer ``rate`` entries a second for ``duration_s`` to ``strategy`` on a fresh log in
    ``directory``; time each entry from its intended arrival.  ``clients`` > 1 only for group commit.
    ``on_timeline(OpenTimeline)`` sees the raw timings (every entry's arrival, start and ack)."""
    from hdrh.histogram import HdrHistogram

    from .places import pick_directory, resolve_directory
    from .targets import describe

    st = strategy if isinstance(strategy, Strategy) else parse(strategy)
    if not isinstance(clients, int) or isinstance(clients, bool) or not 1 <= clients <= 64:
        raise ValueError(f"clients must be an integer in 1..64, got {clients!r}")
    if clients > 1 and st.kind != "group":
        raise ValueError(f"{st.name}: several clients share one log only under group commit (group_<N>ms)")
    if not (isinstance(duration_s, (int, float)) and 0 < duration_s <= 3600):
        raise ValueError(f"duration_s must be in (0, 3600], got {duration_s!r}")
    if not (isinstance(work_us, (int, float)) and 0 <= work_us <= 1e6):
        raise ValueError(f"work_us must be in 0..1,000,000, got {work_us!r}")
    due_rel = schedule(rate, duration_s, arrivals, seed)
    directory = os.fspath(resolve_directory(directory if directory is not None else pick_directory()))
    tgt = target or describe(directory)
    framer = Framer(payload_for(payload_bytes))
    tl = OpenTimeline()
    with LogFile(directory, sync_method, "append", 0) as log:
        sync = log.sync_function()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter_ns() + 2_000_000      # 2 ms of grace before the first arrival
        due = array("q", (t0 + d for d in due_rel))
        end = t0 + int(duration_s * 1e9)
        deadline = end + int(max(DRAIN * duration_s, DRAIN_MIN_S) * 1e9)
        tl.start_ns = t0
        _wait_until(t0)
        if st.kind == "group":
            _serve_group(st, log.fd, sync, framer, due, clients, deadline, tl, work_us)
        else:
            _serve_one_writer(st, log.fd, sync, framer, due, deadline, tl, work_us)
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
        latency_hist=hist.encode().decode())


def pooled(encoded: list[str]):
    """One HdrHistogram of the latencies of several trials (their ``latency_hist`` columns): the
    percentiles of all their entries together, not an average of percentiles."""
    from hdrh.histogram import HdrHistogram
    total = HdrHistogram(1, HIST_MAX_US, 3)
    for e in encoded:
        if e:
            total.add(HdrHistogram.decode(e.encode() if isinstance(e, str) else e))
    return total
