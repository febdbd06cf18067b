"""The workload: client processes committing single rows in a closed or an open loop, and what
reached storage per commit."""
from __future__ import annotations

import array
import os
import select
import signal
import struct
import time
from dataclasses import dataclass

from .. import measures
from .settings import DatabaseError, MAX_CLIENTS, MAX_DURATION_S, PAYLOAD_BYTES, READY_TIMEOUT_S, Setting
from .servers import device_counters, open_database, proc_counters


_GO = struct.Struct("<qq")     # start, deadline (CLOCK_MONOTONIC ns)


def _client_proc(conn_w: int, go_r: int, factory, payload: bytes, due=None) -> None:  # pragma: no cover - a child
    """One client process: connect, say ready, wait for the start, commit until the deadline, report.

    ``due`` None: a closed loop (the next commit when the last returned; latency = the call).  Else
    the intended arrival times (ns from the start) of an open loop: each commit is issued at its
    arrival or, if the client is still busy, as soon as it is free, and its latency is timed from its
    arrival; arrivals stop at the deadline, and what is still unserved DRAIN later is counted."""
    import pickle

    from ..engine import wait_until
    from ..load import DRAIN, DRAIN_MIN_S
    try:
        c = factory()
        os.write(conn_w, b"R")
        buf = b""
        while len(buf) < _GO.size:
            chunk = os.read(go_r, _GO.size - len(buf))
            if not chunk:
                os._exit(0)
            buf += chunk
        start, deadline = _GO.unpack(buf)
        while time.monotonic_ns() < start:
            pass
        lat = array.array("d")
        cpu0 = time.process_time()
        spin_ns = 0
        n, now, unserved, in_time = 0, time.monotonic_ns(), 0, 0
        if due is None:
            while now < deadline:
                c.commit(payload)
                t = time.monotonic_ns()
                lat.append((t - now) / 1e3)
                now = t
                n += 1
            in_time = n
        else:
            stop = deadline + int(max(DRAIN * (deadline - start), DRAIN_MIN_S * 1e9))
            for k, d in enumerate(due):
                at = start + d
                if time.monotonic_ns() > stop:
                    unserved = len(due) - k    # still queued: their wait so far is a lower bound
                    lat.extend((now - (start + x)) / 1e3 for x in due[k:])
                    break
                if at > time.monotonic_ns():
                    spin_ns += wait_until(at, clk=time.monotonic_ns)
                c.commit(payload)
                now = time.monotonic_ns()
                lat.append((now - at) / 1e3)
                n += 1
                in_time += now <= deadline
        cpu = time.process_time() - cpu0 - spin_ns / 1e9
        blob = pickle.dumps({"n": n, "end": now, "lat": lat.tobytes(), "cpu_s": cpu, "unserved": unserved,
                             "in_time": in_time, "scheduled": len(due) if due is not None else n})
    except BaseException as e:
        c = None
        blob = pickle.dumps({"error": f"{type(e).__name__}: {str(e)[:500]}"})
    os.write(conn_w, b"D" + struct.pack("<q", len(blob)))
    view = memoryview(blob)
    while view:
        view = view[os.write(conn_w, view):]
    # keep the connection (and the server's process serving it) until the parent has read the
    # server's counters: it closes the pipe when it has
    while os.read(go_r, 64):
        pass
    if c is not None:
        c.close()
    os._exit(0)


def _read_exact(fd: int, n: int, deadline: float) -> bytes:
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise DatabaseError("a client did not answer in time")
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise DatabaseError("a client died without a word")
        buf += chunk
    return buf


@dataclass
class Workload:
    """What a run of ``clients`` clients measured (closed loop, or open at a rate)."""

    commits: int
    elapsed_s: float
    commits_per_sec: float
    latency_us_p50: float | None
    latency_us_p99: float | None
    latency_us_max: float | None
    latency_hist: str           # commit latencies in ns, ``measures.histogram``
    client_cpu_us_per_commit: float | None
    server_cpu_us_per_commit: float | None
    server_write_calls_per_commit: float | None
    server_write_bytes_per_commit: float | None
    device_flushes_per_commit: float | None
    device_bytes_per_commit: float | None
    #: Open loop only (None in a closed loop): commits offered and achieved a second, commits still
    #: queued when the drain ran out, and whether it kept up (achieved >= 97% of offered, none left).
    offered_rate: float | None = None
    achieved_rate: float | None = None
    unserved: int | None = None
    saturated: bool | None = None


