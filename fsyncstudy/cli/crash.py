"""``crash``: writers cut at random moments (power cuts on the lab's filesystem, process kills), and the
acknowledged entries each strategy lost."""
from __future__ import annotations

from pathlib import Path

from .. import catalog, profiles
from ..crash import KIND, TABLE
from .output import envelope, fmt, print_json, ran_line, records, say, say_why, table

CRASH_HEADER = ["kind", "strategy", "path", "cuts", "acked", "acked lost", "cuts losing", "zero-loss bound",
                "loss window p50 ms", "max ms", "torn", "corrupt", "errors"]


def cmd_crash(args) -> int:
    from .. import analysis
    from ..crash import CutPath, load, run_crash

    kinds = tuple(dict.fromkeys(args.kind or ["power", "process"]))
    path = CutPath(args.sync_method, args.write_mode, args.bytes_per_sync, args.segment_bytes, args.recycle)
    out = Path(args.out) if args.out else catalog.default_out(KIND, args.profile, kinds=kinds)
    try:
        s = run_crash(out, profiles.profile(args.profile).crash, kinds=kinds,
                      strategies=args.strategy, cuts=args.cuts, seed=args.seed, directory=args.dir,
                      progress=not args.quiet and not args.json, path=path)
    except KeyboardInterrupt as e:
        say(f"\n{e.args[0] if e.args else 'interrupted'}")
        return 130
    df, _ = load(out)
    if args.json:
        print_json({"fsyncstudy": envelope(), "dataset": str(out), "cuts": records(df)},
                   indent=1)
    else:
        # a cut that failed was cut again: its row is history, counted here and in no other column
        errors = {key: int((g["error"] != "").sum()) for key, g in df.groupby(["kind", "strategy", "path"], sort=False)}
        print(format_crash(analysis.crash_table(df), errors))
        print()
        print(ran_line(s, "cuts", TABLE, failed=""))
    for line in s.lost_by_durable:
        say(f"BUG: {line}")
    say_why(s.errors, "cuts")
    return 1 if s.lost_by_durable or s.failed else 0


def format_crash(cuts_table, errors: dict[tuple, int]) -> str:
    """``crash``'s table: ``analysis.crash_table``'s rows (the cuts that counted; the loss window's median
    and max over them, 0 for a cut that lost nothing; where no cut lost, the 95% upper bound on the share
    of cuts that would), each with ``errors``, the cuts that failed, for every (kind, strategy, path) in
    ``errors``, in its order (a cell all of whose cuts failed has a row too; a key of (kind, strategy)
    is the plain path's)."""
    counted = {(r.kind, r.strategy, getattr(r, "path", "")): r for r in cuts_table.itertuples()}
    rows = []
    for key, failed in errors.items():
        kind, strategy, path = (*key, "")[:3]
        r = counted.get((kind, strategy, path))
        label = path or "plain"
        if r is None:
            rows.append([kind, strategy, label, "0", "0", "0", "0", "-", "-", "-", "0", "0", fmt(failed)])
            continue
        bound = f"{r.cuts_losing_upper95:.1%} of cuts" if r.cuts_losing == 0 else "-"
        rows.append([kind, strategy, label, fmt(r.cuts), fmt(r.acked), fmt(r.lost_acked), fmt(r.cuts_losing), bound,
                     fmt(r.window_median_ms, 2), fmt(r.window_max_ms, 2), fmt(r.torn), fmt(r.corrupt), fmt(failed)])
    return "\n".join([table(rows, CRASH_HEADER),
                      "(zero-loss bound: the 95% upper bound on the share of cuts that lose, where none did; "
                      "errors: cuts that failed, run again on resume; they count in no other column)"])
