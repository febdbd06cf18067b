"""The etcd preset: etcd's fio disk check run by our engine, with fio-shaped JSON.

etcd's hardware guide points at ``fio --rw=write --ioengine=sync --fdatasync=1 --size=22m
--bs=2300`` and a p99 fdatasync under 10 ms.  ``bench --preset etcd`` runs that workload with
``always``/``fdatasync`` and prints the p99 against 10 ms, or with ``--json`` a document shaped
like fio's (``jobs[0].sync.lat_ns.percentile``) so existing checks read it unchanged (the
command itself is in ``fsyncstudy.cli``).
"""
from __future__ import annotations

import statistics

from . import __version__
from .log import HEADER
from .measures import percentile
from .peertools import FIO_PERCENTILES
from .trial import run_trial

ETCD_BLOCK_BYTES = 2300
ETCD_SIZE_BYTES = 22 << 20
ETCD_P99_LIMIT_MS = 10.0


def fio_percentiles(sorted_ns, percentiles=FIO_PERCENTILES) -> dict[str, int]:
    """fio's ``percentile`` block ({"99.000000": ns}) from sorted nanosecond values, nearest rank."""
    if not len(sorted_ns):
        return {}
    return {f"{p:.6f}": int(percentile(sorted_ns, p)) for p in percentiles}


def _lat_block(ns: list[int]) -> dict:
    s = sorted(ns)
    if not s:
        return {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0}
    return {"min": s[0], "max": s[-1], "mean": statistics.fmean(s),
            "stddev": statistics.stdev(s) if len(s) > 1 else 0.0, "N": len(s), "percentile": fio_percentiles(s)}


def etcd_fio_json(result, timeline) -> dict:
    """fio-shaped JSON for the etcd preset: ``jobs[0].sync.lat_ns.percentile`` as etcd checks read it.

    ``write.clat_ns`` is each write() alone, ``sync.lat_ns`` each fdatasync, as fio times them;
    fio-only fields we do not measure are left out; our full result sits under ``fsyncstudy``.
    """
    sync_ns = [e - s for s, e in zip(timeline.sync_starts, timeline.sync_ends)]
    # always: latency = ack - write start, the sync started right after the write returned
    write_ns = [s - (a - lat) for s, a, lat in zip(timeline.sync_starts, timeline.acks, timeline.latency)]
    runtime_ms = (timeline.end_ns - timeline.start_ns) / 1e6
    p99_ms = result.sync_latency_us_p99 / 1e3 if result.sync_latency_us_p99 is not None else None
    return {
        "fio version": None,
        "fsyncstudy version": __version__,
        "jobs": [{
            "jobname": "etcd", "groupid": 0, "error": 0,
            "job options": {"rw": "write", "ioengine": "sync", "fdatasync": "1", "bs": str(result.record_bytes),
                            "size": str(result.bytes_written)},
            "write": {"io_bytes": result.bytes_written, "io_kbytes": result.bytes_written // 1024,
                      "bw_bytes": int(result.bytes_written / (runtime_ms / 1e3)) if runtime_ms else 0,
                      "iops": result.ops_per_sec, "runtime": int(round(runtime_ms)), "total_ios": result.entries,
                      "clat_ns": _lat_block(write_ns)},
            "sync": {"total_ios": result.syncs, "lat_ns": _lat_block(sync_ns)},
        }],
        "fsyncstudy": {"preset": "etcd", "p99_limit_ms": ETCD_P99_LIMIT_MS, "sync_p99_ms": p99_ms,
                       "passes": p99_ms is not None and p99_ms < ETCD_P99_LIMIT_MS, "result": result.as_dict()},
    }


def run_etcd_preset(directory, target=None):
    """Our engine on etcd's fio check: sequential 2300-byte writes, fdatasync after each, 22 MiB.

    As ``fio --rw=write --ioengine=sync --fdatasync=1 --size=22m --bs=2300``: 10029 writes,
    the file preallocated with fallocate (fio's default, and etcd preallocates its WAL too).
    Returns (TrialResult, fio-shaped dict).
    """
    got = []
    r = run_trial("always", entries=ETCD_SIZE_BYTES // ETCD_BLOCK_BYTES, directory=directory,
                  sync_method="fdatasync", prealloc="fallocate", payload_bytes=ETCD_BLOCK_BYTES - HEADER.size,
                  target=target, on_timeline=got.append)
    return r, etcd_fio_json(r, got[0])
