"""Does the disk keep its promise: the flush-honesty check (diskchecker.pl's method, with a verdict).

Three parts, on two machines (or two processes and the lab's power switch, ``run_lab``):

- ``Server`` (``diskcheck serve``), on the observing machine: accepts writers' connections on the address
  it is given, speaks only the framed protocol below, and records every acknowledgement durably in a
  dataset of its own (kind ``diskcheck``, through ``dataset.open_or_resume``: lock, resume, meta).  The
  acknowledgements that arrive together are one row: the newest covers the others.
- ``write`` (``diskcheck write``), on the machine under test: our engine writes checksummed records
  (``log.Framer``) to a fresh log in the target directory by ``always`` or ``group_<N>ms``, and after each
  sync returns sends the number of records it covers, with the writer's clock.  Then the power is pulled.
- ``verify`` (``diskcheck verify``), after the reboot: every acknowledged record of every session whose
  log is in the target must be there and intact (``log.scan``: consecutive, checksums good).

The protocol: frames of ``HEADER`` (magic ``FSDC``, type, payload length, big-endian), a payload of at
most ``MAX_PAYLOAD`` bytes.  A writer sends one HELLO (JSON: session, log, strategy, ...), then ACKs
(``ACK``: records covered, writer's CLOCK_REALTIME ns).  Anything else (another protocol, a frame over
the limit, an ACK before HELLO or going backwards, half a frame at EOF, no HELLO within
``HELLO_TIMEOUT_S``, one connection more than ``MAX_CONNECTIONS``) closes that connection with one
logged line; the server goes on.  One thread, ``selectors``: memory is bounded by the connections'
buffers (``RECV_BYTES`` + one frame each).

Standard library only (the lab is imported by ``run_lab``).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import selectors
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import dataset, engine
from .intervals import zero_events_upper
from .log import Framer, LogFile, scan
from .strategies import parse
from .targets import describe
from .trial import payload_for

KIND = "diskcheck"
TABLE = "acks.csv"
PROTOCOL = 1
MAGIC = b"FSDC"
HEADER = struct.Struct(">4sBI")        # magic, type, payload bytes
ACK = struct.Struct(">QQ")             # records covered (seq 0 .. n-1), the writer's CLOCK_REALTIME ns
HELLO_FRAME, ACK_FRAME = 1, 2
#: The largest payload a frame may announce (a HELLO is a few hundred bytes).
MAX_PAYLOAD = 16 << 10
#: Connections open at once; one more is refused (a real check has one writer).
MAX_CONNECTIONS = 64
#: A connection that has not said HELLO by then is closed.
HELLO_TIMEOUT_S = 10.0
#: What one read takes off a connection at most: with one frame's remainder, its buffer's bound.
RECV_BYTES = 64 << 10
SESSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,80}$")
DEFAULT_PORT = 7419
#: The payload of every record (as the crash experiment's): 128 bytes, its CRC in each record's header.
PAYLOAD_BYTES = 128


@dataclass
class AckRow:
    """One row of a diskcheck dataset: a writer's HELLO (``n`` 0), or the acknowledgements read together."""

    session: str
    n: int                      # the row's number within its session
    event: str                  # hello or ack
    acked: int                  # records covered by the newest acknowledgement (0 for hello)
    frames: int                 # acknowledgements coalesced into this row
    writer_ns: int              # the writer's clock when it sent the newest (CLOCK_REALTIME)
    received_ns: int            # this machine's clock when it read them (CLOCK_REALTIME)
    peer: str
    detail: str                 # hello: the writer's JSON (log, strategy, sync method, target, host)


SCHEMA = dataset.columns_of(AckRow)


