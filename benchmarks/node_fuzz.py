"""Fuzz the protocol node: seeded lines of every kind of bad input, interleaved with valid requests.

    python benchmarks/node_fuzz.py [--lines 30000] [--seed 1] [--dir DIR]

Each generated line knows what it should get back: nothing (not a message, or a message that
cannot be answered), or one reply of a given type / error code.  The node runs as a subprocess;
the run checks that it never dies, that stdout holds only JSON messages, that every answerable
request got exactly one reply with the right code, in order, and reports the node's peak memory
(its VmHWM).  ``tests/test_node_fuzz.py`` runs a few thousand lines of it in the suite.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Runs the node and prints its peak resident memory on stderr when stdin ends: VmHWM, which starts
#: anew at exec (ru_maxrss does not: it keeps the forking parent's peak).
WRAPPER = ("import sys; from fsyncstudy import node; code = node.main(sys.argv[1:]); "
           "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]; "
           "print(f'MAXRSS_KB {hwm}', file=sys.stderr); sys.exit(code)")

GOOD = ["none", "always", "batch_0ms", "batch_10ms", "group_0ms"]
NOT_A_NUMBER = ["x", None, True, False, [], {}, [1], "10", 2.5, -1, 0, 10**13, 10**400, -10**30, 1e300]
NAMES = ["always", "batch_10ms", "none", "group_0ms", "sometimes", "", "batch_", "batch_-1ms", "batch_1.5ms",
         "batch_10ms\n", "batch_\u0661\u0660ms", "group_60001ms", "batch_" + "9" * 5000 + "ms", "ALWAYS",
         "batch_10 ms", "none\u0000", "\ud83d\ude00", "group_" + "0" * 70 + "1ms"]


def _env(src="c1", dest="n1", **body) -> dict:
    return {"src": src, "dest": dest, "body": body}


def generate(n: int, seed: int = 1):
    """(line, expect) pairs; expect is None (no reply) or (msg_id, "type" or error code)."""
    rng = random.Random(seed)
    mid = 100
    init = json.dumps(_env("c0", "n1", type="init", msg_id=1, node_id="n1", node_ids=["n1"]))
    yield init, (1, "init_ok")
    for _ in range(n):
        mid += 1
        r = rng.random()
        if r < 0.05:      # a valid request, small enough to be quick
            body = {"type": "fsync_benchmark", "msg_id": mid, "entries": rng.randint(1, 30),
                    "strategies": rng.sample(GOOD, rng.randint(1, 3))}
            if rng.random() < 0.3 and "group_0ms" in body["strategies"] and len(body["strategies"]) == 1:
                body["writers"] = rng.randint(1, 4)
            yield json.dumps(_env(**body)), (mid, "fsync_benchmark_ok")
        elif r < 0.10:    # random bytes
            yield bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))).replace(b"\n", b" "), None
        elif r < 0.15:    # truncated JSON
            line = json.dumps(_env(type="fsync_benchmark", msg_id=mid, entries=5, strategies=["none"]))
            yield line[:rng.randint(1, len(line) - 1)], None
        elif r < 0.22:    # an unknown type
            yield json.dumps(_env(type=rng.choice(["frob", "echo", "FSYNC_BENCHMARK", "init_ok", "error"]),
                                  msg_id=mid)), (mid, 10)
        elif r < 0.30:    # a type that is not a string
            yield json.dumps(_env(type=rng.choice([1, None, [], {}, True]), msg_id=mid)), (mid, 12)
        elif r < 0.45:    # entries of every wrong kind
            yield json.dumps(_env(type="fsync_benchmark", msg_id=mid, entries=rng.choice(NOT_A_NUMBER),
                                  strategies=["none"])), (mid, 12)
        elif r < 0.58:    # strategies of every wrong kind
            s = rng.choice([None, "always", 7, [], [[]], [["always"]], [{"name": "always"}], ["none"] * 17,
                            [rng.choice(NAMES)] * rng.randint(1, 3), ["none"] * 10_000])
            ok = isinstance(s, list) and 1 <= len(s) <= 16 and all(x in ("always", "batch_10ms", "none", "group_0ms")
                                                                   for x in s)
            if ok:
                s = s + ["sometimes"]
            yield json.dumps(_env(type="fsync_benchmark", msg_id=mid, entries=3, strategies=s)), (mid, 12)
        elif r < 0.66:    # options of every wrong kind
            key = rng.choice(["writers", "payload_bytes", "sync_method", "prealloc"])
            v = rng.choice(NOT_A_NUMBER + ["O_DIRECT", "sparse"])
            if key in ("sync_method", "prealloc") and v in ("fdatasync", "append"):
                v = "nope"
            if key == "writers" and isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64:
                v = 65
            if key == "payload_bytes" and isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2**20:
                v = -1
            yield json.dumps(_env(type="fsync_benchmark", msg_id=mid, entries=3, strategies=["group_0ms"],
                                  **{key: v})), (mid, 12)
        elif r < 0.72:    # NaN / Infinity / 1e400 where a number goes
            bad = rng.choice(["NaN", "Infinity", "-Infinity", "1e400"])
            where = rng.choice(["msg_id", "entries", "src"])
            if where == "src":
                yield f'{{"src": {bad}, "dest": "n1", "body": {{"type": "init", "msg_id": {mid}}}}}', None
            elif where == "msg_id":
                yield f'{{"src": "c1", "dest": "n1", "body": {{"type": "init", "msg_id": {bad}}}}}', None
            else:
                line = (f'{{"src": "c1", "dest": "n1", "body": {{"type": "fsync_benchmark", "msg_id": {mid}, '
                        f'"entries": {bad}, "strategies": ["none"]}}}}')
                yield line, ((mid, 12) if bad == "1e400" else None)   # NaN/Infinity: not JSON at all
        elif r < 0.77:    # missing parts of the envelope
            env = _env(type="init", msg_id=mid, node_id="n1")
            del env[rng.choice(["src", "body"])]
            yield json.dumps(env), None
        elif r < 0.80:    # no msg_id: nobody to answer
            yield json.dumps(_env(type="fsync_benchmark", entries=3, strategies=["none"])), None
        elif r < 0.85:    # init with a bad node_id
            yield json.dumps(_env("c0", type="init", msg_id=mid, node_id=rng.choice([None, 3, "", []]))), (mid, 12)
        elif r < 0.90:    # a duplicate msg_id, answered again
            yield json.dumps(_env(type="frob", msg_id=101)), (101, 10)
        elif r < 0.93:    # not an object, or an object that is not a message
            yield json.dumps(rng.choice([[1, 2], "x", 3, None, {}, {"src": "c1", "body": 3}])), None
        elif r < 0.95:    # a line of megabytes
            yield json.dumps(_env(type="fsync_benchmark", msg_id=mid, entries=3,
                                  strategies=["x" * rng.randint(1 << 20, 3 << 20)])), None
        else:             # deep nesting
            depth = rng.choice([rng.randint(10, 500), rng.randint(2000, 5000)])
            yield ('{"src": "c1", "dest": "n1", "body": {"type": "fsync_benchmark", "msg_id": %d, "entries": 3, '
                   '"strategies": %s"none"%s}}' % (mid, "[" * depth, "]" * depth)), \
                ((mid, 12) if depth <= 500 else None)   # past Python's nesting limit it is not JSON to us


def run(lines: int, seed: int, directory: str, timeout_s: float = 600) -> dict:
    """Feed the node; return the counts and every mismatch."""
    pairs = list(generate(lines, seed))
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x, _ in pairs)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", WRAPPER, "--dir", directory], input=data, capture_output=True,
                       cwd=REPO, timeout=timeout_s)
    elapsed = time.monotonic() - t0
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    not_json, replies = [], []
    for line in out.splitlines():
        try:
            msg = json.loads(line)
            assert isinstance(msg, dict) and {"src", "dest", "body"} <= set(msg)
            replies.append(msg)
        except (ValueError, AssertionError):
            not_json.append(line[:200])
    expected = [e for _, e in pairs if e is not None]
    got = [(m["body"].get("in_reply_to"), m["body"]["type"] if m["body"]["type"] != "error" else m["body"]["code"])
           for m in replies]
    wrong = [(e, g) for e, g in zip(expected, got) if e != g]
    maxrss = [int(x.split()[1]) for x in err.splitlines() if x.startswith("MAXRSS_KB ")]
    return {"lines": len(pairs), "bytes": len(data), "requests_answerable": len(expected), "replies": len(replies),
            "exit": p.returncode, "not_json": not_json, "wrong": wrong[:20], "wrong_codes": len(wrong),
            "missing_or_extra": len(expected) - len(replies), "peak_rss_mb": maxrss[0] / 1024 if maxrss else None,
            "elapsed_s": elapsed, "tail": err[-2000:] if p.returncode else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=30_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=str(REPO / "build"))
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    r = run(args.lines, args.seed, args.dir, timeout_s=3600)
    print(json.dumps({k: v for k, v in r.items() if k != "tail"}, indent=1))
    ok = r["exit"] == 0 and not r["not_json"] and not r["wrong_codes"] and not r["missing_or_extra"]
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
