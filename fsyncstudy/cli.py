"""The command line: ``python -m fsyncstudy <command>``.  A thin shell over the library: each
command runs or loads, calls the library, and formats; every text formatter is here.

Imports of pandas, papermill and the lab stay inside the commands that need them, so a
command starts without them.
"""
from __future__ import annotations

import argparse
import json
import platform
import socket
import sys
import warnings
from pathlib import Path

from . import __version__, catalog, profiles, study
from .dataset import now_utc
from .etcd import ETCD_P99_LIMIT_MS, run_etcd_preset
from .intervals import Interval
from .log import unwind_on_sigterm
from .peers import compare
from .peertools import PG_SECTIONS, PeerFailed, PeerMissing
from .pgtest import SECTION_NOTES, PgTestReport, run_suite
from .places import pick_directory
from .strategies import PREALLOCATIONS, SYNC_METHODS, parse
from .targets import advice, describe, device, discover, machine_advice, one_line
from .trial import run_trial


def _fmt(v, nd: int = 1) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def say(m: str) -> None:
    print(m, file=sys.stderr)


def envelope(target=None) -> dict:
    """Where and when a command's JSON output was made, and by which command: it heads every --json."""
    return {"tool": "fsyncstudy", "version": __version__, "command": "python -m fsyncstudy " + " ".join(sys.argv[1:]),
            "time": now_utc(), "host": socket.gethostname(), "kernel": platform.release(),
            "python": platform.python_version(), "target": target.as_dict() if target is not None else None}


def print_json(obj, indent: int = 2) -> None:
    json.dump(obj, sys.stdout, indent=indent)
    print()


#: bench runs each batch_<N>ms / group_<N>ms trial for at least this many intervals (as the sweep's rule).
BENCH_INTERVALS = 5