def _plan() -> dict:
    return {"protocol": PROTOCOL}


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``HOST`` -> (host, port); ValueError names what is wrong."""
    host, sep, port = str(text).rpartition(":")
    if not sep:
        host, port = (default_host, text) if text.isdigit() else (text, str(DEFAULT_PORT))
    host = host.strip("[]") or default_host
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"{text!r} is not ADDR:PORT (the port must be a number)") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"{text!r}: port {p} is not in 0..65535")
    return host, p


def frame(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, kind, len(payload)) + payload


# -- the observer ----------------------------------------------------------------------------------

class _Conn:
    __slots__ = ("sock", "peer", "buf", "session", "acked", "opened", "acks")

    def __init__(self, sock: socket.socket, peer: str):
        self.sock, self.peer, self.buf = sock, peer, bytearray()
        self.session: str | None = None
        self.acked = 0
        self.acks = 0
        self.opened = time.monotonic()


class Refused(Exception):
    """A connection that broke the protocol: the message is its one logged line."""


class Server:
    """The observer: ``Server(out, listen)``; ``serve_forever()`` until ``stop()`` (or Ctrl-C/SIGTERM).

    ``sessions``: {session: {"acked", "received_ns", "rows", "peer", "open"}} as it goes (``run_lab`` and
    tests watch it).  ``log``: where the one-line messages go (default stderr)."""

    def __init__(self, out: str | os.PathLike, listen: str = f"127.0.0.1:{DEFAULT_PORT}", log=None):
        host, port = parse_address(listen)
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        # the address first: a refused one leaves no dataset behind
        self.listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            try:
                self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.listener.bind((host, port))
                self.listener.listen(16)
            except OSError as e:
                raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror or e}") from None
            self.listener.setblocking(False)
            self.ds = dataset.open_or_resume(out, KIND, _plan(), SCHEMA, TABLE, notes={"listen": listen})
        except BaseException:
            self.listener.close()
            raise
        self.address = self.listener.getsockname()[:2]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.conns: dict[int, _Conn] = {}
        self.sessions: dict[str, dict] = {}
        for r in self.ds.rows:   # a resumed dataset: its sessions go on numbering their rows
            s = self.sessions.setdefault(r["session"], {"acked": 0, "received_ns": 0, "rows": 0, "peer": r["peer"],
                                                        "open": False})
            s["rows"] = max(s["rows"], int(r["n"]) + 1)
            s["acked"] = max(s["acked"], int(r["acked"]))
        self.refused = 0
        self._rows_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")

    # -- the loop ----------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        try:
            while not self._stop.is_set():
                for key, _ in self.sel.select(timeout=1.0):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        self._wake_r.recv(64)
                    else:
                        self._readable(key.data)
                self._expire()
        finally:
            self.close()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def close(self) -> None:
        for c in list(self.conns.values()):
            self._drop(c)
        for s in (self.listener, self._wake_r, self._wake_w):
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self.sel.close()
        self.ds.close()

    def _accept(self) -> None:
        try:
            sock, addr = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:   # out of descriptors, say: the listener goes on
            self.log(f"diskcheck serve: could not accept a connection ({e.strerror or e})")
            return
        peer = f"{addr[0]}:{addr[1]}"
        if len(self.conns) >= MAX_CONNECTIONS:
            self.refused += 1
            self.log(f"diskcheck serve: refused {peer}: {MAX_CONNECTIONS} connections are open already")
            sock.close()
            return
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)   # a pulled writer's connection goes, in time
        c = _Conn(sock, peer)
        self.conns[sock.fileno()] = c
        self.sel.register(sock, selectors.EVENT_READ, c)

    def _expire(self) -> None:
        now = time.monotonic()
        for c in [c for c in self.conns.values() if c.session is None and now - c.opened > HELLO_TIMEOUT_S]:
            self._refuse(c, f"no HELLO within {HELLO_TIMEOUT_S:g} s")

    def _refuse(self, c: _Conn, why: str) -> None:
        self.refused += 1
        self.log(f"diskcheck serve: refused {c.peer}: {why}")
        self._drop(c)

    def _drop(self, c: _Conn) -> None:
        self.conns.pop(c.sock.fileno(), None)
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        c.buf = bytearray()
        if c.session in self.sessions:
            self.sessions[c.session]["open"] = False

    def _readable(self, c: _Conn) -> None:
        try:
            data = c.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:      # reset by the peer: as an end, and said so
            self._refuse(c, f"connection failed ({e.strerror or e})")
            return
        now_ns = time.time_ns()
        if not data:
            if c.buf:
                self._refuse(c, f"closed mid-frame ({len(c.buf)} bytes of a frame)")
            else:
                if c.session:
                    self.log(f"diskcheck serve: session {c.session} from {c.peer} ended "
                             f"({self.sessions[c.session]['acked']:,} records acknowledged)")
                self._drop(c)
            return
        c.buf += data
        try:
            acked, writer_ns, frames = self._frames(c, now_ns)
        except Refused as e:
            self._refuse(c, str(e))
            return
        if frames:
            self._record(c, "ack", acked, frames, writer_ns, now_ns, "")

    def _frames(self, c: _Conn, now_ns: int) -> tuple[int, int, int]:
        """Take the whole frames off the buffer: the newest acknowledgement among them, its time, how many."""
        buf, pos, frames, acked, writer_ns = c.buf, 0, 0, c.acked, 0
        while len(buf) - pos >= HEADER.size:
            magic, kind, n = HEADER.unpack_from(buf, pos)
            if magic != MAGIC:
                raise Refused(f"not a diskcheck frame (it began {bytes(buf[pos:pos + 8])!r})")
            if n > MAX_PAYLOAD:
                raise Refused(f"a frame of {n:,} bytes announced, over the limit of {MAX_PAYLOAD:,}")
            if len(buf) - pos < HEADER.size + n:
                break
            body = bytes(buf[pos + HEADER.size:pos + HEADER.size + n])
            pos += HEADER.size + n
            if kind == HELLO_FRAME:
                self._hello(c, body, now_ns)
            elif kind == ACK_FRAME:
                if c.session is None:
                    raise Refused("an acknowledgement before HELLO")
                if n != ACK.size:
                    raise Refused(f"an acknowledgement of {n} bytes, not {ACK.size}")
                a, w = ACK.unpack(body)
                if a < acked:
                    raise Refused(f"session {c.session}: acknowledgement {a:,} after {acked:,} (going backwards)")
                acked, writer_ns, frames = a, w, frames + 1
            else:
                raise Refused(f"an unknown frame type {kind}")
        del buf[:pos]
        return acked, writer_ns, frames

    def _hello(self, c: _Conn, body: bytes, now_ns: int) -> None:
        if c.session is not None:
            raise Refused(f"a second HELLO on session {c.session}")
        try:
            hello = json.loads(body)
        except ValueError:
            raise Refused("a HELLO that is not JSON") from None
        if not isinstance(hello, dict) or not SESSION_RE.match(str(hello.get("session", ""))):
            raise Refused("a HELLO without a session name (letters, digits, . _ -; at most 80)")
        s = self.sessions.get(hello["session"])
        if s is not None and s["open"]:
            raise Refused(f"session {hello['session']} is connected already")
        c.session = hello["session"]
        s = self.sessions.setdefault(c.session, {"acked": 0, "received_ns": 0, "rows": 0, "peer": c.peer})
        s.update(open=True, peer=c.peer)
        c.acked = s["acked"]
        self._record(c, "hello", c.acked, 0, int(hello.get("time_ns") or 0), now_ns, json.dumps(hello, sort_keys=True))
        self.log(f"diskcheck serve: session {c.session} from {c.peer}: {hello.get('strategy')} into "
                 f"{hello.get('target')} ({hello.get('log')})")

    def _record(self, c: _Conn, event: str, acked: int, frames: int, writer_ns: int, now_ns: int, detail: str):
        self._append(c.session, event, acked, frames, writer_ns, now_ns, c.peer, detail)
        s = self.sessions[c.session]
        s["acked"], s["received_ns"] = acked, now_ns
        c.acked = acked
        c.acks += frames

    def _append(self, session: str, event: str, acked: int, frames: int, writer_ns: int, now_ns: int, peer: str,
                detail: str) -> None:
        with self._rows_lock:            # the serving thread, and record_check from the lab's
            s = self.sessions[session]
            row = AckRow(session=session, n=s["rows"], event=event, acked=acked, frames=frames,
                         writer_ns=max(0, writer_ns), received_ns=now_ns, peer=peer, detail=detail)
            self.ds.append(asdict(row))  # fsynced before the next read: what verify finds was received
            s["rows"] += 1

    def record_check(self, check: "SessionCheck", target: str, cut: dict) -> None:
        """A lab run's verification of one session, kept in the dataset beside its acknowledgements
        (``recorded`` reads them back once the lab and its logs are gone)."""
        self._append(check.session, "verify", check.acked, 0, 0, time.time_ns(), "",
                     json.dumps({"target": target, "cut": cut, "check": asdict(check)}, sort_keys=True))


# -- the machine under test ---------------------------------------------------------------------------

@dataclass
class WriteResult:
    session: str
    log: str
    records: int                # records written
    acked: int                  # records covered by the last acknowledgement sent


def write(to: str, target: str | os.PathLike, strategy: str = "always", sync_method: str = "fdatasync",
          duration_s: float | None = None, session: str | None = None,
          connect_timeout_s: float = 10.0) -> WriteResult:
    """Write records to a fresh log in ``target`` by ``strategy`` and tell the observer at ``to`` how many
    each sync covered, once it returned; until ``duration_s`` (None: until killed, as by a pulled plug)."""
    st = parse(strategy)
    if not st.acks_durable:
        raise ValueError(f"{st.name} acknowledges before a sync: diskcheck checks syncs, so use always or "
                         "group_<N>ms")
    session = session or f"{socket.gethostname()}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    if not SESSION_RE.match(session):
        raise ValueError(f"session {session!r}: letters, digits, '.', '_' and '-' only, at most 80")
    directory = Path(target)
    if not directory.is_dir():
        raise FileNotFoundError(f"target {directory} is not a directory")
    host, port = parse_address(to)
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout_s)
    except OSError as e:
        raise OSError(e.errno, f"cannot reach the observer at {host}:{port} ({e.strerror or e}): is `diskcheck "
                               "serve` running there, listening on an address this machine reaches?") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # an acknowledgement goes now, not batched
    name = f"diskcheck-{session}.log"
    log = LogFile(directory, sync_method, "append", 0, name=name)
    try:
        t = describe(directory)
        hello = {"session": session, "log": name, "strategy": st.name, "sync_method": sync_method,
                 "target": str(directory.resolve()), "host": socket.gethostname(), "time_ns": time.time_ns(),
                 "device": t.label, "verdict": t.durability, "version": 1}
        sock.sendall(frame(HELLO_FRAME, json.dumps(hello).encode()))
        written = [0]
        sent = [0]
        lock = threading.Lock()

        def counting_write(fd: int, rec) -> int:
            n = os.write(fd, rec)
            written[0] += 1
            return n

        raw_sync = log.sync_function()

        def covering(fd: int) -> None:
            hi = written[0]   # every record whose write() returned before the sync began
            if raw_sync is not None:
                raw_sync(fd)
            with lock:
                if hi > sent[0]:
                    sock.sendall(frame(ACK_FRAME, ACK.pack(hi, time.time_ns())))
                    sent[0] = hi

        framer = Framer(payload_for(PAYLOAD_BYTES))
        stop = engine.Stop(0, int(duration_s * 1e9)) if duration_s else engine.Stop(0, 10 ** 15)
        try:
            engine.run(st, log.fd, covering, framer, framer.frame_range(0, engine.CHUNK), stop,
                       write=counting_write)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ConnectionError(f"the observer at {host}:{port} closed the connection ({e.strerror}); "
                                  "is `diskcheck serve` still running?") from None
        return WriteResult(session=session, log=log.path, records=written[0], acked=sent[0])
    finally:
        log.close()          # the log stays: it is what verify reads after the pull
        sock.close()


# -- after the reboot ---------------------------------------------------------------------------------

@dataclass
class SessionCheck:
    """One pull: what the observer recorded for a session, and what its log kept."""

    session: str
    log: str
    strategy: str
    acked: int                  # records covered by the last acknowledgement received
    recovered: int              # records read back intact, consecutive from 0
    lost: int                   # acknowledged and not recovered
    log_end: str                # how the reader stopped (clean, zeros, torn, corrupt, sequence, missing)
    newest_lost_age_ms: float | None   # before the reference: the newest lost acknowledgement's age
    oldest_lost_age_ms: float | None
    reference: str              # "cut": the lab's cut (writer's clock); "last ack": the last one received


@dataclass
class Verdict:
    target: str
    sessions: list[SessionCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # sessions of other targets
    pulls: int = 0
    acked: int = 0
    lost: int = 0
    pulls_losing: int = 0
    newest_lost_age_ms: float | None = None
    zero_loss_upper: float | None = None               # 95% upper bound on P(a pull loses), when none did
    text: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def recorded(acks: str | os.PathLike) -> dict[str, Verdict]:
    """The verdicts a lab run recorded in its dataset (its ``verify`` rows), by target: what the run
    found, readable after its lab (and the logs) are gone."""
    got = dataset.check(acks, KIND, schema=SCHEMA)
    if got.problems:
        raise got.error()
    out: dict[str, Verdict] = {}
    for r in got.rows:
        if r["event"] != "verify":
            continue
        d = json.loads(r["detail"])
        v = out.setdefault(d["target"], Verdict(target=d["target"]))
        v.sessions.append(SessionCheck(**d["check"]))
    return {t: _tally(v) for t, v in out.items()}


def _sessions(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        s = out.setdefault(r["session"], {"hello": None, "acks": []})
        if r["event"] == "hello":
            try:
                s["hello"] = json.loads(r["detail"])
            except ValueError:
                pass
        elif r["event"] == "ack":
            s["acks"].append((int(r["acked"]), int(r["received_ns"]), int(r["writer_ns"])))
    return out


def verify(target: str | os.PathLike, acks: str | os.PathLike, sessions: list[str] | None = None,
           cut_ns: dict[str, int] | None = None) -> Verdict:
    """Compare what the observer recorded (the dataset ``acks``) with the logs in ``target``.

    Every session whose log is in ``target`` (or whose HELLO named it) is one pull (``sessions``: only
    these).  An acknowledgement's age: with ``cut_ns[session]`` (the lab, where writer, observer and power
    switch share one clock) the time from the writer sending it to when the cut returned; on two machines
    the time from the observer receiving it to the last acknowledgement it received from that session
    (the pull came later: a lower bound), so no two clocks are ever compared."""
    got = dataset.check(acks, KIND, schema=SCHEMA)
    if got.problems:
        raise got.error()
    directory = Path(target)
    if not directory.is_dir():
        raise FileNotFoundError(f"target {directory} is not a directory")
    real = os.path.realpath(directory)
    v = Verdict(target=str(directory))
    for sid, s in _sessions(got.rows).items():
        hello = s["hello"] or {}
        if sessions is not None and sid not in sessions:
            continue
        log = directory / str(hello.get("log") or f"diskcheck-{sid}.log")
        if not log.exists() and os.path.realpath(str(hello.get("target", ""))) != real:
            v.skipped.append(sid)
            continue
        v.sessions.append(check_session(sid, hello, s["acks"], log, (cut_ns or {}).get(sid)))
    return _tally(v)


def _tally(v: Verdict) -> Verdict:
    """The verdict over its sessions' checks."""
    v.pulls = len(v.sessions)
    v.acked = sum(c.acked for c in v.sessions)
    v.lost = sum(c.lost for c in v.sessions)
    v.pulls_losing = sum(1 for c in v.sessions if c.lost)
    ages = [c.newest_lost_age_ms for c in v.sessions if c.newest_lost_age_ms is not None]
    v.newest_lost_age_ms = min(ages) if ages else None
    if v.pulls and not v.lost:
        v.zero_loss_upper = zero_events_upper(v.pulls)
    v.text = verdict_text(v)
    return v


