"""The command line: ``python -m fsyncstudy <command>``.  A thin shell over the library: each command
runs or loads, calls the library, and formats; every text formatter is in this package, one module per
command family, and returns text (so that it is tested without a subprocess):

- ``bench``: ``bench`` (and ``--preset etcd``), ``devices``
- ``peers``: ``peers``/``compare``, ``pgtest``
- ``sweep``: ``sweep`` (here or on a fleet), ``fleet status``, ``answer``
- ``crash``: ``crash``
- ``load``: ``load``, ``advise``
- ``realdb``: ``realdb``, ``realdb crash``
- ``report``: ``report``, ``diff``, ``check``, ``upgrade``
- ``diskcheck``: ``diskcheck serve|write|verify``, ``diskcheck --lab``
- ``output``: what they share (tables, the ``--json`` envelope, messages on stderr)

The ``lab`` commands are the lab's own (``fsyncstudy.lab.cli``).  Imports of pandas, papermill and the
lab stay inside the commands that need them, so a command starts without them.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .. import __version__, profiles
from ..log import unwind_on_sigterm
from ..strategies import PREALLOCATIONS, SYNC_METHODS, WRITE_MODES
from .bench import cmd_bench, cmd_devices
from .crash import cmd_crash
from .load import cmd_advise, cmd_load
from .peers import cmd_compare, cmd_pgtest
from .realdb import cmd_realdb
from .report import cmd_check, cmd_diff, cmd_report, cmd_upgrade
from .sweep import cmd_answer, cmd_fleet, cmd_sweep


# -- the parser -------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, whose refusal of a bad option is one line on stderr and exit status 2, as every other
    failure (no usage block: ``--help`` has it)."""

    def error(self, message: str):
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


def seconds(text: str) -> float:
    """An option's type: a duration, a finite number of seconds above 0 (0, negatives, nan and inf are
    refused while parsing, before anything is measured)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, got {text}")
    return v


def png_file(text: str) -> str:
    """An option's type: the file a figure is written to, exactly: a name ending in .png (matplotlib would
    add .png to one without, and write another file than the one named), not a directory, in a
    directory that exists; checked while parsing, before anything is measured."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory: name the PNG file to write, e.g. "
                                         f"{p / 'figure.png'}")
    if p.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{text} does not end in .png: name the PNG file to write")
    if not p.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: its directory {p.parent} does not exist (or is not a directory)")
    return text


def byte_count(text: str) -> int:
    """An option's type: a whole number of bytes, at least 0 (0: off)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of bytes, at least 0, got {text}")
    return v


def count(text: str) -> int:
    """An option's type: a whole number, at least 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, at least 0, got {text}")
    return v


