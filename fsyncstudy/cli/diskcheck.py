"""``diskcheck``: does the disk keep its promise.  ``serve`` on the observing machine, ``write`` on the
machine under test, ``verify`` after the pull; ``--lab --cuts K`` all of it on one machine, with the lab's
power switch for the plug, on lab:powercut (honest) and lab:liar (a lying cache)."""
from __future__ import annotations

import time
from pathlib import Path

from ..strategies import SYNC_METHODS
from .output import envelope, fmt, print_json, say, table

SESSION_HEADER = ["session", "strategy", "acked", "recovered", "lost", "log end", "newest lost ms",
                  "oldest lost ms"]


def register(sub, seconds) -> None:
    """The ``diskcheck`` command and its three parts on the main parser's subparsers."""
    dc = sub.add_parser("diskcheck", help="does the disk keep its promise: serve / write / verify across two "
                                          "machines and a pulled plug, or --lab on this one")
    dc.add_argument("--lab", action="store_true", help="run it all here: an observer, a writer per cut, the lab's "
                                                      "power switch, on lab:powercut and lab:liar (needs root)")
    dc.add_argument("--cuts", type=int, default=10, help="--lab: cuts per target (default 10)")
    dc.add_argument("--strategy", default="always", help="--lab: always or group_<N>ms (default always)")
    dc.add_argument("--seed", type=int, default=0, help="--lab: seeds the cut moments")
    dc.add_argument("--out", help="--lab: the acknowledgements' dataset (default runs/diskcheck-lab-<host>-<boot>-<time>)")
    dc.add_argument("--json", action="store_true")
    dc.set_defaults(func=cmd_diskcheck, diskcheck_command=None)
    parts = dc.add_subparsers(dest="diskcheck_command")

    s = parts.add_parser("serve", help="on the observing machine: record every acknowledgement durably")
    s.add_argument("--listen", default="127.0.0.1:7419", metavar="ADDR:PORT",
                   help="where to listen (default 127.0.0.1:7419; give the address the writer reaches)")
    s.add_argument("--out", required=True, metavar="DIR", help="the acknowledgements' dataset (resumed if it exists)")
    s.set_defaults(func=cmd_serve)

    w = parts.add_parser("write", help="on the machine under test: write, sync, report each sync; then pull the plug")
    w.add_argument("--to", required=True, metavar="ADDR:PORT", help="the observer (`diskcheck serve`)")
    w.add_argument("--target", required=True, metavar="DIR", help="the directory on the device under test")
    w.add_argument("--strategy", default="always", help="always or group_<N>ms (default always)")
    w.add_argument("--sync-method", default="fdatasync", choices=SYNC_METHODS)
    w.add_argument("--duration", type=seconds, metavar="S", help="stop after S seconds (default: until the plug)")
    w.add_argument("--session", help="the session's name (default <host>-<time>-<random>)")
    w.set_defaults(func=cmd_write)

    v = parts.add_parser("verify", help="after the reboot: is every acknowledged record there and intact")
    v.add_argument("--target", metavar="DIR", help="the directory `write` wrote to (without it: the verdicts a "
                                                    "`--lab` run recorded in --acks)")
    v.add_argument("--acks", required=True, metavar="DIR", help="the observer's dataset (`serve --out`)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)


def cmd_diskcheck(args) -> int:
    if not args.lab:
        say("error: diskcheck needs serve, write or verify, or --lab (see python -m fsyncstudy diskcheck --help)")
        return 2
    from .. import catalog, dataset
    from ..diskcheck import run_lab
    out = Path(args.out) if args.out else \
        catalog.runs_dir() / f"diskcheck-lab-{dataset.machine_tag()}-{time.strftime('%Y%m%dT%H%M%S')}"
    res = run_lab(args.cuts, out, seed=args.seed, strategy=args.strategy, log=None if args.json else say)
    if args.json:
        print_json({"fsyncstudy": envelope(), **res.as_dict()}, indent=1)
    else:
        print(format_lab(res))
    powercut, liar = res.verdicts.get("lab:powercut"), res.verdicts.get("lab:liar")
    # the check works when the honest device kept everything and the liar was caught
    return 0 if (powercut is None or not powercut.lost) and (liar is None or liar.lost) else 1


def cmd_serve(args) -> int:
    from ..diskcheck import Server
    server = Server(args.out, args.listen)
    say(f"diskcheck serve: listening on {server.address[0]}:{server.address[1]}, recording into {args.out} "
        "(Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        say("diskcheck serve: stopped")
    return 0


def cmd_write(args) -> int:
    from ..diskcheck import write
    say(f"diskcheck write: {args.strategy} into {args.target}, acknowledging to {args.to}; pull the plug while it runs")
    r = write(args.to, args.target, strategy=args.strategy, sync_method=args.sync_method, duration_s=args.duration,
              session=args.session)
    print(f"session {r.session}: {r.records:,} records written, {r.acked:,} acknowledged, log {r.log}")
    return 0


def cmd_verify(args) -> int:
    from ..diskcheck import recorded, verify
    if args.target is None:
        found = recorded(args.acks)
        if not found:
            say(f"error: {args.acks} holds no recorded verdicts (only a --lab run records them): give --target DIR")
            return 2
        if args.json:
            print_json({"fsyncstudy": envelope(), "verdicts": {t: v.as_dict() for t, v in found.items()}}, indent=1)
        else:
            print("\n\n".join(f"{t}:\n{format_verdict(v)}" for t, v in found.items()))
        return 0
    v = verify(args.target, args.acks)
    if args.json:
        print_json({"fsyncstudy": envelope(), **v.as_dict()}, indent=1)
    else:
        print(format_verdict(v))
    return 1 if v.lost else 0


def format_verdict(v) -> str:
    rows = [[c.session, c.strategy, fmt(c.acked), fmt(c.recovered), fmt(c.lost), c.log_end,
             fmt(c.newest_lost_age_ms), fmt(c.oldest_lost_age_ms)] for c in v.sessions]
    lines = [table(rows, SESSION_HEADER)] if rows else []
    if v.skipped:
        lines.append(f"({len(v.skipped)} session{'s' * (len(v.skipped) != 1)} of other targets left out)")
    lines.append(v.text)
    return "\n".join(lines)


def format_lab(res) -> str:
    out = []
    for target, v in res.verdicts.items():
        out += [f"{target}:", format_verdict(v), ""]
    out.append(f"acknowledgements recorded in {res.out}")
    return "\n".join(out)
