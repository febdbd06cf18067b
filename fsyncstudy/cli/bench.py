"""``bench`` (one trial per strategy; ``--preset etcd``: fio's etcd disk check) and ``devices``."""
from __future__ import annotations

import warnings

from ..etcd import ETCD_P99_LIMIT_MS, run_etcd_preset
from ..places import pick_directory
from ..strategies import parse
from ..targets import Target, advice, describe, device, discover, machine_advice, one_line
from ..trial import check_write_path, run_trial
from .output import envelope, fmt, print_json, say, table

#: bench runs each batch_<N>ms / group_<N>ms trial for at least this many intervals (as the sweep's rule).
BENCH_INTERVALS = 5


def cmd_bench(args) -> int:
    if args.preset:
        return cmd_bench_preset(args)
    strategies = [parse(name) for name in args.strategy or ["always", "batch_10ms", "none"]]
    path = write_path(args)
    for st in strategies:   # a bad combination is refused before anything is measured
        check_write_path(st, args.sync_method, args.writers, **path)
    directory = pick_directory(args.dir, log=say)
    target = describe(directory)
    if target.durability == "volatile":
        say(f"warning: {directory} is {target.fstype}: {target.reason}")
    results, timelines = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for st in strategies:
            # long enough for its flusher or its group to act a few times, whatever the entries
            duration = max(args.duration or 0, st.span_s(BENCH_INTERVALS)) or None
            results.append(run_trial(st, entries=args.entries, duration_s=duration, directory=directory,
                                     sync_method=args.sync_method, prealloc=args.prealloc,
                                     payload_bytes=args.payload_bytes, writers=args.writers, target=target,
                                     on_timeline=timelines.append if args.plot else None, **path))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        from .. import plots
        plots.bench_run(results, timelines, f"bench on {target.path} ({target.fstype} on {device(target)}), "
                                            f"{target.durability}").savefig(args.plot, dpi=100, format="png")
        say(f"figure: {args.plot}")
    if args.json:
        print_json({"fsyncstudy": envelope(target), "results": [r.as_dict() for r in results]})
        return 0
    print(format_bench(results, target, sync_method=args.sync_method, prealloc=args.prealloc,
                       payload_bytes=args.payload_bytes, entries=args.entries, duration=args.duration))
    return 0


def write_path(args) -> dict:
    """bench's write-path options as ``run_trial``'s keywords."""
    return {"write_mode": args.write_mode, "bytes_per_sync": args.bytes_per_sync, "segment_bytes": args.segment_bytes,
            "recycle": args.recycle}


def path_text(r) -> str:
    """A trial's write path beyond its sync method, in words ("" for the plain one)."""
    parts = []
    mode, every, seg = (getattr(r, k, d) for k, d in (("write_mode", "per-entry"), ("bytes_per_sync", 0),
                                                      ("segment_bytes", 0)))
    if mode != "per-entry":
        parts.append(f"{mode} writes")
    if every:
        parts.append(f"sync_file_range every {every:,} bytes")
    if seg:
        parts.append(f"segments of {seg:,} bytes" + (f", recycling {r.recycle}" if r.recycle else ""))
    return ", ".join(parts)


def format_bench(results, target: Target, sync_method: str, prealloc: str, payload_bytes: int,
                 entries: int | None, duration: float | None) -> str:
    """``bench``'s text: the target, how each trial ran, one row per ``TrialResult``, and what none's bound means."""
    run_for = (f"{'at least ' + format(entries, ',') + ' entries' if entries else ''}"
               f"{' and ' if entries and duration else ''}"
               f"{'at least ' + format(duration, 'g') + ' s' if duration else ''}")
    rows = [[r.strategy, fmt(r.ops_per_sec, 0), fmt(r.entries), fmt(r.elapsed_s, 3), fmt(r.syncs),
             fmt(r.ack_latency_us_p50), fmt(r.ack_latency_us_p99), fmt(r.sync_latency_us_p50),
             fmt(r.sync_latency_us_p99), fmt(r.exposure_ms_p99, 3), fmt(r.exposure_ms_max, 3),
             r.data_loss_window if r.kind != "none" else f"<= {r.writeback_expire_s + r.writeback_interval_s:g} s"
             if r.writeback_expire_s is not None else "OS"]
            for r in results]
    lines = [f"target: {one_line(target)}",
             f"sync method {sync_method}, preallocation {prealloc}, payload {payload_bytes} B, one trial per "
             f"strategy (the sweep repeats trials and gives confidence intervals); each trial runs {run_for}, "
             f"and batch_<N>ms and group_<N>ms at least {BENCH_INTERVALS} intervals", "",
             table(rows, ["strategy", "ops/sec", "entries", "elapsed s", "syncs", "ack p50 us", "ack p99 us",
                          "sync p50 us", "sync p99 us", "exposure p99 ms", "exposure max ms", "nominal window"])]
    if results and path_text(results[0]):
        lines[1:1] = [f"write path: {path_text(results[0])}"]
    if any(getattr(r, "roll_count", 0) for r in results):
        lines += ["", table([[r.strategy, fmt(r.roll_count), fmt(r.ack_latency_us_p50), fmt(r.roll_ack_us_p50),
                               fmt(r.roll_ack_us_max)] for r in results],
                              ["strategy", "rolls", "ack p50 us", "first ack after a roll p50 us", "... max us"])]
    if any(getattr(r, "process_exposure_ms_max", None) is not None for r in results):
        lines += ["", "buffered: an entry is acknowledged in the process's buffer; until its write() returns a "
                      "process kill loses it too:",
                  *(f"  {r.strategy}: ack to write() returned p99 {fmt(r.process_exposure_ms_p99, 3)} ms, "
                    f"max {fmt(r.process_exposure_ms_max, 3)} ms" for r in results
                    if r.process_exposure_ms_max is not None)]
    if any(r.kind == "none" for r in results):
        lines += ["", "none: nothing was synced; the kernel writes dirty pages back once they are "
                      "dirty_expire old, checking every dirty_writeback (the bound shown)."]
    return "\n".join(lines)