def cmd_bench(args) -> int:
    if args.preset:
        return cmd_bench_preset(args)
    directory = pick_directory(args.dir, log=say)
    target = describe(directory)
    if target.durability == "volatile":
        print(f"warning: {directory} is {target.fstype}: {target.reason}", file=sys.stderr)
    results, timelines = [], []
    strategies = [parse(name) for name in args.strategy or ["always", "batch_10ms", "none"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for st in strategies:
            # long enough for its flusher or its group to act a few times, whatever the entries
            duration = max(args.duration or 0, st.span_s(BENCH_INTERVALS)) or None
            results.append(run_trial(st, entries=args.entries, duration_s=duration, directory=directory,
                                     sync_method=args.sync_method, prealloc=args.prealloc,
                                     payload_bytes=args.payload_bytes, writers=args.writers, target=target,
                                     on_timeline=timelines.append if args.plot else None))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        from . import plots
        plots.bench_run(results, timelines, f"bench on {target.path} ({target.fstype} on {device(target)}), "
                                            f"{target.durability}").savefig(args.plot, dpi=100)
        say(f"figure: {args.plot}")
    if args.json:
        print_json({"fsyncstudy": envelope(target), "results": [r.as_dict() for r in results]})
        return 0
    print(f"target: {one_line(target)}")
    print(f"sync method {args.sync_method}, preallocation {args.prealloc}, payload {args.payload_bytes} B, "
          f"one trial per strategy (the sweep repeats trials and gives confidence intervals); each trial "
          f"runs {'at least ' + format(args.entries, ',') + ' entries' if args.entries else ''}"
          f"{' and ' if args.entries and args.duration else ''}"
          f"{'at least ' + format(args.duration, 'g') + ' s' if args.duration else ''}"
          f", and batch_<N>ms and group_<N>ms at least {BENCH_INTERVALS} intervals\n")
    rows = [[r.strategy, _fmt(r.ops_per_sec, 0), _fmt(r.entries), _fmt(r.elapsed_s, 3), _fmt(r.syncs),
             _fmt(r.ack_latency_us_p50), _fmt(r.ack_latency_us_p99), _fmt(r.sync_latency_us_p50),
             _fmt(r.sync_latency_us_p99), _fmt(r.exposure_ms_p99, 3), _fmt(r.exposure_ms_max, 3),
             r.data_loss_window if r.kind != "none" else f"<= {r.writeback_expire_s + r.writeback_interval_s:g} s"
             if r.writeback_expire_s is not None else "OS"]
            for r in results]
    print(table(rows, ["strategy", "ops/sec", "entries", "elapsed s", "syncs", "ack p50 us", "ack p99 us",
                       "sync p50 us", "sync p99 us", "exposure p99 ms", "exposure max ms", "nominal window"]))
    if any(r.kind == "none" for r in results):
        print("\nnone: nothing was synced; the kernel writes dirty pages back once they are "
              "dirty_expire old, checking every dirty_writeback (the bound shown).")
    return 0


def cmd_devices(args) -> int:
    targets = discover()
    if args.json:
        print_json({"fsyncstudy": envelope(), "devices": [{**t.as_dict(), "advice": advice(t)} for t in targets],
                    "machine_advice": machine_advice()})
        return 0
    rows = [[t.mount_point, t.fstype, device(t), _fmt(t.rotational), t.write_cache or "-", t.scheduler or "-",
             t.model or "-", _fmt(t.free_bytes / 2**30 if t.free_bytes is not None else None), t.durability]
            for t in targets]
    print(table(rows, ["mount point", "fs", "device", "rotational", "write cache", "scheduler", "model", "free GiB",
                       "verdict"]))
    for t in targets:
        print(f"\n  {t.mount_point}: {t.reason}")
        for line in advice(t):
            print(f"    - {line}")
    print("\nthis machine:")
    for line in machine_advice():
        print(f"  - {line}")
    return 0


def cmd_sweep(args) -> int:
    from . import sweep
    from .sweep import run_sweep

    if args.scheduler:
        return cmd_fleet_sweep(args)
    if args.host:
        raise ValueError("--host names the hosts of a fleet: give --scheduler too")
    out = args.out or catalog.default_out(sweep.KIND, args.profile)
    say(f"study: {args.profile} profile into {out}")
    try:
        s = run_sweep(out, profile=profiles.profile(args.profile).sweep, targets=args.target, seed=args.seed,
                      progress=not args.quiet)
    except KeyboardInterrupt as e:
        print(f"\n{e.args[0] if e.args else 'interrupted'}", file=sys.stderr)
        return 130
    for note in s.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{s.ran} trials run ({s.failed} failed), {s.skipped} already done, in {s.elapsed_s:.0f} s: "
          f"{s.out / 'trials.csv'}")
    say_why(s.errors, "trials")
    return 1 if s.failed else 0


def cmd_fleet_sweep(args) -> int:
    from . import fleet

    prof = profiles.profile(args.profile).sweep
    out = Path(args.out) if args.out else catalog.default_out(catalog.FLEET, args.profile, scheduler=args.scheduler)
    say(f"fleet study: {args.profile} profile on the hosts of {args.scheduler} into {out}")
    try:
        s = fleet.run_fleet_sweep(out, prof, args.scheduler, targets=args.target, hosts=args.host, seed=args.seed,
                                  progress=not args.quiet, join_timeout_s=args.join_timeout)
    except KeyboardInterrupt as e:
        say(f"\n{e.args[0] if e.args else 'interrupted'}")
        return 130
    return _fleet_done(s, "trials", "trials.csv")


def _fleet_done(s, what: str, table_name: str) -> int:
    """A fleet run's notes, its one line per host, its errors; the exit status (1: a failure or a lost host)."""
    for note in s.notes:
        say(f"note: {note}")
    per_host = ", ".join(f"{h} {n}" for h, n in sorted(s.hosts.items()))
    print(f"{s.ran} {what} run ({s.failed} failed; {per_host or 'none'}), {s.skipped} already done, in "
          f"{s.elapsed_s:.0f} s: {s.out / table_name}")
    say_why(s.errors, "trials")
    return 1 if s.failed or s.lost else 0


def cmd_fleet(args) -> int:
    from . import fleet

    rows = fleet.status(args.scheduler, timeout_s=args.timeout)
    if args.json:
        print_json({"fsyncstudy": envelope(), "scheduler": args.scheduler, "hosts": rows}, indent=1)
    else:
        print(table([[r["host"], r["address"], r["hostname"], r["fsyncstudy"], r["python"], r["kernel"],
                      ", ".join(r["default_targets"]), r["refused"] or "ok"] for r in rows],
                    ["host", "address", "hostname", "fsyncstudy", "python", "kernel", "default targets", "joins"]))
    return 1 if any(r["refused"] for r in rows) else 0


def say_why(errors: dict[str, int], what: str) -> None:
    """The distinct errors of failed trials or cuts, the most frequent first, on stderr."""
    for text, n in sorted(errors.items(), key=lambda kv: -kv[1])[:5]:
        say(f"{n} {what} failed: {text}")
    if len(errors) > 5:
        say(f"... and {len(errors) - 5} other errors (see the error column of the dataset)")


def cmd_report(args) -> int:
    from .report import ReportIncomplete, build_report

    if args.dataset:
        dataset, crash, peers, loads = args.dataset, args.crash_dataset, args.peers_dataset, args.load_dataset
        real, real_crash = args.realdb_dataset, args.realdb_crash_dataset
    else:
        try:
            paths = study.run_study(args.profile, targets=args.target, use_lab=not args.no_lab, seed=args.seed,
                                    progress=not args.quiet, log=say)
        except KeyboardInterrupt as e:
            say(f"\n{e.args[0] if e.args else 'interrupted'}")
            return 130
        dataset, crash, peers, loads, real, real_crash = paths
    try:
        index = build_report(dataset, out_dir=args.out, crash_dataset=crash, peers_dataset=peers, load_dataset=loads,
                             realdb_dataset=real, realdb_crash_dataset=real_crash, seed=args.seed, log=say)
    except ReportIncomplete as e:
        # every page was rendered; the ones that stopped say where on the page, and here once each
        print(f"report: {e.index.resolve()} ({len(e.failures)} page(s) stopped before their end)")
        for f in e.failures:
            say(f"error: {f.line()}")
        return 1
    print(f"report: {index.resolve()}")
    from . import analysis, sweep
    df, _ = sweep.load(Path(dataset).resolve())
    for line in analysis.headline_lines(analysis.headline(df)):
        print(f"- {line}")
    if loads:
        from . import loadstudy
        for line in analysis.at_rate_lines(loadstudy.load(Path(loads).resolve())[0]):
            print(f"- {line}")
    return 0


def cmd_crash(args) -> int:
    from . import crash
    from .crash import load, run_crash

    kinds = tuple(dict.fromkeys(args.kind or ["power", "process"]))
    out = Path(args.out) if args.out else catalog.default_out(crash.KIND, args.profile, kinds=kinds)
    try:
        s = run_crash(out, profiles.profile(args.profile).crash, kinds=kinds,
                      strategies=args.strategy, cuts=args.cuts, seed=args.seed, directory=args.dir,
                      progress=not args.quiet and not args.json)
    except KeyboardInterrupt as e:
        print(f"\n{e.args[0] if e.args else 'interrupted'}", file=sys.stderr)
        return 130
    df, _ = load(out)
    if args.json:
        print_json({"fsyncstudy": envelope(), "dataset": str(out), "cuts": json.loads(df.to_json(orient="records"))},
                   indent=1)
    else:
        from . import analysis
        # a cut that failed was cut again: its row is history, counted here and in no other column
        errors = {key: int((g["error"] != "").sum()) for key, g in df.groupby(["kind", "strategy"], sort=False)}
        counted = {(r.kind, r.strategy): r for r in analysis.crash_table(df).itertuples()}
        rows = []
        for (kind, strat), failed in errors.items():
            r = counted.get((kind, strat))
            if r is None:  # every cut of it failed
                rows.append([kind, strat, "0", "0", "0", "0", "-", "-", "0", "0", _fmt(failed)])
                continue
            rows.append([kind, strat, _fmt(r.cuts), _fmt(r.acked), _fmt(r.lost_acked), _fmt(r.cuts_losing),
                         _fmt(r.window_median_ms, 2), _fmt(r.window_max_ms, 2), _fmt(r.torn), _fmt(r.corrupt),
                         _fmt(failed)])
        print(table(rows, ["kind", "strategy", "cuts", "acked", "acked lost", "cuts losing", "loss window p50 ms",
                           "max ms", "torn", "corrupt", "errors"]))
        print("(errors: cuts that failed, run again on resume; they count in no other column)")
        print(f"\n{s.ran} cuts run, {s.skipped} already done, in {s.elapsed_s:.0f} s: {out / 'cuts.csv'}")
    for line in s.lost_by_durable:
        say(f"BUG: {line}")
    say_why(s.errors, "cuts")
    return 1 if s.lost_by_durable or s.failed else 0


def cmd_upgrade(args) -> int:
    for d in args.dataset:
        meta = catalog.upgrade(d)
        print(f"{d}: meta.json rewritten as a format-{meta['format']} {meta['kind']} dataset (rows untouched)")
    return 0


# -- bench --preset etcd ----------------------------------------------------------------------------

def cmd_bench_preset(args) -> int:
    """``bench --preset etcd``: called by the bench command."""
    fixed = [flag for flag, given in (("--strategy", args.strategy), ("--entries", args.entries),
                                      ("--duration", args.duration), ("--writers", args.writers != 1),
                                      ("--payload-bytes", args.payload_bytes != 128),
                                      ("--sync-method", args.sync_method != "fdatasync"),
                                      ("--prealloc", args.prealloc != "append")) if given]
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
    job = doc["jobs"][0]
    p99_ms = doc["fsyncstudy"]["sync_p99_ms"]
    print(f"target: {one_line(target)}")
    print(f"etcd preset: {r.entries} sequential writes of {r.record_bytes} bytes ({r.bytes_written / 2**20:.1f} MiB), "
          f"fdatasync after each, file preallocated (fallocate), as\n"
          f"  fio --rw=write --ioengine=sync --fdatasync=1 --size=22m --bs=2300\n")
    pct = job["sync"]["lat_ns"].get("percentile", {})
    print("  fdatasync percentiles (usec): " + ", ".join(
        f"{float(k):g}th=[{v / 1e3:,.0f}]" for k, v in pct.items() if float(k) in (50, 90, 99, 99.9)))
    print(f"  {r.ops_per_sec:,.0f} ops/sec (write + fdatasync), sync p50 {r.sync_latency_us_p50:,.0f} us, "
          f"p99 {r.sync_latency_us_p99:,.0f} us, max {r.sync_latency_us_max:,.0f} us\n")
    ok = doc["fsyncstudy"]["passes"]
    print(f"p99 fdatasync {p99_ms:.3f} ms: {'PASS' if ok else 'FAIL'} against etcd's guidance "
          f"(wal_fsync_duration_seconds p99 < {ETCD_P99_LIMIT_MS:g} ms; OpenShift's etcd-perf uses 20 ms)")
    print(f"one trial: its p99 rests on about {max(1, r.syncs // 100)} tail samples; "
          "repeat it (or use the sweep) for an interval")
    return 0


# -- compare and pgtest -----------------------------------------------------------------------------

def _num(v, nd: int = 0) -> str:
    return "-" if v is None or v != v else f"{v:,.{nd}f}"


def _ci(e: Interval, nd: int = 0) -> str:
    if not e.has_estimate():
        return "-"
    if not e.has_interval():
        return _num(e.estimate, nd)
    return f"{_num(e.estimate, nd)} [{_num(e.low, nd)}, {_num(e.high, nd)}]"


def format_pairs(results) -> str:
    """``compare``'s table: one row per pair, then each pair's definition and notes."""
    rows = []
    for pr in results:
        s = pr.summary()
        nd = 1 if pr.latency == "write" else 0
        rows.append([pr.pair, _ci(pr.ratio(), 3), _ci(pr.ours_ops()), _ci(pr.peer_ops()), pr.latency,
                     f"{_num(s['ours_p50_us'], nd)} / {_num(s['peer_p50_us'], nd)}",
                     f"{_num(s['ours_p99_us'], nd)} / {_num(s['peer_p99_us'], nd)}", pr.verdict() or "-"])
    out = [table(rows, ["pair", "ours/peer ratio [95% CI]", "ours ops/sec [95% CI]", "peer ops/sec [95% CI]",
                        "latency", "p50 us ours / peer", "p99 us ours / peer", "aim"])]
    out.append("")
    for pr in results:
        size = f"{pr.entries:,} writes" + (f" (~{pr.seconds:g} s)" if pr.seconds else "")
        out.append(f"{pr.pair}: {pr.peer_test}  vs  {pr.ours}; {pr.block_bytes} B per write, {size} per side "
                   f"and round; aim: {pr.aim or 'none (for reference)'}")
        for n in pr.notes:
            out.append(f"    note: {n}")
    return "\n".join(out)


def cmd_compare(args) -> int:
    peers = [p for group in (args.peers or ["fio,pg_test_fsync"]) for p in group.split(",") if p]
    directory = pick_directory(args.target, log=say)
    try:
        results = compare(directory, rounds=args.rounds, peers=peers, prealloc=args.prealloc,
                          payload_bytes=args.payload_bytes, entries=args.entries, secs_per_test=args.secs_per_test,
                          log=None if args.json else say)
    except PeerMissing as e:
        other = [p for p in ("fio", "pg_test_fsync") if p != e.peer]
        say(f"error: {e}\n(or compare with the other peer only: --peers {other[0]})")
        return 3
    except PeerFailed as e:
        say(f"error: {e}")
        return 2
    if args.json:
        print_json({"fsyncstudy": envelope(describe(directory)), "pairs": [pr.as_dict() for pr in results]})
        return 0
    print(f"target: {one_line(describe(directory))}")
    print(f"{args.rounds} rounds, peer and ours alternating first; ratio = geometric mean of per-round "
          "ours/peer, 95% t interval\n")
    print(format_pairs(results))
    return 0


#: pg_test_fsync's line formats.
PG_LABEL_FORMAT = "        %-30s"
PG_NA_FORMAT = "%21s"
PG_OPS_FORMAT = "%13.3f ops/sec  %6.0f usecs/op"


def format_pgtest(rep: PgTestReport) -> str:
    """pg_test_fsync's report layout and line format, each line followed by our 95% CI."""
    secs = f"{rep.secs_per_test:g}"
    lines = [f"{secs} second{'s' if secs != '1' else ''} per test "
             f"({rep.trials} trials of {rep.trial_s:g} s each, in rounds; fsyncstudy)",
             "O_DIRECT is not used: fsyncstudy writes through the page cache "
             "(pg_test_fsync uses O_DIRECT for open_datasync and open_sync).",
             f"target: {rep.target_path} ({rep.target_fstype}, {rep.target_durability})"]
    section = 0
    for t in rep.tests:
        if t.section != section:
            section = t.section
            lines.append("")
            lines.append(PG_SECTIONS[section - 1])
            if section in SECTION_NOTES:
                lines.append(SECTION_NOTES[section])
        head = PG_LABEL_FORMAT % t.label
        e = t.estimate()
        if t.na or not e.has_estimate():
            lines.append(head + PG_NA_FORMAT % (t.na or "n/a"))
            continue
        line = head + PG_OPS_FORMAT % (e.estimate, 1e6 / e.estimate)
        if e.has_interval():
            line += f"   95% CI {e.low:.3f}..{e.high:.3f}"
        lines.append(line)
    lines += ["", "ops/sec: mean over trials; usecs/op: 1e6 / that mean; 95% CI: t interval over trials.",
              "Sections 1 and 5 are fsyncstudy's engine (always / none, 8 kB entries at offset 0 of a zero-filled "
              "16 MiB file);", "sections 2-4 are plain loops of the system calls pg_test_fsync makes.",
              "Section 5's engine writes a distinct framed 8 kB record per entry (framed inside the timed window), "
              "pg_test_fsync one hot buffer:", "there the difference is Python's per-write cost, not the storage."]
    return "\n".join(lines)


def cmd_pgtest(args) -> int:
    directory = pick_directory(args.target, log=say)
    report = run_suite(directory, secs_per_test=args.secs_per_test, trials=args.trials,
                       log=None if args.json else say)
    if args.json:
        print_json({"fsyncstudy": envelope(describe(directory)), "report": report.as_dict()})
        return 0
    print(format_pgtest(report))
    return 0


# -- load and advise: at your rate -----------------------------------------------------------------

def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--rate takes entries per second, comma separated (e.g. 500,2000), got {text!r}") from None
    if not rates:
        raise ValueError("--rate needs at least one rate")
    return rates


def cmd_load(args) -> int:
    from . import loadstudy
    from .load import run_load_trial
    if args.profile:
        if args.strategy or args.rate:
            raise ValueError("--profile runs the load study's own plan: drop --strategy and --rate")
        plan = profiles.profile(args.profile).load
        if args.scheduler:
            from . import fleet
            out = (Path(args.out) if args.out else
                   catalog.default_out(catalog.FLEET_LOAD, args.profile, scheduler=args.scheduler))
            say(f"fleet load study: {plan.name} profile on the hosts of {args.scheduler} into {out}")
            s = fleet.run_fleet_load(out, plan, args.scheduler, targets=args.target, hosts=args.host, seed=args.seed,
                                     progress=not args.quiet)
            return _fleet_done(s, "load trials", loadstudy.TABLE)
        out = Path(args.out) if args.out else catalog.default_out(loadstudy.KIND, args.profile)
        targets = args.target or [str(catalog.runs_dir())]
        say(f"load study: {plan.name} profile ({len(plan.rates)} rates x {len(plan.strategies)} strategies x "
            f"{len(targets)} targets x {plan.trials + plan.warmup_rounds} rounds of {plan.duration_s:g} s) into {out}")
        s = loadstudy.run_load_study(out, plan, targets, seed=args.seed, progress=not args.quiet)
        print(f"{s.ran} load trials run ({s.failed} failed), {s.skipped} already done, in {s.elapsed_s:.0f} s: "
              f"{s.out / loadstudy.TABLE}")
        say_why(s.errors, "trials")
        return 1 if s.failed else 0
    if args.scheduler:
        raise ValueError("--scheduler runs the load study on a fleet: give --profile too")
    if not args.strategy or not args.rate:
        raise ValueError("give --strategy and --rate (a one-off run), or --profile (the load study)")
    directory = pick_directory(args.target[0] if args.target else None, log=say)
    target = describe(directory)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.strategy:
            for rate in _rates(",".join(args.rate)):
                results.append(run_load_trial(name, rate, duration_s=args.duration, directory=directory,
                                              arrivals=args.arrivals, clients=args.clients if parse(name).kind == "group"
                                              else 1, seed=args.seed, work_us=args.work_us, target=target))
    if args.json:
        print_json({"fsyncstudy": envelope(target), "results": [r.as_dict() for r in results]})
        return 0
    print(f"target: {one_line(target)}")
    print(f"{args.arrivals} arrivals for {args.duration:g} s; latency is timed from each entry's intended arrival, "
          "service from its write() (one trial each: the load study repeats them)\n")
    ms = lambda us: "-" if us is None else f"{us / 1e3:,.3f}"   # noqa: E731
    rows = [[r.strategy + (f" x{r.clients}" if r.clients > 1 else ""), _fmt(r.offered_rate, 0), _fmt(r.achieved_rate, 0),
             "SATURATED" if r.saturated else "keeps up", ms(r.latency_us_p50), ms(r.latency_us_p99),
             ms(r.latency_us_p999), ms(r.service_us_p99), _fmt(r.exposure_ms_max, 2), _fmt(r.lateness_us_p99, 1)]
            for r in results]
    print(table(rows, ["strategy", "offered/s", "achieved/s", "", "latency p50 ms", "p99 ms", "p99.9 ms",
                       "service p99 ms", "exposure max ms", "lateness p99 us"]))
    if any(r.saturated for r in results):
        print("\nSATURATED: the target did not keep up; those latencies are lower bounds (entries still queued "
              "count with their wait so far).")
    return 0


def _ms(us) -> str:
    return "-" if us is None or us != us else f"{us / 1e3:,.3f}"


def _pred_rows(pred) -> list[list[str]]:
    return [[r.key, r.target_label, _fmt(r.db_commits_per_sec, 0), r.strategy, _fmt(r.predicted_per_sec, 0),
             f"{r.ratio:.3f}" + (f" ({r.ratio_low:.3f}-{r.ratio_high:.3f})" if r.ratio_low == r.ratio_low else ""),
             _fmt(r.db_flushes_per_commit, 2), _fmt(r.db_bytes_per_commit, 0), _fmt(r.db_cpu_us_per_commit, 1)]
            for r in pred.itertuples()]


PRED_HEADER = ["setting", "target", "commits/s", "predicted by", "its ops/s", "db / prediction", "flushes/commit",
               "bytes/commit", "CPU us/commit"]


def cmd_realdb(args) -> int:
    from . import analysis, realdb, realstudy
    if args.action == "crash":
        return _realdb_crash(args)
    if args.profile:
        if args.db or args.setting:
            raise ValueError("--profile runs the study's own settings: drop --db and --setting")
        plan = profiles.profile(args.profile).realdb
        out = Path(args.out) if args.out else catalog.default_out(realstudy.KIND, args.profile)
        targets, where = catalog.realdb_targets(args.target)
        say(f"real databases: {plan.name} profile ({len(plan.settings)} settings and their predictions x "
            f"{len(targets)} targets x {plan.trials + plan.warmup_rounds} rounds of {plan.duration_s:g} s) into {out}"
            + (f"; {where}" if where else ""))
        s = realstudy.run_real_study(out, plan, targets, seed=args.seed, progress=not args.quiet and not args.json,
                                     where=where)
        for db, why in s.missing.items():
            say(f"{db} skipped: {why}")
        df, meta = realstudy.load(out)
        pred = analysis.realdb_predictions(df, meta["notes"].get("settings"))
        if args.json:
            print_json({"fsyncstudy": envelope(), "dataset": str(out), "skipped": s.missing,
                        "settings": json.loads(pred.to_json(orient="records"))})
        else:
            print(table(_pred_rows(pred), PRED_HEADER))
            print(f"\n{s.ran} trials run ({s.failed} failed), {s.skipped} already done, in {s.elapsed_s:.0f} s: "
                  f"{s.out / realstudy.TABLE}")
        say_why(s.errors, "trials")
        return 1 if s.failed else 0
    if not args.db:
        raise ValueError("give --db sqlite|postgres|redis (one trial of each setting beside its prediction), "
                         "or --profile (the study)")
    if not 0 < args.duration <= realdb.MAX_DURATION_S:
        raise ValueError(f"--duration must be in (0, {realdb.MAX_DURATION_S:g}] seconds, got {args.duration:g}")
    if args.rate is not None and not 0 < args.rate <= 1e6:
        raise ValueError(f"--rate must be in (0, 1,000,000] commits a second, got {args.rate:g}")
    chosen = realdb.settings(args.db, args.setting)
    missing = realdb.availability()
    if args.db in missing:
        raise realdb.DatabaseMissing(f"{args.db} cannot run here: {missing[args.db]}")
    directory = pick_directory(args.target[0] if args.target else None, log=say)
    target = describe(directory)
    rows = []
    for s in chosen:
        say(f"{s.key} and its prediction {s.predict} on {directory}")
        rows.append(realstudy.side_by_side(s, str(directory), args.duration, target.block_device,
                                           rate=args.rate or 0.0, seed=args.seed))
    if args.json:
        print_json({"fsyncstudy": envelope(target), "results": rows}, indent=1)
        return 0
    print(f"target: {one_line(target)}")
    loop = (f"open loop at {args.rate:,.0f} commits/s (Poisson arrivals; latency from each arrival)" if args.rate
            else "closed loop")
    print(f"single-row commits of {realdb.PAYLOAD_BYTES} bytes, {loop}, {args.duration:g} s each side (one trial: "
          "--profile repeats them in rounds, with intervals)\n")
    print(table([[r["setting"], _fmt(r["clients"], 0), _fmt(r["db"]["commits_per_sec"], 0), _ms(r["db"]["latency_us_p50"]),
                  _ms(r["db"]["latency_us_p99"]), _fmt(r["db"]["device_flushes_per_commit"], 2),
                  r["prediction"]["strategy"], _fmt(r["prediction"]["commits_per_sec"], 0),
                  "-" if r["ratio"] is None else f"{r['ratio']:.3f}"] for r in rows],
                ["setting", "clients", "commits/s", "p50 ms", "p99 ms", "flushes/commit", "predicted by", "its ops/s",
                 "db / prediction"]))
    return 0


def _realdb_crash(args) -> int:
    from . import analysis, realstudy
    try:
        s = study.run_realdb_crash(args.profile, args.db, args.setting, cuts=args.cuts, out=args.out, seed=args.seed,
                                   progress=not args.quiet and not args.json)
    except KeyboardInterrupt as e:
        say(f"\n{e.args[0] if e.args else 'interrupted'}")
        return 130
    out = s.out
    for db, why in s.missing.items():
        say(f"{db} skipped: {why}")
    cuts, _ = realstudy.load_crash(out)
    losses = analysis.realdb_losses(cuts)
    if args.json:
        print_json({"fsyncstudy": envelope(), "dataset": str(out), "skipped": s.missing,
                    "settings": json.loads(losses.to_json(orient="records")),
                    "cuts": json.loads(cuts.to_json(orient="records"))}, indent=1)
    else:
        print(table([[r.key, _fmt(r.reopened, 0), _fmt(r.acked, 0), _fmt(r.lost_acked, 0), _fmt(r.cuts_losing, 0),
                      _fmt(r.window_median_ms, 1), _fmt(r.window_max_ms, 1),
                      "none in time" if r.promise_ms != r.promise_ms else _fmt(r.promise_ms, 0), r.verdict]
                     for r in losses.itertuples()],
                    ["setting", "cuts", "acked", "acked lost", "cuts losing", "window p50 ms", "max ms", "promise ms",
                     "verdict"]))
        print(f"\n{s.ran} cuts run ({s.failed} failed), {s.skipped} already done, in {s.elapsed_s:.0f} s: "
              f"{out / realstudy.CRASH_TABLE}")
    say_why(s.errors, "cuts")
    return 1 if s.failed else 0


def cmd_advise(args) -> int:
    from . import analysis, loadstudy
    path = catalog.existing(args.dataset, loadstudy.KIND) if args.dataset else catalog.newest(loadstudy.KIND)
    df, _ = loadstudy.load(path)
    summ = analysis.load_summary(df)
    adv = analysis.advise(summ, args.rate, args.loss_budget_ms, args.p99_budget_ms)
    if args.json:
        print_json({"fsyncstudy": envelope(), "dataset": str(path), "rate": args.rate,
                    "loss_budget_ms": args.loss_budget_ms, "p99_budget_ms": args.p99_budget_ms,
                    "candidates": json.loads(adv.to_json(orient="records"))})
        return 0
    print(f"from the load study {path.name}:\n")
    for line in analysis.advice_lines(adv, args.rate, args.loss_budget_ms):
        print("- " + line.replace("**", "").replace("`", ""))
    rows = [[r.target_label, r.config_label, f"{r.measured_at:,.0f}", f"{r.p99_ms:.2f} [{r.p99_ms_low:.2f}, {r.p99_ms_high:.2f}]",
             "-" if r.window_ms != r.window_ms or r.window_ms is None else f"{r.window_ms:.1f}", r.verdict,
             "<- advised" if r.advised else ""]
            for r in adv.dropna(subset=["config"]).itertuples()]
    if rows:
        print()
        print(table(rows, ["target", "strategy", "measured at /s", "p99 ms [95% CI]", "window ms", "verdict", ""]))
    return 0


# -- diff: two runs side by side -------------------------------------------------------------------

def format_diff(diff, name_a: str, name_b: str) -> str:
    rows = [[r.target_label, r.config_label, f"{_num(r.mean_a)} [{_num(r.low_a)}, {_num(r.high_a)}] n={r.n_a}",
             f"{_num(r.mean_b)} [{_num(r.low_b)}, {_num(r.high_b)}] n={r.n_b}",
             _ci(Interval(r.ratio, r.ratio_low, r.ratio_high, r.ci_method), 3), r.verdict]
            for r in diff.itertuples()]
    metric = diff["metric"].iloc[0]
    return "\n".join([f"A: {name_a}", f"B: {name_b}", "",
                      table(rows, ["target", "configuration", f"A {metric} [95% CI]", f"B {metric} [95% CI]",
                                   "B/A [95% CI]", "verdict"]), "",
                      f"{diff['ci_method'].iloc[0]}; each side's interval: 95% t over its trials"])


def cmd_diff(args) -> int:
    from . import analysis
    a, name_a = catalog.load_run(args.a)
    b, name_b = catalog.load_run(args.b)
    if args.metric not in a.columns or args.metric not in b.columns:
        raise ValueError(f"no metric {args.metric!r} in both runs: try ops_per_sec, ack_latency_us_p99, "
                         "sync_latency_us_p50, exposure_ms_max")
    diff = analysis.diff_runs(a, b, args.metric)
    if diff.empty:
        raise ValueError(f"{name_a} and {name_b} have no target and configuration in common (targets are "
                         "paired by directory, else by label, else one to one)")
    if args.plot:
        from . import plots
        fig = plots.run_ratios(diff, f"{name_b} over {name_a}")
        fig.savefig(args.plot, dpi=110, bbox_inches="tight")
        say(f"figure: {args.plot}")
    if args.json:
        print_json({"fsyncstudy": envelope(), "a": str(args.a), "b": str(args.b),
                    "rows": json.loads(diff.to_json(orient="records"))})
        return 0
    print(format_diff(diff, name_a, name_b))
    return 0


# -- the parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fsyncstudy",
                                 description="How much durability each fsync strategy costs, on your storage.")
    ap.add_argument("--debug", action="store_true", help="on an error, show the traceback (before the command)")
    ap.add_argument("--version", action="version", version=f"fsyncstudy {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="one trial per strategy, as a table or JSON")
    b.add_argument("--strategy", action="append", metavar="NAME",
                   help="always, none, batch_<N>ms or group_<N>ms; repeat the flag (default: the task's three)")
    b.add_argument("--entries", type=int, help="entries per trial (default 10000 unless --duration is given)")
    b.add_argument("--duration", type=float, metavar="SECONDS", help="run each trial at least this long")
    b.add_argument("--target", "--dir", dest="dir", metavar="DIR",
                   help="target directory or lab:NAME (default: $FSYNCSTUDY_DIR, else durable storage)")
    b.add_argument("--sync-method", default="fdatasync", choices=SYNC_METHODS)
    b.add_argument("--prealloc", default="append", choices=PREALLOCATIONS)
    b.add_argument("--payload-bytes", type=int, default=128)
    b.add_argument("--writers", type=int, default=1, help="concurrent writers (group_<N>ms only)")
    b.add_argument("--json", action="store_true", help="print the full results as JSON")
    b.add_argument("--plot", metavar="PNG", help="also draw each trial's latency histogram and timeline into a PNG")
    b.add_argument("--preset", choices=["etcd"], help="etcd: fio's etcd disk check (2300-byte writes, fdatasync "
                   "after each, 22 MiB), its p99 against 10 ms; --json prints fio-shaped JSON")
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("devices", help="the mounted filesystems you could measure, with a durability verdict")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_devices)
    s = sub.add_parser("sweep", help="the study: every configuration on every target, repeated, resumable")
    s.add_argument("--profile", default="standard", choices=list(profiles.PROFILES))
    s.add_argument("--target", "--dir", action="append", dest="target", metavar="DIR",
                   help="a directory or lab:NAME; repeat the flag (default: the checkout's runs/ and /dev/shm)")
    s.add_argument("--out", help="dataset directory (default: runs/<profile>-<host>-<boot id>)")
    s.add_argument("--seed", type=int, default=0, help="seed of the randomized round order (recorded)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="a fleet: the Dask scheduler (tcp://HOST:8786), or local[:N] for N worker processes here; "
                        "every worker is one host, named by its --name; --target HOST:DIR per host (default: each "
                        "host's data disk and tmpfs)")
    s.add_argument("--host", action="append", metavar="NAME",
                   help="with --scheduler: a host that must take part; repeat (default: every worker connected)")
    s.add_argument("--join-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="with --scheduler: how long to wait for the hosts to join (default 30)")
    s.set_defaults(func=cmd_sweep)

    fl = sub.add_parser("fleet", help="the hosts of a Dask fleet: names, versions, targets")
    fl.add_argument("action", choices=["status"])
    fl.add_argument("--scheduler", required=True, metavar="ADDRESS", help="tcp://HOST:8786, or local[:N]")
    fl.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                    help="how long to wait for the scheduler and a first worker (default 5)")
    fl.add_argument("--json", action="store_true")
    fl.set_defaults(func=cmd_fleet)

    c = sub.add_parser("crash", help="cut writers at random moments and count the acknowledged entries lost")
    c.add_argument("--kind", action="append", choices=["power", "process"],
                   help="power (the lab's power-cut filesystem) or process (SIGKILL); repeat (default: both)")
    c.add_argument("--strategy", action="append", metavar="NAME", help="repeat (default: the profile's)")
    c.add_argument("--cuts", type=int, help="cuts per strategy (default: the profile's)")
    c.add_argument("--profile", default="standard", choices=list(profiles.PROFILES),
                   help="whose crash plan (full's is standard's)")
    c.add_argument("--target", "--dir", dest="dir", metavar="DIR",
                   help="where process-crash writers write (default: durable storage, as bench)")
    c.add_argument("--out", help="dataset directory (default: runs/crash-<profile>-<kinds>-<host>-<boot id>)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true", help="print every cut as JSON")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_crash)

    r = sub.add_parser("report", help="run (or resume) the study, then render the notebooks into reports/")
    r.add_argument("--profile", default="standard", choices=list(profiles.PROFILES))
    r.add_argument("--target", "--dir", action="append", dest="target", metavar="DIR", help="as for sweep")
    r.add_argument("--dataset", help="render this existing dataset instead of measuring")
    r.add_argument("--crash-dataset", help="with --dataset: the crash dataset for notebooks 03 and 04")
    r.add_argument("--peers-dataset", help="with --dataset: the comparison dataset for notebook 05")
    r.add_argument("--load-dataset", help="with --dataset: the load dataset for notebook 06 and the index")
    r.add_argument("--realdb-dataset", help="with --dataset: the real-database dataset for notebook 08")
    r.add_argument("--realdb-crash-dataset", help="with --dataset: the power cuts under real databases (notebook 08)")
    r.add_argument("--no-lab", action="store_true", help="leave the storage lab out of the study")
    r.add_argument("--out", default="reports", help="where the HTML goes (default: reports/)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("peers", aliases=["compare"],
                       help="side by side with fio and pg_test_fsync on the same target (two runs of ours: diff)")
    c.add_argument("--target", "--dir", dest="target", metavar="DIR",
                   help="target directory (default: $FSYNCSTUDY_DIR, else durable storage)")
    c.add_argument("--rounds", type=int, default=5, metavar="K", help="alternating rounds (default 5)")
    c.add_argument("--peers", action="append", metavar="NAMES",
                   help="fio and/or pg_test_fsync, comma separated (default: both)")
    c.add_argument("--prealloc", default="fallocate", choices=PREALLOCATIONS,
                   help="fio pairs' preallocation on both sides (default fallocate, fio's own default)")
    c.add_argument("--payload-bytes", type=int, default=128,
                   help="fio pairs: our payload; the block is 16 bytes more (default 128: 144-byte writes)")
    c.add_argument("--entries", type=int, help="fio sync pair: writes per side and round (default: ~0.5 s worth)")
    c.add_argument("--secs-per-test", type=int, default=1, metavar="S",
                   help="pg_test_fsync's -s, and our seconds per method (default 1)")
    c.add_argument("--json", action="store_true", help="every pair with its per-round values, as JSON")
    c.set_defaults(func=cmd_compare)

    p = sub.add_parser("pgtest", help="pg_test_fsync's five sections, measured by fsyncstudy, with CIs")
    p.add_argument("--target", "--dir", dest="target", metavar="DIR",
                   help="target directory (default: $FSYNCSTUDY_DIR, else durable storage)")
    p.add_argument("--secs-per-test", type=float, default=5.0, metavar="S",
                   help="seconds per test, as pg_test_fsync's -s (default 5), split into --trials trials")
    p.add_argument("--trials", type=int, default=5, help="trials per test, run in rounds (default 5)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pgtest)

    lo = sub.add_parser("load", help="open-loop load: entries arrive at a rate; latency from each one's arrival "
                                      "(one-off runs, or --profile for the load study)")
    lo.add_argument("--strategy", action="append", metavar="NAME", help="repeat the flag")
    lo.add_argument("--rate", action="append", metavar="R[,R...]", help="entries per second; several: comma separated")
    lo.add_argument("--arrivals", default="poisson", choices=["constant", "poisson"])
    lo.add_argument("--clients", type=int, default=4, help="group_<N>ms: writers sharing the rate (default 4)")
    lo.add_argument("--duration", type=float, default=1.0, metavar="SECONDS", help="per trial (default 1)")
    lo.add_argument("--work-us", type=float, default=0.0, help="CPU the writer spends between entries (an application)")
    lo.add_argument("--target", "--dir", action="append", dest="target", metavar="DIR",
                    help="a directory or lab:NAME (one-off: the first; --profile: each; default: the checkout's runs/)")
    lo.add_argument("--profile", choices=list(profiles.PROFILES), help="run the load study of this profile")
    lo.add_argument("--out", help="with --profile: the dataset (default: runs/load-<profile>-<host>-<boot>-<key>)")
    lo.add_argument("--seed", type=int, default=0)
    lo.add_argument("--json", action="store_true")
    lo.add_argument("--quiet", action="store_true")
    lo.add_argument("--scheduler", metavar="ADDRESS",
                    help="with --profile: the load study on a fleet (as sweep --scheduler; --target HOST:DIR)")
    lo.add_argument("--host", action="append", metavar="NAME", help="with --scheduler: a host that must take part")
    lo.set_defaults(func=cmd_load)

    rd = sub.add_parser("realdb", help="SQLite, PostgreSQL and Redis on a target, each setting beside the strategy "
                                        "that predicts it; `realdb crash`: power cuts under them")
    rd.add_argument("action", nargs="?", choices=["crash"], help="crash: cut the power under the databases "
                                                                 "(on the storage lab's lab:powercut)")
    rd.add_argument("--db", choices=["sqlite", "postgres", "redis"], help="one database (default with --profile: "
                                                                          "the profile's settings)")
    rd.add_argument("--setting", action="append", metavar="NAME", help="one of the database's settings; repeat "
                                                                       "(default: all of them)")
    rd.add_argument("--target", "--dir", action="append", dest="target", metavar="DIR",
                    help="a directory or lab:NAME (one-off: the first; --profile: each; default: the checkout's runs/, "
                         "or a directory on its filesystem that PostgreSQL can reach)")
    rd.add_argument("--duration", type=float, default=0.5, metavar="SECONDS", help="per trial (default 0.5)")
    rd.add_argument("--rate", type=float, metavar="R", help="an open loop: R commits a second offered (Poisson), "
                                                            "latency from each arrival (default: a closed loop)")
    rd.add_argument("--profile", choices=list(profiles.PROFILES), help="run the real-database study of this profile")
    rd.add_argument("--cuts", type=int, help="crash: cuts per setting (default: the profile's, else 20)")
    rd.add_argument("--out", help="the dataset (default: runs/realdb[-crash]-<profile>-<host>-<boot>-<key>)")
    rd.add_argument("--seed", type=int, default=0)
    rd.add_argument("--json", action="store_true")
    rd.add_argument("--quiet", action="store_true")
    rd.set_defaults(func=cmd_realdb)

    ad = sub.add_parser("advise", help="at your rate and loss budget, which strategy, from a load study's data")
    ad.add_argument("--rate", type=float, required=True, help="your entries per second")
    ad.add_argument("--loss-budget-ms", type=float, required=True,
                    help="how much acknowledged data a power cut may take (ms; 0: nothing)")
    ad.add_argument("--p99-budget-ms", type=float, help="and the p99 latency you can afford (ms)")
    ad.add_argument("--dataset", help="a load dataset (default: the newest of this machine, else the committed one)")
    ad.add_argument("--json", action="store_true")
    ad.set_defaults(func=cmd_advise)

    d = sub.add_parser("diff", help="two runs side by side (datasets or bench --json files): each side with its "
                                    "interval, the ratio and whether it is significant")
    d.add_argument("a", help="run A: a dataset directory or a file saved from bench --json")
    d.add_argument("b", help="run B, the same")
    d.add_argument("--metric", default="ops_per_sec", help="a column of the trials (default ops_per_sec)")
    d.add_argument("--json", action="store_true")
    d.add_argument("--plot", metavar="PNG", help="also draw B/A per configuration into this PNG")
    d.set_defaults(func=cmd_diff)

    u = sub.add_parser("upgrade", help="rewrite a dataset written by an older fsyncstudy (format 1) in "
                                       "today's meta.json shape; its rows are not touched")
    u.add_argument("dataset", nargs="+", help="dataset directories")
    u.set_defaults(func=cmd_upgrade)

    from .lab.cli import register as register_lab  # the lab's own commands; light, imports nothing heavy
    register_lab(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if getattr(args, "entries", None) is None and getattr(args, "duration", None) is None and args.command == "bench" \
            and not args.preset:
        args.entries = 10000
    unwind_on_sigterm()  # SIGTERM unwinds like Ctrl-C: trial logs are removed, a lab comes down
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # any input ends in one line and a nonzero exit; --debug shows where
        if args.debug:
            raise
        print(f"error: {one_line_error(e)}", file=sys.stderr)
        return 2 if isinstance(e, (ValueError, OSError)) else 1


def one_line_error(e: BaseException) -> str:
    """An exception as one bounded line: its message, or its type when the message says nothing."""
    text = " ".join(str(e).split())[:1000]
    if isinstance(e, (ValueError, OSError)) and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
