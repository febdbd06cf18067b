"""``python -m fsyncstudy lab up|down|status|check|cut|reset|inject|unsynced``."""
from __future__ import annotations

import argparse
import json
import sys


def _targets(text: str | None):
    from .core import TARGET_NAMES
    return TARGET_NAMES if not text else [t.strip() for t in text.split(",") if t.strip()]


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    print()


def cmd_up(args) -> int:
    from ..targets import describe
    from .core import Lab
    lab = Lab(args.dir, targets=_targets(args.targets), size_mib=args.size_mib, persistent=True).up()
    up = lab.available()
    if not up:
        lab.down()  # nothing to leave up: no state file either
    if args.json:
        _print_json({"lab_dir": str(lab.lab_dir),
                     "targets": {t: describe(lab.directory(t)).as_dict() for t in up},
                     "skipped": lab.skipped()})
        return 0 if up else 1
    print(f"lab in {lab.lab_dir}")
    for t in up:
        print(f"  {t:18} {lab.directory(t)}\n  {'':18} {describe(lab.directory(t)).label}")
    for t, reason in lab.skipped().items():
        print(f"  {t:18} skipped: {reason}")
    if not up:
        print("error: no lab target came up (each one's reason is above)", file=sys.stderr)
        return 1
    print(f"tear down with: python -m fsyncstudy lab down --dir {lab.lab_dir}")
    return 0


def cmd_down(args) -> int:
    from .core import default_lab_dir, down
    found = down(args.dir, force=args.force)
    what = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in found.items())
    print(f"lab in {args.dir or default_lab_dir()} is down (found {what})")
    return 0


def cmd_status(args) -> int:
    from ..targets import describe
    from .control import status
    from .core import default_lab_dir, leftovers, load_state
    d = args.dir or default_lab_dir()
    state = load_state(d) or {"targets": {}, "skipped": {}}
    out = {"lab_dir": str(d), "targets": {}, "skipped": state.get("skipped", {}), "on_the_machine": leftovers(d)}
    from .control import is_mounted
    for name, entry in state["targets"].items():
        mp = entry["mountpoint"]
        row = {"mountpoint": mp, "mounted": is_mounted(mp)}
        if row["mounted"]:
            row["label"] = describe(mp).label
            if entry["kind"] == "fuse":
                try:
                    row["fuse"] = status(mp)
                except Exception as e:  # a dead daemon: say so, do not fail the listing
                    row["fuse"] = f"no answer: {e}"
        out["targets"][f"lab:{name}"] = row
    if args.json:
        _print_json(out)
        return 0
    print(f"lab in {d}: {'up' if out['targets'] else 'not up'}")
    for t, row in out["targets"].items():
        print(f"  {t:18} {'mounted' if row['mounted'] else 'NOT MOUNTED'} at {row['mountpoint']}")
        if row.get("label"):
            print(f"  {'':18} {row['label']}")
        if isinstance(row.get("fuse"), dict):
            f = row["fuse"]
            print(f"  {'':18} frozen={f['frozen']} faults={f['faults']} stats={f['stats']}")
    for t, reason in out["skipped"].items():
        print(f"  lab:{t:14} skipped: {reason}")
    left = out["on_the_machine"]
    if any(left.values()) and not out["targets"]:
        from .core import in_use
        busy = in_use(d)
        print(f"  left over: {left}; " + (f"in use: {busy}" if busy else f"run `python -m fsyncstudy lab down --dir {d}`"))
    return 0


def cmd_check(args) -> int:
    from .core import requirements
    reqs = requirements(_targets(args.targets))
    if args.json:
        _print_json(reqs)
        return 0
    for t, reason in reqs.items():
        print(f"  {t:18} {'ok' if reason is None else 'missing: ' + reason}")
    return 0


def cmd_cut(args) -> int:
    from . import cut
    _print_json(cut(args.target, tear=args.tear, lab_dir=args.dir))
    return 0


def cmd_reset(args) -> int:
    from . import reset
    r = reset(args.target, lab_dir=args.dir)
    print(f"{args.target}: powered on (frozen={r['frozen']}, cuts so far {r['stats']['cuts']})")
    return 0


