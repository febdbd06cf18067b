"""``load`` (open-loop trials: entries arrive at a rate; or the load study of a profile) and ``advise``
(which strategy at your rate and loss budget, from a load study)."""
from __future__ import annotations

import warnings
from pathlib import Path

from .. import catalog, profiles
from ..loadstudy import KIND, TABLE
from ..places import pick_directory
from ..strategies import parse
from ..targets import Target, describe, one_line
from ..trial import PATH_COLUMNS, path_label
from .output import envelope, fmt, ms, print_json, ran_line, records, say, say_why, table


def rates(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--rate takes entries per second, comma separated (e.g. 500,2000), got {text!r}") from None
    if not out:
        raise ValueError("--rate needs at least one rate")
    return out


def cmd_load(args) -> int:
    from .. import loadstudy
    from ..load import run_load_trial
    if args.profile:
        path_flags = [f for f, given in (("--sync-method", args.sync_method != "fdatasync"),
                                          ("--write", args.write_mode != "per-entry"),
                                          ("--bytes-per-sync", args.bytes_per_sync),
                                          ("--segment-bytes", args.segment_bytes), ("--recycle", args.recycle)) if given]
        if args.strategy or args.rate or path_flags:
            raise ValueError("--profile runs the load study's own plan (its write paths included): drop "
                             + ", ".join(["--strategy", "--rate", *path_flags]))
        plan = profiles.profile(args.profile).load
        if args.scheduler:
            from .. import fleet
            from .sweep import fleet_done
            out = (Path(args.out) if args.out else
                   catalog.default_out(catalog.FLEET_LOAD, args.profile, scheduler=args.scheduler))
            say(f"fleet load study: {plan.name} profile on the hosts of {args.scheduler} into {out}")
            s = fleet.run_fleet_load(out, plan, args.scheduler, targets=args.target, hosts=args.host, seed=args.seed,
                                     progress=not args.quiet)
            return fleet_done(s, "load trials", TABLE)
        out = Path(args.out) if args.out else catalog.default_out(KIND, args.profile)
        targets = args.target or [str(catalog.runs_dir())]
        say(f"load study: {plan.name} profile ({len(plan.rates)} rates x {len(plan.strategies)} strategies x "
            f"{len(targets)} targets x {plan.trials + plan.warmup_rounds} rounds of {plan.duration_s:g} s) into {out}")
        s = loadstudy.run_load_study(out, plan, targets, seed=args.seed, progress=not args.quiet)
        print(ran_line(s, "load trials", TABLE))
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
            for rate in rates(",".join(args.rate)):
                results.append(run_load_trial(name, rate, duration_s=args.duration, directory=directory,
                                              arrivals=args.arrivals, clients=args.clients if parse(name).kind == "group"
                                              else 1, seed=args.seed, work_us=args.work_us, target=target,
                                              sync_method=args.sync_method, write_mode=args.write_mode,
                                              bytes_per_sync=args.bytes_per_sync, segment_bytes=args.segment_bytes,
                                              recycle=args.recycle))
    if args.json:
        print_json({"fsyncstudy": envelope(target), "results": [r.as_dict() for r in results]})
        return 0
    print(format_load(results, target, args.arrivals, args.duration))
    return 0


def format_load(results, target: Target, arrivals: str, duration_s: float) -> str:
    """``load``'s one-off text: the target, how entries arrived, one row per ``LoadResult``, and what
    SATURATED means when a row says it."""
    def name(r) -> str:
        path = path_label(*(getattr(r, col, plain) for col, plain in PATH_COLUMNS.items()))   # "" for the plain path
        return r.strategy + (f" x{r.clients}" if r.clients > 1 else "") + (f" [{path}]" if path else "")
    rows = [[name(r), fmt(r.offered_rate, 0), fmt(r.achieved_rate, 0),
             "SATURATED" if r.saturated else "keeps up", ms(r.latency_us_p50), ms(r.latency_us_p99),
             ms(r.latency_us_p999), ms(r.service_us_p99), fmt(r.exposure_ms_max, 2), fmt(r.lateness_us_p99, 1)]
            for r in results]
    lines = [f"target: {one_line(target)}",
             f"{arrivals} arrivals for {duration_s:g} s; latency is timed from each entry's intended arrival, "
             "service from its write() (one trial each: the load study repeats them)", "",
             table(rows, ["strategy", "offered/s", "achieved/s", "", "latency p50 ms", "p99 ms", "p99.9 ms",
                          "service p99 ms", "exposure max ms", "lateness p99 us"])]
    if any(r.saturated for r in results):
        lines += ["", "SATURATED: the target did not keep up; those latencies are lower bounds (entries still queued "
                      "count with their wait so far)."]
    return "\n".join(lines)


# -- advise ----------------------------------------------------------------------------------------

def cmd_advise(args) -> int:
    from .. import analysis, loadstudy
    path = catalog.existing(args.dataset, KIND) if args.dataset else catalog.newest(KIND)
    df, meta = loadstudy.load(path)
    crash_path, cuts = catalog.crash_evidence(args.crash_dataset)
    adv = analysis.advise(df, args.rate, args.loss_budget_ms, args.p99_budget_ms, cuts=cuts)
    short = catalog.shortfall(meta)
    if args.json:
        print_json({"fsyncstudy": envelope(), "dataset": str(path),
                    "crash_dataset": None if crash_path is None else str(crash_path), "rate": args.rate,
                    "loss_budget_ms": args.loss_budget_ms, "p99_budget_ms": args.p99_budget_ms,
                    "short_of_plan": meta["checked"]["short"], "candidates": records(adv)})
        return 0
    sentences = analysis.advice_lines(adv, args.rate, args.loss_budget_ms) + ([short] if short else [])
    print(format_advice(path.name, sentences, adv))
    return 0


def format_advice(dataset_name: str, sentences: list[str], adv) -> str:
    """``advise``'s text: the advice's ``sentences`` (``analysis.advice_lines``) as plain text, then the
    candidates of ``adv`` (``analysis.advise``), the advised one marked."""
    lines = [f"from the load study {dataset_name}:", ""]
    lines += ["- " + s.replace("**", "").replace("`", "") for s in sentences]
    rows = [[r.target_label, r.config_label, f"{r.measured_at:,.0f}", f"{r.p99_ms:.2f} [{r.p99_ms_low:.2f}, {r.p99_ms_high:.2f}]",
             "-" if r.window_ms != r.window_ms or r.window_ms is None else f"{r.window_ms:.1f}", r.verdict,
             "<- advised" if r.advised else ""]
            for r in adv.dropna(subset=["config"]).itertuples()]
    if rows:
        lines += ["", table(rows, ["target", "strategy", "measured at /s", "p99 ms [95% CI]", "window ms", "verdict",
                                   ""])]
    return "\n".join(lines)