# -- bench --preset etcd ----------------------------------------------------------------------------

def cmd_bench_preset(args) -> int:
    """``bench --preset etcd``: called by the bench command."""
    fixed = [flag for flag, given in (("--strategy", args.strategy), ("--entries", args.entries),
                                      ("--duration", args.duration), ("--writers", args.writers != 1),
                                      ("--payload-bytes", args.payload_bytes != 128),
                                      ("--sync-method", args.sync_method != "fdatasync"),
                                      ("--prealloc", args.prealloc != "append"),
                                      ("--write", args.write_mode != "per-entry"),
                                      ("--bytes-per-sync", args.bytes_per_sync),
                                      ("--segment-bytes", args.segment_bytes),
                                      ("--recycle", args.recycle)) if given]
    if fixed:
        raise ValueError(f"--preset {args.preset} fixes the workload; drop {', '.join(fixed)}")
    directory = pick_directory(args.dir, log=say)
    target = describe(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r, doc = run_etcd_preset(directory, target)
    if args.json:
        doc["fsyncstudy"]["envelope"] = envelope(target)  # the rest stays fio-shaped for etcd's checks
        print_json(doc)
        return 0
    print(format_etcd(r, doc, target))
    return 0


def format_etcd(r, doc: dict, target: Target) -> str:
    """The etcd preset's text: its trial ``r`` (a ``TrialResult``), fio's percentiles from its fio-shaped
    ``doc``, and the verdict against etcd's p99 guidance."""
    pct = doc["jobs"][0]["sync"]["lat_ns"].get("percentile", {})
    p99_ms = doc["fsyncstudy"]["sync_p99_ms"]
    return "\n".join([
        f"target: {one_line(target)}",
        f"etcd preset: {r.entries} sequential writes of {r.record_bytes} bytes ({r.bytes_written / 2**20:.1f} MiB), "
        "fdatasync after each, file preallocated (fallocate), as",
        "  fio --rw=write --ioengine=sync --fdatasync=1 --size=22m --bs=2300", "",
        "  fdatasync percentiles (usec): " + ", ".join(
            f"{float(k):g}th=[{v / 1e3:,.0f}]" for k, v in pct.items() if float(k) in (50, 90, 99, 99.9)),
        f"  {r.ops_per_sec:,.0f} ops/sec (write + fdatasync), sync p50 {r.sync_latency_us_p50:,.0f} us, "
        f"p99 {r.sync_latency_us_p99:,.0f} us, max {r.sync_latency_us_max:,.0f} us", "",
        f"p99 fdatasync {p99_ms:.3f} ms: {'PASS' if doc['fsyncstudy']['passes'] else 'FAIL'} against etcd's guidance "
        f"(wal_fsync_duration_seconds p99 < {ETCD_P99_LIMIT_MS:g} ms; OpenShift's etcd-perf uses 20 ms)",
        f"one trial: its p99 rests on about {max(1, r.syncs // 100)} tail samples; "
        "repeat it (or use the sweep) for an interval"])


# -- devices ---------------------------------------------------------------------------------------

def cmd_devices(args) -> int:
    targets = discover()
    if args.json:
        print_json({"fsyncstudy": envelope(), "devices": [{**t.as_dict(), "advice": advice(t)} for t in targets],
                    "machine_advice": machine_advice()})
        return 0
    print(format_devices(targets, machine_advice()))
    return 0


def format_devices(targets: list[Target], machine: list[str]) -> str:
    """``devices``' text: one row per filesystem, each one's verdict and advice, then the ``machine``'s advice."""
    rows = [[t.mount_point, t.fstype, device(t), fmt(t.rotational), t.write_cache or "-", t.scheduler or "-",
             t.model or "-", fmt(t.free_bytes / 2**30 if t.free_bytes is not None else None), t.durability]
            for t in targets]
    lines = [table(rows, ["mount point", "fs", "device", "rotational", "write cache", "scheduler", "model", "free GiB",
                          "verdict"])]
    for t in targets:
        lines += ["", f"  {t.mount_point}: {t.reason}", *(f"    - {line}" for line in advice(t))]
    lines += ["", "this machine:", *(f"  - {line}" for line in machine)]
    return "\n".join(lines)