def whole_seconds(text: str) -> int:
    """An option's type: a whole number of seconds, at least 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds, at least 1, got {text}")
    return v



def _reads(p: argparse.ArgumentParser, kind: str, func) -> None:
    """The options of a command that reads a dataset of ``kind`` and answers in text or JSON."""
    p.add_argument("--dataset", help=f"a {kind} dataset (default: the newest of this machine, else the committed one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=func)


def add_write_path_args(p, sync_method: str, write: str, bytes_per_sync: str, segment_bytes: str, recycle: str) -> None:
    """The write path's five options (their names fixed: scripts rely on them), with each command's help."""
    p.add_argument("--sync-method", default="fdatasync", choices=SYNC_METHODS, help=sync_method)
    p.add_argument("--write", dest="write_mode", default="per-entry", choices=WRITE_MODES, help=write)
    p.add_argument("--bytes-per-sync", type=byte_count, default=0, metavar="BYTES", help=bytes_per_sync)
    p.add_argument("--segment-bytes", type=byte_count, default=0, metavar="BYTES", help=segment_bytes)
    p.add_argument("--recycle", type=count, default=0, metavar="K", help=recycle)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m fsyncstudy",
                                 description="How much durability each fsync strategy costs, on your storage.")
    ap.add_argument("--debug", action="store_true", help="on an error, show the traceback (before the command)")
    ap.add_argument("--version", action="version", version=f"fsyncstudy {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="one trial per strategy, as a table or JSON")
    b.add_argument("--strategy", action="append", metavar="NAME",
                   help="always, none, batch_<N>ms or group_<N>ms; repeat the flag (default: the task's three)")
    b.add_argument("--entries", type=int, help="entries per trial (default 10000 unless --duration is given)")
    b.add_argument("--duration", type=seconds, metavar="SECONDS", help="run each trial at least this long")
    b.add_argument("--target", "--dir", dest="dir", metavar="DIR",
                   help="target directory or lab:NAME (default: $FSYNCSTUDY_DIR, else durable storage)")
    add_write_path_args(
        b,
        sync_method="how a write is made durable (default fdatasync): fdatasync or fsync after it; open_dsync, "
                        "open_sync: the log opened O_DSYNC/O_SYNC (always only); rwf_dsync: each write is "
                        "pwritev2(RWF_DSYNC), syncing only its range (Linux 4.7+; always and group_<N>ms); "
                        "direct_dsync: the log opened O_DIRECT|O_DSYNC, records packed into aligned 4096-byte "
                        "blocks, the tail block rewritten until full (always and group_<N>ms)",
        write="per-entry (default): a write() per entry; buffered (batch_<N>ms and none only): entries "
                        "go to a user-space buffer and are acknowledged there, written with one write() per flush "
                        "(batch) or per full 64 KiB buffer (none), so an acknowledged entry is lost at a process "
                        "kill too",
        bytes_per_sync="sync_file_range(SYNC_FILE_RANGE_WRITE) every BYTES bytes written, as RocksDB's "
                        "wal_bytes_per_sync: starts writeback, makes nothing durable (default 0: off; with "
                        "fdatasync or fsync)",
        segment_bytes="roll the log to a new segment file every BYTES bytes (at least 4096): created, "
                        "preallocated by --prealloc and its directory fsynced before the first acknowledgement "
                        "in it; the results give the rolls and the first entry's ack latency after each "
                        "(default 0: one file)",
        recycle="with --segment-bytes: once K+1 segments exist, each roll reuses the oldest (renamed and "
                        "overwritten) instead of creating one, as PostgreSQL and RocksDB's recycle_log_file_num "
                        "(default 0: always a new file)")
    b.add_argument("--prealloc", default="append", choices=PREALLOCATIONS,
                   help="how the log (each segment) is laid out before timing (default append)")
    b.add_argument("--payload-bytes", type=int, default=128, help="payload bytes per entry (default 128; "
                   "each record adds a 16-byte header)")
    b.add_argument("--writers", type=int, default=1, help="concurrent writers on the one log (default 1; group_<N>ms: "
                                                          "sharing syncs; always: each syncing its own entries)")
    b.add_argument("--json", action="store_true", help="print the full results as JSON")
    b.add_argument("--plot", metavar="FILE.png", type=png_file,
                   help="also draw each trial's latency histogram and timeline into this PNG file (exactly this "
                        "path: its name ends in .png and its directory exists)")
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
    add_write_path_args(
        c,
        sync_method="with --strategy: the writers' sync method, as bench's (default fdatasync); rwf_dsync and "
                        "direct_dsync acknowledge when their write returns (always) or the group's commit write does",
        write="with --strategy: buffered (batch_<N>ms, none) acknowledges an entry when it is appended to "
                        "a user-space buffer, so a process kill can lose it (default per-entry)",
        bytes_per_sync="with --strategy: sync_file_range every BYTES bytes, as bench's (it syncs nothing)",
        segment_bytes="with --strategy: segment files of BYTES bytes, read back in order at recovery",
        recycle="with --segment-bytes: reuse the oldest of K+1 segments (its stale records are not counted)")
    c.add_argument("--profile", default="standard", choices=list(profiles.PROFILES),
                   help="whose crash plan, its write paths' cells included (full's is standard's)")
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
    r.add_argument("--diskcheck-dataset", help="a flush-honesty check's dataset (`diskcheck`) for notebook 11 and the "
                                               "index (default: the newest there is, if any)")
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
    c.add_argument("--pairs", action="append", metavar="NAMES",
                   help="which pairs, comma separated: pair names (fio-dsync, ...) or default, write-paths "
                        "(fio-dsync and fio-direct-dsync), all (default: default)")
    c.add_argument("--entries", type=int, help="fio sync pairs: writes per side and round (default: ~0.5 s worth)")
    c.add_argument("--secs-per-test", type=whole_seconds, default=1, metavar="S",
                   help="pg_test_fsync's -s, and our seconds per method (default 1)")
    c.add_argument("--json", action="store_true", help="every pair with its per-round values, as JSON")
    c.set_defaults(func=cmd_compare)

    p = sub.add_parser("pgtest", help="pg_test_fsync's five sections, measured by fsyncstudy, with CIs")
    p.add_argument("--target", "--dir", dest="target", metavar="DIR",
                   help="target directory (default: $FSYNCSTUDY_DIR, else durable storage)")
    p.add_argument("--secs-per-test", type=seconds, default=5.0, metavar="S",
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
    add_write_path_args(
        lo,
        sync_method="one-off: the write path's sync method, as bench's (default fdatasync)",
        write="one-off: buffered (batch_<N>ms, none) acknowledges at the append (default per-entry)",
        bytes_per_sync="one-off: sync_file_range every BYTES bytes, as bench's (default 0: off)",
        segment_bytes="one-off: segment files of BYTES bytes, as bench's (default 0: one file)",
        recycle="one-off, with --segment-bytes: reuse the oldest of K+1 segments (default 0)")
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

    an = sub.add_parser("answer", help="per durable target and writer count, the fastest choice that loses nothing "
                                       "acknowledged, against always with the same writers, from a sweep's data")
    _reads(an, "sweep", cmd_answer)

    ad = sub.add_parser("advise", help="at your rate and loss budget, which strategy, from a load study's data")
    ad.add_argument("--rate", type=float, required=True, help="your entries per second")
    ad.add_argument("--loss-budget-ms", type=float, required=True,
                    help="how much acknowledged data a power cut may take (ms; 0: nothing)")
    ad.add_argument("--p99-budget-ms", type=float, help="and the p99 latency you can afford (ms)")
    ad.add_argument("--crash-dataset", help="the crash dataset whose power cuts stand beside the loss column "
                                            "(default: the newest of this machine, else the committed one)")
    _reads(ad, "load", cmd_advise)

    d = sub.add_parser("diff", help="two runs side by side (datasets or bench --json files): each side with its "
                                    "interval, the ratio and whether it is significant")
    d.add_argument("a", help="run A: a dataset directory or a file saved from bench --json")
    d.add_argument("b", help="run B, the same")
    d.add_argument("--metric", default="ops_per_sec", help="a column of the trials (default ops_per_sec)")
    d.add_argument("--json", action="store_true")
    d.add_argument("--plot", metavar="FILE.png", type=png_file,
                   help="also draw B/A per configuration into this PNG file (as bench --plot)")
    d.set_defaults(func=cmd_diff)

    ck = sub.add_parser("check", help="every problem of a dataset (its files, header, types, ranges, checksums, "
                                      "units counted twice) and what it is short of its plan; rc 1 if any problem")
    ck.add_argument("dataset", help="a dataset directory")
    ck.add_argument("--json", action="store_true")
    ck.set_defaults(func=cmd_check)

    u = sub.add_parser("upgrade", help="bring a dataset written by an older fsyncstudy (format 1 or 2) to today's "
                                       "format: meta.json in today's shape, each row checked and given its checksum")
    u.add_argument("dataset", nargs="+", help="dataset directories")
    u.set_defaults(func=cmd_upgrade)

    from .diskcheck import register as register_diskcheck
    register_diskcheck(sub, seconds)

    from ..lab.cli import register as register_lab  # the lab's own commands; light, imports nothing heavy
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