def check_session(sid: str, hello: dict, acks: list[tuple[int, int, int]], log: Path,
                  cut_ns: int | None) -> SessionCheck:
    """``acks``: (records covered, received_ns, writer_ns) of each row."""
    try:
        found = scan(log.read_bytes())
        recovered, end = found.entries, found.end
    except FileNotFoundError:
        recovered, end = 0, "missing"
    acked = max((a for a, _, _ in acks), default=0)
    if cut_ns is not None:
        ages = [(cut_ns - w) / 1e6 for a, _, w in acks if a > recovered]
    else:
        last = max((t for _, t, _ in acks), default=0)
        ages = [(last - t) / 1e6 for a, t, _ in acks if a > recovered]
    return SessionCheck(session=sid, log=str(log), strategy=str(hello.get("strategy", "?")), acked=acked,
                        recovered=recovered, lost=max(0, acked - recovered), log_end=end,
                        newest_lost_age_ms=round(min(ages), 3) if ages else None,
                        oldest_lost_age_ms=round(max(ages), 3) if ages else None,
                        reference="cut" if cut_ns is not None else "last ack")


def verdict_text(v: Verdict) -> str:
    if not v.pulls:
        return (f"no session of this observer wrote to {v.target}: nothing to verify (is --target the directory "
                "`diskcheck write` wrote to, and --acks the directory `diskcheck serve` recorded into?)")
    pulls = f"{v.pulls} pull{'s' * (v.pulls != 1)}"
    if not v.lost:
        return (f"kept every acknowledged record in {pulls} ({v.acked:,} acknowledged); the chance that a pull "
                f"loses acknowledged records is at most {100 * v.zero_loss_upper:.0f}% (95% upper bound, zero "
                f"losses in {v.pulls})")
    ref = "when the power went" if all(c.reference == "cut" for c in v.sessions if c.lost) else \
        "before the last acknowledgement received, so older at the pull"
    return (f"lost {v.lost:,} of {v.acked:,} acknowledged records, in {v.pulls_losing} of {pulls}, newest "
            f"{v.newest_lost_age_ms:.1f} ms old ({ref}): this device or a cache above it acknowledges flushes it "
            "does not keep")


