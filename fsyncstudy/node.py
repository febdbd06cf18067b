"""The protocol node: ``python -m fsyncstudy.node [--dir DIR]``.

Maelstrom convention: one JSON message a line on stdin, replies on stdout, logs on
stderr; it reads until stdin closes and exits 0.  It answers ``init`` and
``fsync_benchmark``; anything else gets error 10.  Standard library only: it calls
``fsyncstudy.trial`` and contains no measuring of its own.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from enum import IntEnum
from typing import Any, TextIO

from .log import HEADER, remove_stale, unwind_on_sigterm
from .places import pick_directory
from .strategies import StrategyError, parse
from .targets import describe, one_line
from .trial import DEFAULT_PAYLOAD_BYTES, SPACE_MARGIN_BYTES, TargetFull, TrialResult, median_trial, run_rounds, \
    space_needed

#: Measured fields copied from the median trial into a result, beside the task's four.
MEASURED = (
    "entries", "elapsed_s", "syncs", "sync_method", "prealloc",
    "ack_latency_us_p50", "ack_latency_us_p99", "ack_latency_us_max",
    "sync_latency_us_p50", "sync_latency_us_p99", "sync_latency_us_max",
    "flush_interval_ms_mean", "flush_interval_ms_p99",
    "exposure_ms_p99", "exposure_ms_max", "synced", "writeback_expire_s", "writeback_interval_s",
)


class Error(IntEnum):
    """Maelstrom's error codes that this node uses."""

    NOT_SUPPORTED = 10
    MALFORMED_REQUEST = 12
    CRASH = 13


class RPCError(Exception):
    def __init__(self, code: Error, text: str):
        super().__init__(text)
        self.code, self.text = code, text


def _reject_constant(name: str):
    # NaN and Infinity are not JSON (Python's parser accepts them): such a line is not a message
    raise ValueError(f"{name} is not valid JSON")


def _positive_int(body: dict, key: str, default: Any = None) -> int:
    v = body.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        got = "missing" if key not in body else f"{v!r}"
        raise RPCError(Error.MALFORMED_REQUEST, f"{key} must be a positive integer; got {got}")
    return v