def run_workload(factory, clients: int, duration_s: float, payload_bytes: int = PAYLOAD_BYTES,
                 server_pids=lambda: [], block_device: str | None = None, rate: float | None = None,
                 arrivals: str = "poisson", seed: int = 0) -> Workload:
    """Run ``clients`` client processes (each ``factory()`` is one connection) of single-row commits
    for ``duration_s`` after all are connected, and count what it cost: a closed loop, or with
    ``rate`` an open one (each client offered rate / clients commits a second, ``arrivals`` constant
    or Poisson from ``seed``; latency from each commit's intended arrival, as ``fsyncstudy.load``)."""
    from ..load import schedule
    import pickle
    if not isinstance(duration_s, (int, float)) or isinstance(duration_s, bool) or not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration must be a number of seconds in (0, {MAX_DURATION_S:g}], got {duration_s!r}")
    if not isinstance(clients, int) or isinstance(clients, bool) or not 1 <= clients <= MAX_CLIENTS:
        raise ValueError(f"clients must be an integer in 1..{MAX_CLIENTS}, got {clients!r}")
    if not isinstance(payload_bytes, int) or not 0 <= payload_bytes <= 1 << 20:
        raise ValueError(f"payload_bytes must be an integer in 0..1 MiB, got {payload_bytes!r}")
    payload = (bytes(range(256)) * (payload_bytes // 256 + 1))[:payload_bytes]
    dues = [None] * clients
    if rate is not None:
        dues = [schedule(rate / clients, duration_s, arrivals, seed=seed * 1000 + k) for k in range(clients)]
    kids = []
    try:
        for due in dues:
            r, w = os.pipe()
            gr, gw = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child: it never returns into the parent's frames (their
                try:          # cleanup is the parent's: a child unwinding there would stop the server)
                    os.close(r)
                    os.close(gw)
                    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides when to stop
                    _client_proc(w, gr, factory, payload, due)
                finally:
                    os._exit(1)
            os.close(w)
            os.close(gr)
            kids.append((pid, r, gw))
        deadline = time.monotonic() + READY_TIMEOUT_S
        for pid, r, _ in kids:
            tag = _read_exact(r, 1, deadline)
            if tag != b"R":  # it failed before it was ready: its report follows
                size = struct.unpack("<q", _read_exact(r, 8, deadline))[0]
                raise DatabaseError(f"a client could not start: {pickle.loads(_read_exact(r, size, deadline))}")
        dev0, srv0 = device_counters(block_device), proc_counters(server_pids())
        start = time.monotonic_ns() + 20_000_000
        end = start + int(duration_s * 1e9)
        for _, _, gw in kids:
            os.write(gw, _GO.pack(start, end))
        results = []
        deadline = time.monotonic() + duration_s + 60
        for _, r, _ in kids:
            if _read_exact(r, 1, deadline) != b"D":
                raise DatabaseError("a client broke the protocol")
            size = struct.unpack("<q", _read_exact(r, 8, deadline))[0]
            results.append(pickle.loads(_read_exact(r, size, deadline)))
        dev1, srv1 = device_counters(block_device), proc_counters(server_pids())
    finally:
        for pid, r, gw in kids:   # the end of the pipe tells each client to close its connection and go
            for fd in (r, gw):
                try:
                    os.close(fd)
                except OSError:
                    pass
        give_up = time.monotonic() + 5
        for pid, _, _ in kids:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > give_up:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.002)
    errors = [x["error"] for x in results if "error" in x]
    if errors:
        raise DatabaseError(f"a client failed: {errors[0]}")
    n = sum(x["n"] for x in results)
    elapsed = (max(x["end"] for x in results) - start) / 1e9
    lat = array.array("d")
    for x in results:
        lat.frombytes(x["lat"])
    s = sorted(lat)
    per = (lambda v: v / n) if n else (lambda v: None)
    dev = {k: (dev1[k] - dev0[k]) if dev0 and dev1 and dev0[k] is not None else None
           for k in ("flushes", "write_bytes")}
    return Workload(
        commits=n, elapsed_s=elapsed, commits_per_sec=n / elapsed if elapsed > 0 else 0.0,
        latency_us_p50=measures.percentile(s, 50) if s else None,
        latency_us_p99=measures.percentile(s, 99) if len(s) >= 100 else None,
        latency_us_max=s[-1] if s else None,
        latency_hist=measures.encode_histogram(measures.histogram([v * 1e3 for v in s], presorted=True)),  # ns
        client_cpu_us_per_commit=per(sum(x["cpu_s"] for x in results) * 1e6),
        server_cpu_us_per_commit=per((srv1["cpu_s"] - srv0["cpu_s"]) * 1e6) if server_pids() else None,
        server_write_calls_per_commit=per(srv1["write_calls"] - srv0["write_calls"]) if server_pids() else None,
        server_write_bytes_per_commit=per(srv1["write_bytes"] - srv0["write_bytes"]) if server_pids() else None,
        device_flushes_per_commit=per(dev["flushes"]) if dev["flushes"] is not None else None,
        device_bytes_per_commit=per(dev["write_bytes"]) if dev["write_bytes"] is not None else None,
        **({} if rate is None else _open_loop(results, rate, duration_s)))


def _open_loop(results: list[dict], rate: float, duration_s: float) -> dict:
    scheduled = sum(x["scheduled"] for x in results)
    achieved = sum(x["in_time"] for x in results) / duration_s
    unserved = sum(x["unserved"] for x in results)
    return {"offered_rate": scheduled / duration_s, "achieved_rate": achieved, "unserved": unserved,
            "saturated": unserved > 0 or achieved < 0.97 * scheduled / duration_s}


def measure(setting: Setting, directory, duration_s: float = 0.5, clients: int | None = None,
            payload_bytes: int = PAYLOAD_BYTES, block_device: str | None = None, rate: float | None = None,
            seed: int = 0) -> tuple[Workload, str]:
    """Start ``setting``'s database on ``directory``, run the workload (closed loop, or open at
    ``rate`` commits a second), stop it; (result, version)."""
    with open_database(directory, setting) as db:
        w = run_workload(db.client, clients or setting.clients, duration_s, payload_bytes,
                         server_pids=db.pids, block_device=block_device, rate=rate, seed=seed)
        return w, db.version()
