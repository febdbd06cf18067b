"""The commands over datasets: ``report`` (the study, then the notebooks rendered into HTML), ``diff``
(two runs side by side), ``check`` (every problem of a dataset) and ``upgrade`` (datasets written before
format 3)."""
from __future__ import annotations

from pathlib import Path

from .. import catalog, study
from ..intervals import Interval
from .output import ci, envelope, num, print_json, records, say, table


def cmd_report(args) -> int:
    from ..report import ReportIncomplete, build_report

    if args.dataset:
        datasets = {"dataset": args.dataset, "crash_dataset": args.crash_dataset, "peers_dataset": args.peers_dataset,
                    "load_dataset": args.load_dataset, "realdb_dataset": args.realdb_dataset,
                    "realdb_crash_dataset": args.realdb_crash_dataset}
    else:
        from ..dataset import git_state, provenance_text
        git = git_state()
        if git.get("dirty"):
            say(f"note: measuring from {provenance_text(git)}; each dataset records this, but a dataset to keep "
                "(data/) is measured from a clean commit")
        try:
            datasets = study.run_study(args.profile, targets=args.target, use_lab=not args.no_lab, seed=args.seed,
                                       progress=not args.quiet, log=say)
        except KeyboardInterrupt as e:
            say(f"\n{e.args[0] if e.args else 'interrupted'}")
            return 130
    if args.diskcheck_dataset:
        datasets["diskcheck_dataset"] = args.diskcheck_dataset
    datasets = {k: Path(v).resolve() if v else v for k, v in datasets.items()}
    try:
        index = build_report(out_dir=args.out, seed=args.seed, log=say, **datasets)
    except ReportIncomplete as e:
        # every page was rendered; the ones that stopped say where on the page, and here once each
        print(f"report: {e.index.resolve()} ({len(e.failures)} page(s) stopped before their end)")
        for f in e.failures:
            say(f"error: {f.line()}")
        return 1
    print(f"report: {index.resolve()}")
    from .. import analysis, sweep
    df, meta = sweep.load(Path(datasets["dataset"]).resolve())
    for line in analysis.recommendation_lines(analysis.answer(df)):
        print(f"- {line}")
    if catalog.shortfall(meta):
        print(f"- {catalog.shortfall(meta, 'the sweep dataset')}")
    if datasets["load_dataset"]:
        from .. import loadstudy
        crash = datasets.get("crash_dataset")
        cuts = catalog.crash_cuts(Path(crash).resolve() if crash else None)
        for line in analysis.at_rate_lines(loadstudy.load(Path(datasets["load_dataset"]).resolve())[0], cuts=cuts):
            print(f"- {line}")
    return 0


# -- diff: two runs side by side -------------------------------------------------------------------

def cmd_diff(args) -> int:
    from .. import analysis
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
        from .. import plots
        fig = plots.run_ratios(diff, f"{name_b} over {name_a}")
        fig.savefig(args.plot, dpi=110, bbox_inches="tight", format="png")
        say(f"figure: {args.plot}")
    if args.json:
        print_json({"fsyncstudy": envelope(), "a": str(args.a), "b": str(args.b),
                    "rows": records(diff)})
        return 0
    print(format_diff(diff, name_a, name_b))
    return 0


def format_diff(diff, name_a: str, name_b: str) -> str:
    """``diff``'s text: the two runs, the answer first (``analysis.diff_summary``: per target how many
    configurations moved, and the largest moves), then one row per target and configuration of
    ``analysis.diff_runs``, by target and the largest effects first."""
    from .. import analysis
    answer = ["- " + line.replace("**", "").replace("`", "") for line in analysis.diff_summary(diff)]
    diff = analysis.diff_sorted(diff)
    def n(count, planned) -> str:
        return analysis.n_text(int(count), None if planned is None or planned != planned else int(planned))
    rows = [[r.target_label, r.config_label,
             f"{num(r.mean_a)} [{num(r.low_a)}, {num(r.high_a)}] {n(r.n_a, getattr(r, 'planned_a', None))}",
             f"{num(r.mean_b)} [{num(r.low_b)}, {num(r.high_b)}] {n(r.n_b, getattr(r, 'planned_b', None))}",
             ci(Interval(r.ratio, r.ratio_low, r.ratio_high, r.ci_method), 3), r.verdict]
            for r in diff.itertuples()]
    metric = diff["metric"].iloc[0]
    return "\n".join([f"A: {name_a}", f"B: {name_b}", "", *answer, "",
                      table(rows, ["target", "configuration", f"A {metric} [95% CI]", f"B {metric} [95% CI]",
                                   "B/A [95% CI]", "verdict"]), "",
                      f"{diff['ci_method'].iloc[0]}; each side's interval: 95% t over its trials"])


# -- check: every problem of a dataset ---------------------------------------------------------------

def cmd_check(args) -> int:
    from ..dataset import check, read_meta
    try:
        kind = read_meta(args.dataset)["kind"]
    except Exception:   # check says what is wrong with it
        kind = None
    got = check(args.dataset, schema=catalog.SCHEMAS.get(kind))
    if args.json:
        print_json({"fsyncstudy": envelope(), "dataset": str(args.dataset), "ok": got.ok,
                    "kind": got.meta["kind"] if got.meta else None, "rows": len(got.rows),
                    "problems": [{"file": p.file, "line": p.line, "field": p.field, "text": p.text}
                                 for p in got.problems],
                    "short_of_plan": got.short, "torn_last_row": got.torn_tail})
    else:
        print(format_check(got))
    return 0 if got.ok else 1


def format_check(got) -> str:
    """``check``'s text: the verdict, then each problem on its line, then what is worth knowing."""
    from ..dataset import shortfall_text
    kind = f"a {got.meta['kind']} dataset, " if got.meta else ""
    head = (f"{got.path}: {kind}{len(got.rows):,} rows, no problem found" if got.ok else
            f"{got.path}: {kind}{len(got.problems)} problem{'s' * (len(got.problems) > 1)}")
    lines = [head, *(f"- {p}" for p in got.problems)]
    if got.torn_tail:
        lines.append("note: its last row is torn (a run stopped while writing it): no reader counts it, and a "
                     "resume cuts it off")
    short = shortfall_text(got.summary())
    if short:
        lines.append(f"note: {short}:")
        lines += [f"  {', '.join(f'{k} {v}' for k, v in s['configuration'].items())}: n = {s['n']} of "
                  f"{s['planned']} planned" for s in got.short[:20]]
        if len(got.short) > 20:
            lines.append(f"  ... and {len(got.short) - 20} more")
    return "\n".join(lines)


# -- upgrade ---------------------------------------------------------------------------------------

def cmd_upgrade(args) -> int:
    for d in args.dataset:
        meta = catalog.upgrade(d)
        print(f"{d}: now a format-{meta['format']} {meta['kind']} dataset (every row checked and given its checksum)")
    return 0
