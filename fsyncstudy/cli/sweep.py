"""``sweep`` (the study's grid on every target, here or on a Dask fleet) and ``fleet status``."""
from __future__ import annotations

from pathlib import Path

from .. import catalog, profiles
from ..sweep import KIND, TABLE
from .output import envelope, print_json, ran_line, say, say_why, table


def cmd_sweep(args) -> int:
    from ..sweep import run_sweep

    if args.scheduler:
        return cmd_fleet_sweep(args)
    if args.host:
        raise ValueError("--host names the hosts of a fleet: give --scheduler too")
    out = args.out or catalog.default_out(KIND, args.profile)
    say(f"study: {args.profile} profile into {out}")
    try:
        s = run_sweep(out, profile=profiles.profile(args.profile).sweep, targets=args.target, seed=args.seed,
                      progress=not args.quiet)
    except KeyboardInterrupt as e:
        say(f"\n{e.args[0] if e.args else 'interrupted'}")
        return 130
    for note in s.notes:
        say(f"note: {note}")
    print(ran_line(s, "trials", TABLE))
    say_why(s.errors, "trials")
    return 1 if s.failed else 0


def cmd_fleet_sweep(args) -> int:
    from .. import fleet

    prof = profiles.profile(args.profile).sweep
    out = Path(args.out) if args.out else catalog.default_out(catalog.FLEET, args.profile, scheduler=args.scheduler)
    say(f"fleet study: {args.profile} profile on the hosts of {args.scheduler} into {out}")
    try:
        s = fleet.run_fleet_sweep(out, prof, args.scheduler, targets=args.target, hosts=args.host, seed=args.seed,
                                  progress=not args.quiet, join_timeout_s=args.join_timeout)
    except KeyboardInterrupt as e:
        say(f"\n{e.args[0] if e.args else 'interrupted'}")
        return 130
    return fleet_done(s, "trials", TABLE)


def fleet_done(s, what: str, table_name: str) -> int:
    """A fleet run's notes, its one line per host, its errors; the exit status (1: a failure or a lost host)."""
    for note in s.notes:
        say(f"note: {note}")
    per_host = ", ".join(f"{h} {n}" for h, n in sorted(s.hosts.items()))
    print(ran_line(s, what, table_name, failed=f" ({s.failed} failed; {per_host or 'none'})"))
    say_why(s.errors, "trials")
    return 1 if s.failed or s.lost else 0


def cmd_fleet(args) -> int:
    from .. import fleet

    rows = fleet.status(args.scheduler, timeout_s=args.timeout)
    if args.json:
        print_json({"fsyncstudy": envelope(), "scheduler": args.scheduler, "hosts": rows}, indent=1)
    else:
        print(format_fleet_status(rows))
    return 1 if any(r["refused"] for r in rows) else 0


def format_fleet_status(rows: list[dict]) -> str:
    """``fleet status``: one row per host (``fleet.status``), "ok" where it may join."""
    return table([[r["host"], r["address"], r["hostname"], r["fsyncstudy"], r["python"], r["kernel"],
                   ", ".join(r["default_targets"]), r["refused"] or "ok"] for r in rows],
                 ["host", "address", "hostname", "fsyncstudy", "python", "kernel", "default targets", "joins"])


# -- answer: the one computed answer of a sweep ------------------------------------------------------

def cmd_answer(args) -> int:
    from .. import analysis, sweep
    path = catalog.existing(args.dataset, KIND) if args.dataset else catalog.newest(KIND)
    df, _ = sweep.load(path)
    rows = analysis.answer(df)
    if args.json:
        print_json({"fsyncstudy": envelope(), "dataset": str(path), "answers": analysis.answer_json(rows)})
        return 0
    print(format_answer(path.name, analysis.answer_lines(rows)))
    return 0


def format_answer(dataset_name: str, sentences: list[str]) -> str:
    """``answer``'s text: one line per durable target and writer count (``analysis.answer_lines``)."""
    lines = [f"from the sweep {dataset_name}: per durable target and writer count, the fastest choice that "
             "loses nothing acknowledged", ""]
    return "\n".join(lines + ["- " + s.replace("**", "").replace("`", "") for s in sentences])
