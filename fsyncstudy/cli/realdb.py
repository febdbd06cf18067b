"""``realdb``: SQLite, PostgreSQL and Redis, each setting beside the strategy that predicts it (one
trial a side, or the study of a profile), and ``realdb crash``: power cuts under them."""
from __future__ import annotations

from pathlib import Path

from .. import catalog, profiles, study
from ..places import pick_directory
from ..targets import Target, describe, one_line
from .output import envelope, fmt, ms, print_json, ran_line, records, say, say_why, table

PRED_HEADER = ["setting", "target", "commits/s", "predicted by", "its ops/s", "db / prediction", "flushes/commit",
               "bytes/commit", "CPU us/commit"]


def cmd_realdb(args) -> int:
    from .. import analysis, realdb, realstudy
    if args.action == "crash":
        return cmd_realdb_crash(args)
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
        df, meta = realstudy.load(out)
        pred = analysis.realdb_predictions(df, meta["notes"].get("settings"))
        return done(args, s, "trials", realstudy.TABLE, pred, format_predictions(pred))
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
    print(format_side_by_side(rows, target, args.rate, args.duration))
    return 0


def done(args, s, what: str, table_name: str, settings, text: str, indent: int = 2, **more) -> int:
    """How a run of the study or of the cuts ends: the databases that could not run, then the
    ``settings`` frame as JSON (with ``more``) or ``text`` and what the run did, the errors of what
    failed; the exit status."""
    for db, why in s.missing.items():
        say(f"{db} skipped: {why}")
    if args.json:
        print_json({"fsyncstudy": envelope(), "dataset": str(s.out), "skipped": s.missing, "settings": records(settings),
                    **more}, indent=indent)
    else:
        print(text)
        print()
        print(ran_line(s, what, table_name))
    say_why(s.errors, what)
    return 1 if s.failed else 0


def format_predictions(pred) -> str:
    """The study's table: one row per setting and target of ``analysis.realdb_predictions``."""
    return table([[r.key, r.target_label, fmt(r.db_commits_per_sec, 0), r.strategy, fmt(r.predicted_per_sec, 0),
                   f"{r.ratio:.3f}" + (f" ({r.ratio_low:.3f}-{r.ratio_high:.3f})" if r.ratio_low == r.ratio_low else ""),
                   fmt(r.db_flushes_per_commit, 2), fmt(r.db_bytes_per_commit, 0), fmt(r.db_cpu_us_per_commit, 1)]
                  for r in pred.itertuples()], PRED_HEADER)


def format_side_by_side(rows: list[dict], target: Target, rate: float | None, duration_s: float) -> str:
    """``realdb --db``'s text: the target, the workload, one row per ``realstudy.side_by_side``."""
    from ..realdb import PAYLOAD_BYTES
    loop = (f"open loop at {rate:,.0f} commits/s (Poisson arrivals; latency from each arrival)" if rate
            else "closed loop")
    return "\n".join([
        f"target: {one_line(target)}",
        f"single-row commits of {PAYLOAD_BYTES} bytes, {loop}, {duration_s:g} s each side (one trial: "
        "--profile repeats them in rounds, with intervals)", "",
        table([[r["setting"], fmt(r["clients"], 0), fmt(r["db"]["commits_per_sec"], 0), ms(r["db"]["latency_us_p50"]),
                ms(r["db"]["latency_us_p99"]), fmt(r["db"]["device_flushes_per_commit"], 2),
                r["prediction"]["strategy"], fmt(r["prediction"]["commits_per_sec"], 0),
                "-" if r["ratio"] is None else f"{r['ratio']:.3f}"] for r in rows],
              ["setting", "clients", "commits/s", "p50 ms", "p99 ms", "flushes/commit", "predicted by", "its ops/s",
               "db / prediction"])])


# -- realdb crash ----------------------------------------------------------------------------------

def cmd_realdb_crash(args) -> int:
    from .. import analysis, realstudy
    try:
        s = study.run_realdb_crash(args.profile, args.db, args.setting, cuts=args.cuts, out=args.out, seed=args.seed,
                                   progress=not args.quiet and not args.json)
    except KeyboardInterrupt as e:
        say(f"\n{e.args[0] if e.args else 'interrupted'}")
        return 130
    cuts, _ = realstudy.load_crash(s.out)
    losses = analysis.realdb_losses(cuts)
    return done(args, s, "cuts", realstudy.CRASH_TABLE, losses, format_losses(losses), indent=1, cuts=records(cuts))


def format_losses(losses) -> str:
    """``realdb crash``'s table: one row per setting of ``analysis.realdb_losses``."""
    return table([[r.key, fmt(r.reopened, 0), fmt(r.acked, 0), fmt(r.lost_acked, 0), fmt(r.cuts_losing, 0),
                   fmt(r.window_median_ms, 1), fmt(r.window_max_ms, 1),
                   "none in time" if r.promise_ms != r.promise_ms else fmt(r.promise_ms, 0), r.verdict]
                  for r in losses.itertuples()],
                 ["setting", "cuts", "acked", "acked lost", "cuts losing", "window p50 ms", "max ms", "promise ms",
                  "verdict"])
