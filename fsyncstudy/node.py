"""The protocol node: ``python -m fsyncstudy.node [--dir DIR]``.

Maelstrom convention: one JSON message a line on stdin, replies on stdout, logs on
stderr; it reads until stdin closes and exits 0.  It answers ``init`` and
``fsync_benchmark``; anything else gets error 10.  Standard library only: it calls
``fsyncstudy.trial`` and contains no measuring of its own.

Limits (error 12 beyond them, saying which): entries 1..``MAX_ENTRIES``, 1..``MAX_STRATEGIES``
strategies, payload_bytes 0..``MAX_PAYLOAD_BYTES``, writers 1..``MAX_WRITERS``, and a request
whose first round is estimated (``trial.estimate_s``, from a probe of the target's sync time)
to take more than ``MAX_REQUEST_S``.  The estimate is not a bound, so the limit is also a deadline:
every request is answered within ``MAX_REQUEST_S`` of the node reading its line, plus
``REPLY_MARGIN_S``.  A trial still running at the deadline is stopped (``run_trial``'s ``deadline``:
its writer tests it at each entry, as it tests its own stop rule, and leaves time for its summary), its
log removed, and the answer is error 12 naming the limit, or the rounds that finished before it
(``trials`` says how many).  The margin is for the system call under way at the deadline (a write, a
sync) and the log's removal: a sync that hangs for longer delays the answer until it returns.

A line is read up to ``MAX_LINE_BYTES``; a message whose ``src`` is not a string or whose ``msg_id``
cannot be echoed back is logged and not answered.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from enum import IntEnum


def _load_library() -> None:
    """The measuring library, imported once: at the first message that needs it, and at the latest just
    after init_ok is sent (before the next line is read).  Its imports (dataclasses and inspect, re,
    pathlib: about 35 ms here) would otherwise come before the node can answer init; the trials do not
    start any sooner for them either way."""
    global HEADER, remove_stale, pick_directory, StrategyError, parse, quote, describe, one_line, note_sync_s, \
        DEFAULT_PAYLOAD_BYTES, MAX_ENTRIES, MAX_PAYLOAD_BYTES, MAX_WRITERS, SPACE_MARGIN_BYTES, TargetFull, \
        DeadlinePassed, estimate_s, human_bytes, median_trial, probe_sync_s, run_rounds, space_needed, _LOADED
    if _LOADED:
        return
    from .log import HEADER, remove_stale, unwind_on_sigterm
    from .places import pick_directory
    from .strategies import StrategyError, parse, quote
    from .targets import describe, note_sync_s, one_line
    from .trial import DEFAULT_PAYLOAD_BYTES, MAX_ENTRIES, MAX_PAYLOAD_BYTES, MAX_WRITERS, SPACE_MARGIN_BYTES, \
        DeadlinePassed, TargetFull, estimate_s, human_bytes, median_trial, probe_sync_s, run_rounds, space_needed
    unwind_on_sigterm()  # a trial cut short by SIGTERM still removes its log
    _LOADED = True


_LOADED = False

#: Strategies one request may name (repeats count).
MAX_STRATEGIES = 16
#: A request estimated to take longer than this (its first round) is refused, and one that runs longer
#: is stopped: every request is answered within this many seconds of the node reading it ...
MAX_REQUEST_S = 60.0
#: ... plus this margin: the write or sync under way at the deadline, removing the trial's log, the reply.
REPLY_MARGIN_S = 1.0
#: A sync slower than any disk's but a broken one's: below MAX_REQUEST_S with it, a request needs no probe.
SLOW_SYNC_S = 0.05
#: Longer lines are not messages: they are skipped unread (their rest is discarded).
MAX_LINE_BYTES = 1 << 20

#: Measured fields copied from the median trial into a result, beside the task's four.
MEASURED = (
    "entries", "elapsed_s", "syncs", "sync_method", "prealloc", "writers",
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


def _int_field(body: dict, key: str, lo: int, hi: int, default=None) -> int:
    v = body.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        got = "missing" if key not in body else quote(v)
        raise RPCError(Error.MALFORMED_REQUEST, f"{key} must be an integer in {lo:,}..{hi:,}; got {got}")
    return v


def _unanswerable(msg: dict) -> str | None:
    """Why a reply to ``msg`` cannot be sent, or None."""
    if "msg_id" not in msg["body"]:
        return "it has no msg_id: there is nobody to answer"
    if not isinstance(msg["src"], str):
        return f"its src {quote(msg['src'], 40)} is not a string: there is nowhere to answer"
    mid = msg["body"]["msg_id"]
    if isinstance(mid, float) and not math.isfinite(mid):
        return f"its msg_id {quote(mid, 40)} is not a finite number: a reply could not name it"
    return None


class Node:
    def __init__(self, stdin=None, stdout=None, stderr=None,
                 directory: str | os.PathLike | None = None, max_request_s: float = MAX_REQUEST_S):
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.node_id: str | None = None
        self.next_msg_id = 0
        self._explicit_dir = directory
        self._dir = None
        self._sync_s: float | None = None
        self.max_request_s = max_request_s
        self.received = time.monotonic()   # when the line being handled was read: its deadline counts from it
        self.handlers = {"init": self.handle_init, "fsync_benchmark": self.handle_fsync_benchmark}

    # -- plumbing -------------------------------------------------------------------------------
    def log(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)

    def send(self, dest, body: dict) -> None:
        body["msg_id"] = self.next_msg_id
        line = json.dumps({"src": self.node_id, "dest": dest, "body": body}, allow_nan=False)
        self.next_msg_id += 1
        self.stdout.write(line + "\n")
        self.stdout.flush()

    def reply(self, req: dict, body: dict) -> None:
        self.send(req["src"], {"type": body.pop("type"), "in_reply_to": req["body"]["msg_id"], **body})

    def error(self, req: dict, code: Error, text: str) -> None:
        self.reply(req, {"type": "error", "code": int(code), "text": text})

    def sync_s(self) -> float:
        """One write + fdatasync in the node's directory, probed once (for the run-time estimate)."""
        if self._sync_s is None:
            try:
                self._sync_s = probe_sync_s(self.directory())
                note_sync_s(self.directory(), self._sync_s)   # each trial's target description weighs it
            except OSError:
                return 0.0  # no estimate: the trial itself will meet the error and report it
        return self._sync_s

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
        read = self.stdin.readline
        while True:
            raw = read(MAX_LINE_BYTES + 1)
            received = time.monotonic()
            if not raw:
                return 0
            nl = b"\n" if isinstance(raw, bytes) else "\n"
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(nl):
                size = len(raw)
                while raw and not raw.endswith(nl):  # discard the rest, a bounded piece at a time
                    raw = read(MAX_LINE_BYTES)
                    size += len(raw)
                self.log(f"skipping a line of {size:,} bytes: longer than {MAX_LINE_BYTES:,}, not a message")
                continue
            try:
                self.handle_line(raw, received)
                _load_library()
            except Exception as e:  # a last guard: one line never ends the node
                self.log(f"dropped a line after an unexpected {type(e).__name__}: {str(e)[:200]}")

    def handle_line(self, raw: str | bytes, received: float | None = None) -> None:
        """Handle one line, read at ``received`` (``time.monotonic()``; now if not given)."""
        self.received = time.monotonic() if received is None else received
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        line = raw.strip()
        if not line:
            return
        try:
            msg = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than the parser goes
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
        if kind != "init" or not isinstance(body.get("node_id"), str) or not body["node_id"] or "msg_id" not in body:
            _load_library()   # an init that will be answered at once is the one message that needs none of it
        why = _unanswerable(msg)
        has_id = why is None
        try:
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                if not isinstance(kind, str):
                    raise RPCError(Error.MALFORMED_REQUEST, f"message body has no string type: {json.dumps(body)[:200]}")
                raise RPCError(Error.NOT_SUPPORTED, f"message type {quote(kind)} is not supported; "
                                                    "this node answers init and fsync_benchmark")
            if not has_id:
                self.log(f"skipping a {quote(kind, 40)} request: {why}")
                return
            handler(msg)
        except RPCError as e:
            self.log(f"error {int(e.code)} for {quote(kind, 40)}: {e.text}")
            if has_id:
                self.error(msg, e.code, e.text)
        except Exception as e:  # never die on one bad request
            text = f"{type(e).__name__}: {str(e)[:500]}"
            self.log(f"crash while handling {quote(kind, 40)}: {text}")
            if has_id:
                self.error(msg, Error.CRASH, text)

    # -- handlers -------------------------------------------------------------------------------
    def handle_init(self, msg: dict) -> None:
        node_id = msg["body"].get("node_id")
        if not isinstance(node_id, str) or not node_id:
            raise RPCError(Error.MALFORMED_REQUEST, f"init needs a node_id string; got {quote(node_id)}")
        self.node_id = node_id
        self.reply(msg, {"type": "init_ok"})

    def handle_fsync_benchmark(self, msg: dict) -> None:
        body = msg["body"]
        entries = _int_field(body, "entries", 1, MAX_ENTRIES)
        names = body.get("strategies")
        if not isinstance(names, list) or not 1 <= len(names) <= MAX_STRATEGIES:
            raise RPCError(Error.MALFORMED_REQUEST, f"strategies must be a list of 1..{MAX_STRATEGIES} names; "
                                                    f"got {quote(names)}")
        try:
            strategies = [parse(n) for n in names]
        except StrategyError as e:
            raise RPCError(Error.MALFORMED_REQUEST, str(e)) from None
        options = {}
        for key in ("sync_method", "prealloc"):
            if key in body:
                if not isinstance(body[key], str):
                    raise RPCError(Error.MALFORMED_REQUEST, f"{key} must be a string; got {quote(body[key])}")
                options[key] = body[key]
        if "payload_bytes" in body:
            options["payload_bytes"] = _int_field(body, "payload_bytes", 0, MAX_PAYLOAD_BYTES)
        if "writers" in body:
            options["writers"] = _int_field(body, "writers", 1, MAX_WRITERS)
        payload = options.get("payload_bytes", DEFAULT_PAYLOAD_BYTES)
        directory = self.directory()
        free = os.statvfs(directory)
        free_bytes = free.f_bavail * free.f_frsize
        need = space_needed(entries, HEADER.size + payload, options.get("prealloc", "append"),
                            entries * (HEADER.size + payload))
        if need + SPACE_MARGIN_BYTES > free_bytes:
            raise RPCError(Error.MALFORMED_REQUEST,
                           f"{entries:,} entries need {human_bytes(need)} (plus a {human_bytes(SPACE_MARGIN_BYTES)} "
                           f"margin) but {directory} has {human_bytes(free_bytes)} free")
        writers = options.get("writers", 1)
        # the target's sync time is probed only when a slow disk's could break the limit
        limit = self.max_request_s
        took = estimate_s(strategies, entries, writers, SLOW_SYNC_S)
        if took > limit:
            took = estimate_s(strategies, entries, writers, self.sync_s())
        if took > limit:
            raise RPCError(Error.MALFORMED_REQUEST,
                           f"this request would take at least {took:,.0f} s (a sync here takes about "
                           f"{self.sync_s() * 1e3:.2g} ms; group_<N>ms waits N ms for each sync it shares among "
                           f"its writers), more than this node's limit of {limit:g} s: ask for fewer "
                           "entries, or run it with `python -m fsyncstudy bench`")
        try:
            trials = self.benchmark(strategies, entries, directory, options, deadline=self.received + limit)
        except DeadlinePassed as e:
            raise RPCError(Error.MALFORMED_REQUEST,
                           f"this request ran into this node's limit of {limit:g} s and was stopped ({e}; "
                           f"estimated at {took:,.1f} s: an estimate is a lower bound), its trial logs removed: "
                           "ask for fewer entries, or run it with `python -m fsyncstudy bench`") from None
        except (ValueError, TargetFull) as e:
            raise RPCError(Error.MALFORMED_REQUEST, str(e)) from None
        except OSError as e:
            raise RPCError(Error.CRASH, f"I/O error on {directory}: {e}") from None
        self.reply(msg, {"type": "fsync_benchmark_ok", "results": [self.result(st, ts) for st, ts in trials]})

    def benchmark(self, strategies, entries: int, directory, options: dict, deadline: float | None = None) -> list:
        """The trials of ``trial.run_rounds``: alternating rounds within its time budget, and the rounds
        that finished before ``deadline`` (``time.monotonic()``) if it comes first."""
        trials, rounds, spent = run_rounds(strategies, entries, directory, deadline=deadline, **options)
        self.log(f"fsync_benchmark: {entries} entries x {len(strategies)} strategies, {rounds} rounds in {spent:.3f} s")
        return list(zip(strategies, trials))

    @staticmethod
    def result(st, trials: list) -> dict:
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
    argv = sys.argv[1:] if argv is None else argv
    directory = None
    if argv:   # argparse (a few ms) only when there is something to parse
        import argparse
        ap = argparse.ArgumentParser(prog="python -m fsyncstudy.node", description=__doc__.split("\n\n")[0])
        ap.add_argument("--dir", help="directory for trial logs (default: $FSYNCSTUDY_DIR, else durable storage)")
        directory = ap.parse_args(argv).dir
    out = sys.stdout
    sys.stdout = sys.stderr  # only messages reach the real stdout; a stray print becomes a log line
    try:
        return Node(sys.stdin.buffer, out, sys.stderr, directory=directory).run()
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    finally:
        sys.stdout = out


if __name__ == "__main__":
    sys.exit(main())