def _off_or(conv):
    def parse(text: str):
        return None if text.lower() in ("off", "none", "no") else conv(text)
    return parse


def cmd_inject(args) -> int:
    from . import clear_faults, inject
    if args.clear:
        clear_faults(args.target, lab_dir=args.dir)
    given = {k: getattr(args, k) for k in ("fsync_eio", "fsync_eio_after", "enospc_after_bytes", "sync_delay_ms",
                                           "sync_delay_dist", "sync_delay_spread_ms", "liar_window_ms")
             if hasattr(args, k)}
    _print_json(inject(args.target, lab_dir=args.dir, **given))
    return 0


def cmd_unsynced(args) -> int:
    from . import unsynced
    _print_json(unsynced(args.target, lab_dir=args.dir))
    return 0


def _guard(func):
    def run(args) -> int:
        from .control import LabError
        try:
            return func(args)
        except LabError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return run


def register(subparsers) -> None:
    """Add the ``lab`` command to the main parser's subparsers."""
    lab = subparsers.add_parser("lab", help="the storage lab: loop filesystems, the power-cut FUSE filesystem, "
                                             "fault injection (needs root)")
    sub = lab.add_subparsers(dest="lab_command", required=True)

    def add(name, func, help_, target=False):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--dir", help="the lab directory (default: $FSYNCSTUDY_LAB_DIR, else /var/tmp/fsyncstudy-lab)")
        if target:
            p.add_argument("target", help="lab:powercut, lab:liar, lab:hdd-emulated, lab:ssd-emulated, or a path in "
                                          "the mount")
        p.set_defaults(func=_guard(func))
        return p

    p = add("up", cmd_up, "build and mount the lab's targets (they stay up until `lab down`)")
    p.add_argument("--targets", help="comma-separated (default: all): ext4,ext4-journal,xfs,btrfs,powercut,"
                                     "hdd-emulated,ssd-emulated; lab:liar only when named: liar")
    p.add_argument("--size-mib", type=int, default=512, help="size of each loop image (sparse; default 512)")
    p.add_argument("--json", action="store_true")
    p = add("down", cmd_down, "unmount and remove the lab (images, mounts, daemons), also what a crashed run "
                              "left behind; daemon logs stay in logs/")
    p.add_argument("--force", action="store_true", help="also a lab whose run is still going (that run then fails)")
    p = add("status", cmd_status, "what is up, and each FUSE target's faults and counters")
    p.add_argument("--json", action="store_true")
    p = add("check", cmd_check, "what this machine lacks for each target, without building anything")
    p.add_argument("--targets")
    p.add_argument("--json", action="store_true")
    p = add("cut", cmd_cut, "cut the power of a FUSE target: drop unsynced data, freeze until reset", True)
    p.add_argument("--tear", action="store_true", help="tear the last unsynced write at a page boundary")
    add("reset", cmd_reset, "power a cut FUSE target back on", True)
    add("unsynced", cmd_unsynced, "the files whose data a cut would drop now", True)
    p = add("inject", cmd_inject, "inject faults into a FUSE target (options left out stay as they are)", True)
    S = argparse.SUPPRESS
    p.add_argument("--fsync-eio", type=_off_or(str), default=S, metavar="once|always|off")
    p.add_argument("--fsync-eio-after", type=int, default=S, metavar="N", help="syncs that still succeed first")
    p.add_argument("--enospc-after-bytes", type=_off_or(int), default=S, metavar="N|off")
    p.add_argument("--sync-delay-ms", type=float, default=S)
    p.add_argument("--sync-delay-dist", default=S, choices=("fixed", "uniform", "normal", "exponential"))
    p.add_argument("--sync-delay-spread-ms", type=float, default=S)
    p.add_argument("--liar-window-ms", type=float, default=S, metavar="MS",
                   help="lab:liar only: how long an acknowledged sync stays in its volatile cache")
    p.add_argument("--clear", action="store_true", help="first clear the injected EIO and ENOSPC")
