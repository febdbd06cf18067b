"""The command line: ``python -m fsyncstudy <command>``.  A thin shell over the library."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .log import unwind_on_sigterm
from .strategies import PREALLOCATIONS, SYNC_METHODS


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


def cmd_bench(args) -> int:
    if args.preset:
        from .etcd import cmd_bench_preset
        return cmd_bench_preset(args)
    from .targets import describe, pick_directory
    from .trial import run_trial

    directory = pick_directory(args.dir, log=lambda m: print(m, file=sys.stderr))
    target = describe(directory)
    if target.durability == "volatile":
        print(f"warning: {directory} is {target.fstype}: {target.reason}", file=sys.stderr)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.strategy or ["always", "batch_10ms", "none"]:
            results.append(run_trial(name, entries=args.entries, duration_s=args.duration, directory=directory,
                                     sync_method=args.sync_method, prealloc=args.prealloc,
                                     payload_bytes=args.payload_bytes, writers=args.writers, target=target))
    if args.json:
        json.dump([r.as_dict() for r in results], sys.stdout, indent=2)
        print()
        return 0
    print(f"target: {target.path} ({target.fstype} on {target.block_device or target.source}), "
          f"{target.durability}: {target.reason}")
    print(f"sync method {args.sync_method}, preallocation {args.prealloc}, payload {args.payload_bytes} B, "
          f"one trial per strategy (the sweep repeats trials and gives confidence intervals)\n")
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
    from .targets import discover

    targets = discover()
    if args.json:
        json.dump([t.as_dict() for t in targets], sys.stdout, indent=2)
        print()
        return 0
    rows = [[t.mount_point, t.fstype, t.block_device or t.source, _fmt(t.rotational), t.write_cache or "-",
             t.model or "-", _fmt(t.free_bytes / 2**30 if t.free_bytes is not None else None), t.durability]
            for t in targets]
    print(table(rows, ["mount point", "fs", "device", "rotational", "write cache", "model", "free GiB", "verdict"]))
    for t in targets:
        print(f"  {t.mount_point}: {t.reason}")
    return 0


def cmd_sweep(args) -> int:
    from .sweep import default_out, run_sweep

    out = args.out or default_out(args.profile)
    print(f"study: {args.profile} profile into {out}", file=sys.stderr)
    try:
        s = run_sweep(out, profile=args.profile, targets=args.target, seed=args.seed, progress=not args.quiet)
    except KeyboardInterrupt as e:
        print(f"\n{e.args[0] if e.args else 'interrupted'}", file=sys.stderr)
        return 130
    for note in s.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{s.ran} trials run ({s.failed} failed), {s.skipped} already done, in {s.elapsed_s:.0f} s: "
          f"{s.out / 'trials.csv'}")
    return 1 if s.failed else 0


def cmd_report(args) -> int:
    from .report import build_report, run_study

    log = lambda m: print(m, file=sys.stderr)
    if args.dataset:
        dataset, crash, peers = args.dataset, args.crash_dataset, args.peers_dataset  # measure nothing
    else:
        try:
            dataset, crash, peers = run_study(args.profile, targets=args.target, use_lab=not args.no_lab, seed=args.seed,
                                       progress=not args.quiet, log=log)
        except KeyboardInterrupt as e:
            log(f"\n{e.args[0] if e.args else 'interrupted'}")
            return 130
    index = build_report(dataset, out_dir=args.out, crash_dataset=crash, peers_dataset=peers, seed=args.seed, log=log)
    print(f"report: {index.resolve()}")
    return 0


def cmd_crash(args) -> int:

    from .analysis import default_crash_out
    from .crash import load, run_crash
    from .sweep import DATA

    kinds = tuple(args.kind or ["power", "process"])
    out = Path(args.out) if args.out else default_crash_out(args.profile, kinds, DATA)
    try:
        s = run_crash(out, kinds=kinds, profile=args.profile,
                      strategies=args.strategy, cuts=args.cuts, seed=args.seed, directory=args.dir,
                      progress=not args.quiet and not args.json)
    except KeyboardInterrupt as e:
        print(f"\n{e.args[0] if e.args else 'interrupted'}", file=sys.stderr)
        return 130
    df, _ = load(out)
    if args.json:
        json.dump({"dataset": str(out), "cuts": json.loads(df.to_json(orient="records"))}, sys.stdout, indent=1)
        print()
    else:
        g = df.groupby(["kind", "strategy"], sort=False)
        rows = [[kind, strat, _fmt(len(x)), _fmt(int(x["acked"].sum())), _fmt(int(x["lost_acked"].sum())),
                 _fmt(int((x["lost_acked"] > 0).sum())), _fmt(x["oldest_lost_age_ms"].median(), 2),
                 _fmt(x["oldest_lost_age_ms"].max(), 2), _fmt(int(x["torn"].sum())), _fmt(int(x["corrupt"].sum())),
                 _fmt(int((x["error"] != "").sum()))]
                for (kind, strat), x in g]
        print(table(rows, ["kind", "strategy", "cuts", "acked", "acked lost", "cuts losing", "loss window p50 ms",
                           "max ms", "torn", "corrupt", "errors"]))
        print(f"\n{s.ran} cuts run, {s.skipped} already done, in {s.elapsed_s:.0f} s: {out / 'cuts.csv'}")
    for line in s.lost_by_durable:
        print(f"BUG: {line}", file=sys.stderr)
    return 1 if s.lost_by_durable else 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fsyncstudy",
                                 description="How much durability each fsync strategy costs, on your storage.")
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="one trial per strategy, as a table or JSON")
    b.add_argument("--strategy", action="append", metavar="NAME",
                   help="always, none, batch_<N>ms or group_<N>ms; repeat the flag (default: the task's three)")
    b.add_argument("--entries", type=int, help="entries per trial (default 10000 unless --duration is given)")
    b.add_argument("--duration", type=float, metavar="SECONDS", help="run each trial at least this long")
    b.add_argument("--dir", help="target directory (default: $FSYNCSTUDY_DIR, else durable storage)")
    b.add_argument("--sync-method", default="fdatasync", choices=SYNC_METHODS)
    b.add_argument("--prealloc", default="append", choices=PREALLOCATIONS)
    b.add_argument("--payload-bytes", type=int, default=128)
    b.add_argument("--writers", type=int, default=1, help="concurrent writers (group_<N>ms only)")
    b.add_argument("--json", action="store_true", help="print the full results as JSON")
    b.add_argument("--preset", choices=["etcd"], help="etcd: fio's etcd disk check (2300-byte writes, fdatasync "
                   "after each, 22 MiB), its p99 against 10 ms; --json prints fio-shaped JSON")
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("devices", help="the mounted filesystems you could measure, with a durability verdict")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_devices)
    s = sub.add_parser("sweep", help="the study: every configuration on every target, repeated, resumable")
    s.add_argument("--profile", default="standard", choices=["quick", "standard", "full"])
    s.add_argument("--target", action="append", metavar="DIR",
                   help="a directory or lab:NAME; repeat the flag (default: the filesystem of data/ and /dev/shm)")
    s.add_argument("--out", help="dataset directory (default: data/<profile>-<host>-<boot id>)")
    s.add_argument("--seed", type=int, default=0, help="seed of the randomized round order (recorded)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sweep)

    c = sub.add_parser("crash", help="cut writers at random moments and count the acknowledged entries lost")
    c.add_argument("--kind", action="append", choices=["power", "process"],
                   help="power (the lab's power-cut filesystem) or process (SIGKILL); repeat (default: both)")
    c.add_argument("--strategy", action="append", metavar="NAME", help="repeat (default: the profile's)")
    c.add_argument("--cuts", type=int, help="cuts per strategy (default: the profile's)")
    c.add_argument("--profile", default="standard", choices=["quick", "standard"])
    c.add_argument("--dir", help="where process-crash writers write (default: durable storage, as bench)")
    c.add_argument("--out", help="dataset directory (default: data/crash-<profile>-<kinds>-<host>-<boot id>)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true", help="print every cut as JSON")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_crash)

    r = sub.add_parser("report", help="run (or resume) the study, then render the notebooks into reports/")
    r.add_argument("--profile", default="standard", choices=["quick", "standard", "full"])
    r.add_argument("--target", action="append", metavar="DIR", help="as for sweep")
    r.add_argument("--dataset", help="render this existing dataset instead of measuring")
    r.add_argument("--crash-dataset", help="with --dataset: the crash dataset for notebooks 03 and 04")
    r.add_argument("--peers-dataset", help="with --dataset: the comparison dataset for notebook 05")
    r.add_argument("--no-lab", action="store_true", help="leave the storage lab out of the study")
    r.add_argument("--out", default="reports", help="where the HTML goes (default: reports/)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_report)

    from .lab.cli import register as register_lab  # the lab's own module; light, imports nothing heavy
    register_lab(sub)
    from . import peers  # compare, pgtest
    peers.register(sub)
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
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