class Node:
    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None,
                 directory: str | os.PathLike | None = None):
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.node_id: str | None = None
        self.next_msg_id = 0
        self._explicit_dir = directory
        self._dir = None
        self.handlers = {"init": self.handle_init, "fsync_benchmark": self.handle_fsync_benchmark}

    # -- plumbing -------------------------------------------------------------------------------
    def log(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)

    def send(self, dest: Any, body: dict) -> None:
        body["msg_id"] = self.next_msg_id
        line = json.dumps({"src": self.node_id, "dest": dest, "body": body}, allow_nan=False)
        self.next_msg_id += 1
        self.stdout.write(line + "\n")
        self.stdout.flush()

    def reply(self, req: dict, body: dict) -> None:
        self.send(req["src"], {"type": body.pop("type"), "in_reply_to": req["body"]["msg_id"], **body})

    def error(self, req: dict, code: Error, text: str) -> None:
        self.reply(req, {"type": "error", "code": int(code), "text": text})

    def directory(self):
        if self._dir is None:
            self._dir = pick_directory(self._explicit_dir, log=self.log)
            t = describe(self._dir)
            self.log(f"writing trial logs in {one_line(t)}")
            stale = remove_stale(self._dir)
            if stale:
                self.log(f"removed {len(stale)} trial log(s) left by processes that no longer run: {', '.join(stale)}")
        return self._dir

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> int:
        for raw in self.stdin:
            try:
                self.handle_line(raw)
            except Exception as e:  # a last guard: one line never ends the node
                self.log(f"dropped a line after an unexpected {type(e).__name__}: {e}")
        return 0

    def handle_line(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        line = raw.strip()
        if not line:
            return
        try:
            msg = json.loads(line, parse_constant=_reject_constant)
        except ValueError as e:
            self.log(f"skipping a line that is not JSON ({e}): {line[:200]!r}")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("body"), dict) or "src" not in msg:
            self.log(f"skipping a line that is not a message with src and body: {line[:200]!r}")
            return
        if self.node_id is None and isinstance(msg.get("dest"), str) and msg["body"].get("type") != "init":
            self.node_id = msg["dest"]  # not initialised yet: answer as whom we were addressed
        self.handle(msg)

    def handle(self, msg: dict) -> None:
        body = msg["body"]
        kind = body.get("type")
        has_id = "msg_id" in body
        try:
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                if not isinstance(kind, str):
                    raise RPCError(Error.MALFORMED_REQUEST, f"message body has no string type: {json.dumps(body)[:200]}")
                raise RPCError(Error.NOT_SUPPORTED, f"message type {kind!r} is not supported; "
                                                    "this node answers init and fsync_benchmark")
            if not has_id:
                self.log(f"skipping a {kind} request without msg_id: there is nobody to answer")
                return
            handler(msg)
        except RPCError as e:
            self.log(f"error {int(e.code)} for {kind!r}: {e.text}")
            if has_id:
                self.error(msg, e.code, e.text)
        except Exception as e:  # never die on one bad request
            self.log(f"crash while handling {kind!r}: {type(e).__name__}: {e}")
            if has_id:
                self.error(msg, Error.CRASH, f"{type(e).__name__}: {e}")

    # -- handlers -------------------------------------------------------------------------------
    def handle_init(self, msg: dict) -> None:
        node_id = msg["body"].get("node_id")
        if not isinstance(node_id, str) or not node_id:
            raise RPCError(Error.MALFORMED_REQUEST, f"init needs a node_id string; got {node_id!r}")
        self.node_id = node_id
        self.reply(msg, {"type": "init_ok"})

    def handle_fsync_benchmark(self, msg: dict) -> None:
        body = msg["body"]
        entries = _positive_int(body, "entries")
        names = body.get("strategies")
        if not isinstance(names, list) or not names:
            raise RPCError(Error.MALFORMED_REQUEST, f"strategies must be a non-empty list of names; got {names!r}")
        try:
            strategies = [parse(n) for n in names]
        except StrategyError as e:
            raise RPCError(Error.MALFORMED_REQUEST, str(e)) from None
        options = {}
        for key, kind in (("sync_method", str), ("prealloc", str), ("payload_bytes", int), ("writers", int)):
            if key in body:
                v = body[key]
                if not isinstance(v, kind) or isinstance(v, bool):
                    raise RPCError(Error.MALFORMED_REQUEST, f"{key} must be a {kind.__name__}; got {v!r}")
                options[key] = v
        payload = options.get("payload_bytes", DEFAULT_PAYLOAD_BYTES)
        directory = self.directory()
        free = os.statvfs(directory)
        free_bytes = free.f_bavail * free.f_frsize
        need = space_needed(entries, HEADER.size + payload, options.get("prealloc", "append"),
                            entries * (HEADER.size + payload))
        if need + SPACE_MARGIN_BYTES > free_bytes:
            raise RPCError(Error.MALFORMED_REQUEST,
                           f"{entries} entries need {need / 2**20:.1f} MiB (plus a {SPACE_MARGIN_BYTES >> 20} MiB "
                           f"margin) but {directory} has {free_bytes / 2**20:.1f} MiB free")
        try:
            trials = self.benchmark(strategies, entries, directory, options)
        except (ValueError, TargetFull) as e:
            raise RPCError(Error.MALFORMED_REQUEST, str(e)) from None
        except OSError as e:
            raise RPCError(Error.CRASH, f"I/O error on {directory}: {e}") from None
        self.reply(msg, {"type": "fsync_benchmark_ok", "results": [self.result(st, ts) for st, ts in trials]})

    def benchmark(self, strategies, entries: int, directory, options: dict) -> list:
        """The trials of ``trial.run_rounds``: alternating rounds within its time budget."""
        trials, rounds, spent = run_rounds(strategies, entries, directory, **options)
        self.log(f"fsync_benchmark: {entries} entries x {len(strategies)} strategies, {rounds} rounds in {spent:.3f} s")
        return list(zip(strategies, trials))

    @staticmethod
    def result(st, trials: list[TrialResult]) -> dict:
        med = median_trial(trials)
        out = {"strategy": st.name, "ops_per_sec": med.ops_per_sec, "durability": st.durability,
               "data_loss_window": st.data_loss_window}
        for key in MEASURED:
            v = getattr(med, key)
            out[key] = round(v, 6 if key.endswith("_s") else 3) if isinstance(v, float) else v
        out["trials"] = len(trials)
        out["ops_per_sec_trials"] = [round(r.ops_per_sec, 1) for r in trials]
        out["target"] = {"path": med.target_path, "fstype": med.target_fstype,
                         "durability": med.target_durability, "reason": med.target_reason}
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fsyncstudy.node", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="directory for trial logs (default: $FSYNCSTUDY_DIR, else durable storage)")
    args = ap.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr  # only messages reach the real stdout; a stray print becomes a log line
    unwind_on_sigterm()  # a trial cut short by SIGTERM still removes its log
    try:
        return Node(sys.stdin.buffer, out, sys.stderr, directory=args.dir).run()
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    finally:
        sys.stdout = out


if __name__ == "__main__":
    sys.exit(main())