# -- on one machine: the lab's power switch in place of the plug --------------------------------------

#: The cut comes this long after the observer received the writer's first acknowledgement (ms).
LAB_CUT_WINDOW_MS = (50.0, 300.0)
LAB_TARGETS = ("lab:powercut", "lab:liar")


@dataclass
class LabResult:
    out: str
    verdicts: dict[str, Verdict]
    cuts: dict[str, list[dict]]          # per target: each cut's moment and what the device reported

    def as_dict(self) -> dict:
        return {"out": self.out, "verdicts": {t: v.as_dict() for t, v in self.verdicts.items()},
                "cuts": self.cuts}


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"diskcheck --lab: {what} within {timeout_s:g} s")
        time.sleep(0.005)


def run_lab(cuts: int, out: str | os.PathLike, seed: int = 0, strategy: str = "always",
            targets=LAB_TARGETS, log=None) -> LabResult:
    """The whole protocol over loopback: an observer in this process, a writer process per cut
    (``python -m fsyncstudy diskcheck write``), the lab's power switch for the plug, on each target;
    then ``verify`` of every cut.  The lab comes up for the run and always comes down."""
    import subprocess
    from .cuts import moment_ms
    from .lab import Lab, LabError, cut, requirement, reset
    if cuts < 1:
        raise ValueError(f"--cuts must be at least 1, not {cuts}")
    names = [t.removeprefix("lab:") for t in targets]
    missing = {t: requirement(t) for t in names if requirement(t)}
    if missing:
        raise LabError("diskcheck --lab needs " + "; ".join(f"lab:{t}: {r}" for t, r in missing.items()))
    say = log or (lambda m: None)
    server = Server(out, "127.0.0.1:0", log=say)
    thread = threading.Thread(target=server.serve_forever, name="diskcheck-serve", daemon=True)
    thread.start()
    to = f"127.0.0.1:{server.address[1]}"
    result = LabResult(out=str(out), verdicts={}, cuts={})
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parents[1])   # the writer imports this very package
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        with Lab.for_run(targets=names) as lab:
            if lab.skipped():
                raise LabError(f"diskcheck --lab: {lab.skipped()}")
            for target in targets:
                mp = lab.directory(target)
                run_id = secrets.token_hex(3)
                cut_ns, result.cuts[target] = {}, []
                for k in range(cuts):
                    sid = f"lab-{target[4:]}-{run_id}-{k}"
                    after_ms = moment_ms(seed, LAB_CUT_WINDOW_MS, target, strategy, k)
                    proc = subprocess.Popen([sys.executable, "-m", "fsyncstudy", "diskcheck", "write", "--to", to,
                                             "--target", str(mp), "--strategy", strategy, "--session", sid],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, env=env)
                    try:
                        _wait(lambda: server.sessions.get(sid, {}).get("acked", 0) > 0 or proc.poll() is not None,
                              30.0, f"the writer of cut {k} on {target} acknowledged nothing")
                        if proc.poll() is not None:
                            raise RuntimeError(f"the writer of cut {k} on {target} exited "
                                               f"({proc.returncode}): {proc.stderr.read().decode()[-500:]}")
                        first_ns = server.sessions[sid]["received_ns"]
                        time.sleep(max(0.0, first_ns / 1e9 + after_ms / 1e3 - time.time()))
                        report = cut(mp)                    # the plug
                        cut_ns[sid] = time.time_ns()
                    finally:
                        proc.kill()
                        proc.wait()
                        proc.stderr.close()
                    # what the observer had received when the writer died is all it will get
                    _wait(lambda: not server.sessions[sid].get("open"), 10.0,
                          f"the observer did not see the writer of cut {k} on {target} go")
                    reset(mp)
                    result.cuts[target].append({"cut": k, "session": sid, "after_first_ack_ms": round(after_ms, 3),
                                                "lied_syncs": report.get("lied_syncs"),
                                                "unsynced_bytes_dropped": report.get("unsynced_bytes_dropped")})
                    say(f"{target}: cut {k + 1}/{cuts} at {after_ms:.0f} ms, "
                        f"{server.sessions[sid]['acked']:,} records acknowledged")
                v = result.verdicts[target] = verify(mp, out, sessions=list(cut_ns), cut_ns=cut_ns)
                v.target = target       # the lab's name, not its mount point of this run
                by_session = {c["session"]: c for c in result.cuts[target]}
                for check in v.sessions:
                    server.record_check(check, target, by_session[check.session])
    finally:
        server.stop()
        thread.join(timeout=30)
    return result
