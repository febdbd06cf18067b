"""``peers`` (alias ``compare``: fio and pg_test_fsync side by side with us) and ``pgtest``
(pg_test_fsync's five sections, measured by fsyncstudy)."""
from __future__ import annotations

from ..peers import compare, select_pairs
from ..peertools import PG_SECTIONS, PeerFailed, PeerMissing
from ..pgtest import SECTION_NOTES, PgTestReport, run_suite
from ..places import pick_directory
from ..targets import describe, one_line
from .output import ci, envelope, num, print_json, say, table


def format_pairs(results) -> str:
    """``compare``'s table: one row per pair, then each pair's definition and notes."""
    rows = []
    for pr in results:
        s = pr.summary()
        nd = 1 if pr.latency == "write" else 0
        rows.append([pr.pair, ci(pr.ratio(), 3), num(s["ratio_median"], 3), ci(pr.ours_ops()), ci(pr.peer_ops()),
                     pr.latency, f"{num(s['ours_p50_us'], nd)} / {num(s['peer_p50_us'], nd)}",
                     f"{num(s['ours_p99_us'], nd)} / {num(s['peer_p99_us'], nd)}", pr.verdict() or "-"])
    out = [table(rows, ["pair", "ours/peer ratio [95% CI]", "median", "ours ops/sec [95% CI]", "peer ops/sec [95% CI]",
                        "latency", "p50 us ours / peer", "p99 us ours / peer", "aim"])]
    out.append("")
    for pr in results:
        size = f"{pr.entries:,} writes" + (f" (~{pr.seconds:g} s)" if pr.seconds else "")
        out.append(f"{pr.pair}: {pr.peer_test}  vs  {pr.ours}; {pr.block_bytes} B per write, {size} per side "
                   f"and round; aim: {pr.aim or 'none (for reference)'}")
        for n in pr.notes:    # an unavailable pair's first note says why
            out.append(f"    note: {n}")
    return "\n".join(out)


def cmd_compare(args) -> int:
    peers = [p for group in (args.peers or ["fio,pg_test_fsync"]) for p in group.split(",") if p]
    pairs = [p for group in (args.pairs or ["default"]) for p in group.split(",") if p]
    select_pairs(peers, pairs)      # a bad name is one line (rc 2) before a directory is picked
    directory = pick_directory(args.target, log=say)
    try:
        results = compare(directory, rounds=args.rounds, peers=peers, prealloc=args.prealloc,
                          payload_bytes=args.payload_bytes, entries=args.entries, secs_per_test=args.secs_per_test,
                          log=None if args.json else say, pairs=pairs)
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
