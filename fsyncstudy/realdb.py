"""Real databases on a target directory: SQLite, PostgreSQL and Redis, started and stopped by us.

A user's question is about their database, not our writer: what does ``synchronous_commit=off``,
``appendfsync everysec`` or ``synchronous=NORMAL`` buy on this disk, and what does it lose at a power
cut?  This module runs each database's durability settings (``SETTINGS``: one table, with the
fsyncstudy strategy each one is predicted by and the loss window its documentation promises) under
one workload, and counts what each costs:

- **the workload**: single-row commits of ``payload_bytes`` from ``clients`` client processes, each in
  a closed loop (a commit, its acknowledgement, the next), for ``duration_s``;
- **commits/s and commit latency** as each client saw them (its acknowledgement is the return of the
  commit call: ``COMMIT``'s reply, a Redis reply, ``sqlite3``'s ``execute`` in autocommit);
- **what reached storage per commit**, counted around the timed window: device flushes and bytes
  written (``/sys/block/<dev>/stat``: every flush request the device received; device wide, so other
  writers on the disk count too: ``quiet_flushes_per_sec`` measures them in a window before each trial), and the write calls and bytes the database's processes sent to the
  kernel (``/proc/<pid>/io``: ``syscw``, ``wchar``) with their CPU time (``/proc/<pid>/stat``).

Every server is our child: ``postgres`` and ``redis-server`` are started directly (no ``pg_ctl``
daemon, no service), with ``PR_SET_PDEATHSIG`` so they die with the process that started them, listen
only on a Unix socket in a private directory (``listen_addresses=''``, ``--port 0``), and keep their
data in ``.fsyncstudy-realdb-<pid>-*`` in the target, removed when the run ends however it ends
(``remove_stale`` removes what a SIGKILLed run left).  PostgreSQL runs as the ``postgres`` user
(it refuses root), Redis and SQLite as us.

Power cuts (``CutSession``; ``one_cut`` for a single one) run a database on the lab's power-cut filesystem, let one client report
every acknowledged commit the moment it returns, cut the power at a random moment, reopen the
database on what the cut kept (the backing directory) and count the acknowledged commits that are
gone, the age of the oldest, and whether the database opened at all.
"""
from __future__ import annotations

import array
import ctypes
import os
import pwd
import select
import shutil
import signal
import sqlite3
import struct
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import cuts, measures
from .strategies import parse

#: Our data directories in a target: ``.fsyncstudy-realdb-<pid>-<name>``; our socket directories in
#: the temporary directory: ``fsyncstudy-<db>-<pid>-*``.
PREFIX, SOCKET_PREFIX = ".fsyncstudy-realdb-", "fsyncstudy-"
DATABASES = ("sqlite", "postgres", "redis")
#: How long a server may take to accept connections before the run fails with its log.
START_TIMEOUT_S = 30.0
#: How long a client may take to connect and report ready.
READY_TIMEOUT_S = 30.0
#: Bounds on one workload: seconds, and client processes (PostgreSQL is started with 20 connections).
MAX_DURATION_S, MAX_CLIENTS = 600.0, 16


class DatabaseMissing(RuntimeError):
    """This database cannot run here; the text says why (and what to install)."""


class DatabaseError(RuntimeError):
    """A database failed while we ran it; the text carries the end of its log."""


# -- the settings table ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One durability setting of one database, the strategy that predicts it, and its promise."""

    db: str
    name: str
    #: What is set: SQLite pragmas, PostgreSQL -c options, Redis config (key, value) pairs.
    config: tuple[tuple[str, str], ...]
    clients: int
    #: The fsyncstudy strategy measured beside it as its prediction, and its writers and record size.
    predict: str
    predict_writers: int
    predict_payload_bytes: int
    #: Why that strategy: what the database does per commit, in one sentence.
    mapping: str
    #: The documented worst-case loss window at a power cut in ms (0: nothing acknowledged is lost;
    #: None: no bound in time), and the documentation's words.
    promise_ms: float | None
    promise: str

    @property
    def key(self) -> str:
        return f"{self.db}/{self.name}"

    @property
    def acks_durable(self) -> bool:
        """Whether a commit is acknowledged only after a sync covering it (``Strategy.acks_durable``'s
        counterpart): the promise is no loss at all."""
        return self.promise_ms == 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["config"] = dict(self.config)
        return d


#: Our payload, as in the sweep; a database adds its own framing around it.
PAYLOAD_BYTES = 128
#: PostgreSQL's and Redis's client count where several clients share a sync (group commit).
GROUP_CLIENTS = 4
#: SQLite's WAL frame: a 4096-byte page and its 24-byte frame header; our record header is 16 bytes.
SQLITE_FRAME_PAYLOAD = 4096 + 24 - 16


def _pg_off(delay_ms: int) -> Setting:
    return Setting("postgres", f"off-{delay_ms}ms",
                   (("synchronous_commit", "off"), ("wal_writer_delay", f"{delay_ms}ms")), GROUP_CLIENTS,
                   f"batch_{3 * delay_ms}ms", 1, PAYLOAD_BYTES,
                   "a commit returns once its WAL record is in shared memory; the WAL writer writes and flushes "
                   f"every wal_writer_delay ({delay_ms} ms), or later when it favours whole pages",
                   3.0 * delay_ms, f"asynchronous commit: at most three times wal_writer_delay ({3 * delay_ms} ms)")


SETTINGS: tuple[Setting, ...] = (
    Setting("sqlite", "wal-full", (("journal_mode", "wal"), ("synchronous", "full")), 1,
            "always", 1, SQLITE_FRAME_PAYLOAD,
            "each commit appends its page to the WAL as one frame and syncs the WAL before it returns",
            0.0, "WAL with synchronous=FULL: durable at commit"),
    Setting("sqlite", "wal-normal", (("journal_mode", "wal"), ("synchronous", "normal")), 1,
            "none", 1, SQLITE_FRAME_PAYLOAD,
            "a commit appends its frame to the WAL without a sync; the WAL is synced only at a checkpoint "
            "(every 1000 pages by default)",
            None, "WAL with synchronous=NORMAL: a transaction \"might roll back following a power loss\""),
    Setting("sqlite", "wal-off", (("journal_mode", "wal"), ("synchronous", "off")), 1,
            "none", 1, SQLITE_FRAME_PAYLOAD,
            "no sync at all: the kernel writes back when it decides",
            None, "synchronous=OFF: the database \"might become corrupted\" at a power loss"),
    Setting("sqlite", "rollback-full", (("journal_mode", "delete"), ("synchronous", "full")), 1,
            "always", 1, SQLITE_FRAME_PAYLOAD,
            "each commit writes the old page to a rollback journal and syncs it, writes the database and "
            "syncs it, then deletes the journal: several syncs per commit where always has one",
            0.0, "rollback journal with synchronous=FULL: durable at commit"),
    Setting("postgres", "on", (("synchronous_commit", "on"),), GROUP_CLIENTS,
            "group_0ms", GROUP_CLIENTS, PAYLOAD_BYTES,
            "a commit waits until its WAL is flushed; backends that commit while a flush runs share the next "
            "one (the \"gangway effect\"): group commit with no delay",
            0.0, "synchronous_commit=on: durable at commit"),
    _pg_off(10), _pg_off(50), _pg_off(200),
    Setting("postgres", "group-1ms", (("synchronous_commit", "on"), ("commit_delay", "1000"),
                                      ("commit_siblings", "1")), GROUP_CLIENTS,
            "group_1ms", GROUP_CLIENTS, PAYLOAD_BYTES,
            "a committing backend waits commit_delay (1 ms) when another transaction is active, so more "
            "commits share its flush",
            0.0, "commit_delay: group commit stays synchronous (latency, never loss)"),
    Setting("redis", "always", (("appendfsync", "always"),), GROUP_CLIENTS,
            "group_0ms", GROUP_CLIENTS, PAYLOAD_BYTES,
            "one write and one fdatasync of the AOF buffer per event-loop iteration, before the replies: "
            "group commit over the clients served in that iteration",
            0.0, "appendfsync always: durable at reply"),
    Setting("redis", "everysec", (("appendfsync", "everysec"),), 1,
            "batch_1000ms", 1, PAYLOAD_BYTES,
            "the AOF is written before the reply and synced by a background thread about once a second",
            2000.0, "appendfsync everysec: \"you may lose 1 second of data\", 2 s in the worst case"),
    Setting("redis", "no", (("appendfsync", "no"),), 1,
            "none", 1, PAYLOAD_BYTES,
            "the AOF is written before the reply and never synced: the kernel writes back when it decides",
            None, "appendfsync no: the OS decides (about 30 s with Linux's defaults)"),
)
BY_KEY = {s.key: s for s in SETTINGS}


def settings(db: str | None = None, names: list[str] | None = None) -> list[Setting]:
    """The settings of ``db`` (all databases when None), or the named ones; a clear ValueError
    for an unknown database or setting."""
    if db is not None and db not in DATABASES:
        raise ValueError(f"unknown database {db!r}: use one of {', '.join(DATABASES)}")
    pool = [s for s in SETTINGS if db is None or s.db == db]
    if not names:
        return pool
    out = []
    for n in names:
        found = [s for s in pool if n in (s.name, s.key)]
        if not found:
            raise ValueError(f"unknown setting {n!r}{' of ' + db if db else ''}: use one of "
                             f"{', '.join(s.name if db else s.key for s in pool)}")
        out += found
    return out


for _s in SETTINGS:  # the table's predictions are strategies the engine runs
    parse(_s.predict)


# -- processes we start ----------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(uid: int | None = None, gid: int | None = None):
    """A preexec_fn: become ``uid``/``gid`` (if given), then ask the kernel to SIGKILL this process
    when its parent dies (set after the credential change, which clears it), and leave our process
    group, so a Ctrl-C in the terminal reaches us and we stop the server in order."""
    def run():
        os.setpgid(0, 0)
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        _libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    return run


def _run_group(args: list[str], preexec, cwd, timeout: float) -> tuple[int, str]:
    """Run a helper (initdb) in a process group of its own and wait; whatever interrupts the wait
    (Ctrl-C, SIGTERM, the timeout) kills the whole group, grandchildren too (initdb runs postgres
    in bootstrap mode), before it goes on: nothing keeps writing into a directory we remove."""
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         preexec_fn=preexec, cwd=cwd, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except BaseException:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        raise


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def proc_counters(pids: list[int]) -> dict:
    """Summed over ``pids``: write calls and bytes sent to the kernel (``/proc/<pid>/io``: syscw,
    wchar) and CPU seconds (utime + stime).  A process that is gone counts nothing."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"write_calls": 0, "write_bytes": 0, "cpu_s": 0.0}
    for p in pids:
        try:
            with open(f"/proc/{p}/io") as f:
                io = dict(line.split(": ") for line in f.read().splitlines())
            with open(f"/proc/{p}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        out["write_calls"] += int(io.get("syscw", 0))
        out["write_bytes"] += int(io.get("wchar", 0))
        out["cpu_s"] += (int(st[11]) + int(st[12])) / tick
    return out


def device_counters(block_device: str | None) -> dict | None:
    """Flush requests and bytes written that the block device has completed (``/sys/class/block/
    <dev>/stat``, fields 16 and 7), or None when the target has no block device (tmpfs, FUSE)."""
    if not block_device:
        return None
    try:
        with open(f"/sys/class/block/{block_device}/stat") as f:
            v = [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return None
    return {"flushes": v[15] if len(v) > 15 else None, "write_bytes": v[6] * 512}


#: How long ``quiet_flushes_per_sec`` watches the device while we do nothing (0.1 s: a neighbour
#: syncing 500 times a second shows about 50 flushes; about 14 s over the standard study's trials).
QUIET_WINDOW_S = 0.1


def quiet_flushes_per_sec(block_device: str | None, window_s: float = QUIET_WINDOW_S) -> float | None:
    """Flushes a second the device completes while this process does nothing for ``window_s``: the
    flushes of other processes on the same disk, which the device-wide counter would otherwise put on
    our trial.  None where there is no counter (no block device: tmpfs, FUSE)."""
    before = device_counters(block_device)
    if not before or before["flushes"] is None:
        return None
    t0 = time.monotonic()
    time.sleep(window_s)   # not a stand-in for I/O: we watch the disk while we do none
    after = device_counters(block_device)
    if not after:
        return None
    return (after["flushes"] - before["flushes"]) / (time.monotonic() - t0)


# -- the databases ---------------------------------------------------------------------------------

def _socket_dir(db: str) -> Path:
    """A private directory for a server's Unix socket and log, in the system's temporary directory
    (a socket path must be short): ``fsyncstudy-<db>-<our pid>-*``, so ``remove_stale`` can tell
    whose it is."""
    return Path(tempfile.mkdtemp(prefix=f"{SOCKET_PREFIX}{db}-{os.getpid()}-"))


def _tail(path: Path, n: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip()
    except OSError:
        return "(no log)"


class Database:
    """A database on a directory: ``start()``, ``client()`` (in any process), ``pids()``, ``stop()``.

    Used as a context manager: whatever happens inside (an error, Ctrl-C, SIGTERM turned into an
    exception), the server is stopped and its data directory and socket directory removed.
    """

    db = ""

    def __init__(self, directory: str | os.PathLike, setting: Setting, name: str | None = None):
        if setting.db != self.db:
            raise ValueError(f"{setting.key} is not a {self.db} setting")
        self.directory = Path(directory)
        self.setting = setting
        self.home = self.directory / f"{PREFIX}{os.getpid()}-{name or setting.db}"
        self.sockets = None
        self.proc = None
        self.log = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        self.kill()
        for d in (self.home, self.sockets):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server now (SIGKILL: as a crash would) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            for p in reversed(_tree(self.proc.pid)):
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def pids(self) -> list[int]:
        return _tree(self.proc.pid) if self.proc is not None else []

    def client(self, name: str = "log"):
        """A new connection to table (file, key) ``name``: an object with ``commit(payload)``,
        ``count()``, ``check()`` and ``close()``."""
        raise NotImplementedError

    def prepare(self, name: str) -> None:
        """Make table (file, key) ``name`` exist, durably, whatever the setting syncs."""

    def forget(self, name: str) -> None:
        """Drop table (file, key) ``name``."""

    def version(self) -> str:
        return ""


class SQLite(Database):
    """SQLite through the standard library: no server; each client opens the database file."""

    db = "sqlite"
    #: ``locking_mode=EXCLUSIVE``: the WAL index in the process's heap instead of a shared-memory file.
    #: Set for power cuts: the lab's filesystem serves files with direct I/O, which has no shared
    #: mmap, so the ``-shm`` file cannot be mapped there.  One client holds the database either way,
    #: and the WAL's writes and syncs are the same.
    exclusive = False

    def start(self):
        self.home.mkdir(parents=True, exist_ok=False)
        self.prepare("log")
        return self

    def client(self, name: str = "log"):
        return _SQLiteClient(self.home / f"{name}.sqlite", dict(self.setting.config), self.exclusive)

    def prepare(self, name: str) -> None:
        # made with synchronous=FULL, then its files and directory synced: the cut measures the
        # commits, not the creation of the database
        path = self.home / f"{name}.sqlite"
        c = _SQLiteClient(path, {**dict(self.setting.config), "synchronous": "full"}, self.exclusive)
        c.conn.execute("CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, payload BLOB)")
        c.close()
        for f in (path, self.home):
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def forget(self, name: str) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(self.home / f"{name}.sqlite{suffix}")
            except FileNotFoundError:
                pass

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"


class _SQLiteClient:
    def __init__(self, path: Path, config: dict, exclusive: bool = False):
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        if exclusive:
            self.conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        mode = self.conn.execute(f"PRAGMA journal_mode={config['journal_mode']}").fetchone()[0]
        if mode.lower() != config["journal_mode"]:
            raise DatabaseError(f"SQLite refused journal_mode={config['journal_mode']} (it says {mode})")
        self.conn.execute(f"PRAGMA synchronous={config['synchronous']}")

    def commit(self, payload: bytes) -> None:
        self.conn.execute("INSERT INTO log (payload) VALUES (?)", (payload,))

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM log").fetchone()[0]

    def check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        self.conn.close()


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/<version>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise DatabaseMissing("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    return found[-1].parent


class Postgres(Database):
    """A throwaway PostgreSQL cluster: initdb into the target, postgres as our child, a Unix socket only."""

    db = "postgres"
    USER = "postgres"
    #: WAL segment size (MB) for initdb; None: PostgreSQL's 16.  The power cuts use 1: a restart after
    #: a cut reads and recycles whole segments through the FUSE filesystem, and smaller ones make it
    #: faster; a commit's WAL write and flush are the same.
    wal_segsize_mb = None
    #: More -c options, for how the server starts, not how it commits.  The power cuts set
    #: ``recovery_init_sync_method=syncfs``: after a crash PostgreSQL first fsyncs every file of the
    #: data directory, one by one (about 1.5 s through the FUSE filesystem); syncfs asks once.  After
    #: a cut the lab holds nothing unsynced, so either way nothing more becomes durable.
    startup_options: dict = {}

    def _ids(self):
        try:
            pw = pwd.getpwnam(self.USER)
        except KeyError:
            raise DatabaseMissing(f"there is no {self.USER!r} user to run PostgreSQL as (it refuses root); "
                                  "the Debian package postgresql creates it") from None
        return pw.pw_uid, pw.pw_gid

    def _run_as(self):
        if os.getuid() != 0:
            return _die_with_parent()
        uid, gid = self._ids()
        return _die_with_parent(uid, gid)

    def _chown(self, path: Path):
        if os.getuid() == 0:
            uid, gid = self._ids()
            os.chown(path, uid, gid)

    def start(self, initdb: bool = True):
        _require(self.db)
        bindir = postgres_bin()
        self.bindir = bindir
        if self.sockets is None:
            self.sockets = _socket_dir("postgres")
            self._chown(self.sockets)
        self.data = self.home / "data"
        if initdb:
            self.home.mkdir(parents=True, exist_ok=False)
            self._chown(self.home)
            reach = subprocess.run(["test", "-w", str(self.home)], preexec_fn=self._run_as())
            if reach.returncode:
                raise DatabaseError(f"PostgreSQL runs as the {self.USER} user, which cannot reach {self.directory} "
                                    "(a directory on the way is closed to other users): choose a target it can "
                                    "reach, or open the way (chmod o+x)")
            extra = [f"--wal-segsize={self.wal_segsize_mb}"] if self.wal_segsize_mb else []
            code, out = _run_group([str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                                    "--no-instructions", "-E", "UTF8", "--locale", "C", *extra],
                                   self._run_as(), self.sockets, timeout=120)
            if code:
                raise DatabaseError(f"initdb failed in {self.data}: {out[-500:]}")
        opts = {"listen_addresses": "", "unix_socket_directories": str(self.sockets), "fsync": "on",
                "shared_buffers": "32MB", "max_connections": "20", "autovacuum": "off",
                "logging_collector": "off", "max_wal_size": "1GB", **self.startup_options,
                **dict(self.setting.config)}
        args = [str(bindir / "postgres"), "-D", str(self.data)]
        for k, v in opts.items():
            args += ["-c", f"{k}={v}"]
        self.log = self.sockets / "postgres.log"
        logf = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         preexec_fn=self._run_as(), cwd=self.sockets)
        finally:
            logf.close()
        self._wait_ready()
        if initdb:
            self.prepare("log")
        return self

    def _admin(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(**self._conninfo(), autocommit=True) as c:
            c.execute("SET synchronous_commit TO on")  # durable, whatever the setting under test
            c.execute(sql)

    def prepare(self, name: str) -> None:
        self._admin(f"CREATE TABLE IF NOT EXISTS {name} (id bigserial PRIMARY KEY, payload bytea)")

    def forget(self, name: str) -> None:
        # no CHECKPOINT here: the restart after a cut ends its recovery with one (PostgreSQL 15 logs
        # "checkpoint starting: end-of-recovery"), so the next recovery replays only the next cut's WAL
        self._admin(f"DROP TABLE IF EXISTS {name}")

    def _wait_ready(self):
        import psycopg
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise DatabaseError(f"postgres exited with {self.proc.returncode}: {_tail(self.log)}")
            try:
                psycopg.connect(**self._conninfo(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise DatabaseError(f"postgres did not accept connections in {START_TIMEOUT_S:.0f} s: "
                                        f"{_tail(self.log)}") from None
                time.sleep(0.02)

    def _conninfo(self) -> dict:
        return {"host": str(self.sockets), "user": "postgres", "dbname": "postgres"}

    def client(self, name: str = "log"):
        return _PGClient(self._conninfo(), name)

    def restart(self):
        """Start the server again on the data directory it has (after a kill or a power cut)."""
        self.kill()
        return self.start(initdb=False)

    def version(self) -> str:
        r = subprocess.run([str(postgres_bin() / "postgres"), "--version"], capture_output=True, text=True)
        return r.stdout.strip()


class _PGClient:
    def __init__(self, info: dict, name: str):
        import psycopg
        self.conn = psycopg.connect(**info, autocommit=True)
        self.cur = self.conn.cursor()
        self.insert = f"INSERT INTO {name} (payload) VALUES (%s)"
        self.name = name

    def commit(self, payload: bytes) -> None:
        self.cur.execute(self.insert, (payload,))

    def count(self) -> int:
        return self.cur.execute(f"SELECT count(*) FROM {self.name}").fetchone()[0]

    def check(self) -> str:
        self.cur.execute("SELECT 1")
        return "ok"

    def close(self) -> None:
        self.conn.close()


class Redis(Database):
    """redis-server as our child: append-only file in the target, a Unix socket only (--port 0)."""

    db = "redis"

    def start(self, fresh: bool = True):
        _require(self.db)
        self.exe = exe = shutil.which("redis-server")
        if fresh:
            self.home.mkdir(parents=True, exist_ok=False)
        if self.sockets is None:
            self.sockets = _socket_dir("redis")
        self.sock = self.sockets / "redis.sock"
        self.log = self.sockets / "redis.log"
        args = [exe, "--port", "0", "--unixsocket", str(self.sock), "--unixsocketperm", "700",
                "--dir", str(self.home), "--appendonly", "yes", "--save", "", "--daemonize", "no",
                "--logfile", str(self.log), "--protected-mode", "yes", "--aof-use-rdb-preamble", "no"]
        for k, v in self.setting.config:
            args += [f"--{k}", v]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent(), cwd=self.sockets)
        import redis
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise DatabaseError(f"redis-server exited with {self.proc.returncode}: {_tail(self.log)}")
            try:
                r = redis.Redis(unix_socket_path=str(self.sock), socket_connect_timeout=2)
                r.ping()
                r.close()
                break
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise DatabaseError(f"redis-server did not answer in {START_TIMEOUT_S:.0f} s: "
                                        f"{_tail(self.log)}") from None
                time.sleep(0.01)
        return self

    def restart(self):
        self.kill()
        return self.start(fresh=False)

    def client(self, name: str = "log"):
        return _RedisClient(str(self.sock), name)

    def forget(self, name: str) -> None:
        c = _RedisClient(str(self.sock), name)
        try:
            c.conn.delete(name)
        finally:
            c.close()

    def version(self) -> str:
        r = subprocess.run([shutil.which("redis-server") or "redis-server", "--version"], capture_output=True,
                           text=True)
        return r.stdout.strip().split(" sha=")[0]


class _RedisClient:
    def __init__(self, sock: str, name: str):
        import redis
        self.conn = redis.Redis(unix_socket_path=sock)
        self.name = name

    def commit(self, payload: bytes) -> None:
        self.conn.rpush(self.name, payload)

    def count(self) -> int:
        return int(self.conn.llen(self.name))

    def check(self) -> str:
        return "ok" if self.conn.ping() else "no reply"

    def close(self) -> None:
        self.conn.close()


CLASSES = {"sqlite": SQLite, "postgres": Postgres, "redis": Redis}


def open_database(directory, setting: Setting, name: str | None = None) -> Database:
    """The database of ``setting`` on ``directory``, not yet started (use it as a context manager)."""
    return CLASSES[setting.db](directory, setting, name)


def reachable_directory(directory: str | os.PathLike) -> tuple[Path, str]:
    """A directory on ``directory``'s filesystem where every server we start can work: ``directory``
    itself when they can reach it, else ``/var/tmp/fsyncstudy-realdb-<our uid>`` when that is on the same
    filesystem (made here and opened to other users; each run's files in it are removed as anywhere).
    A clone in a directory closed to other users (mode 0700, as a home often is) keeps PostgreSQL,
    which runs as its own user, out of everything inside it.  Returns (directory, "" or a sentence on
    why the other one was taken)."""
    d = Path(directory).resolve()
    if os.getuid() != 0 or "postgres" in availability():
        return d, ""
    pw = pwd.getpwnam(Postgres.USER)
    uid, gid = pw.pw_uid, pw.pw_gid

    def reaches(path: Path) -> bool:
        return subprocess.run(["test", "-x", str(path)], preexec_fn=_die_with_parent(uid, gid)).returncode == 0
    if reaches(d):
        return d, ""
    alt = Path("/var/tmp") / f"fsyncstudy-realdb-{os.getuid()}"
    try:
        alt.mkdir(mode=0o755, exist_ok=True)
        if alt.is_symlink() or alt.stat().st_uid != os.getuid():
            return d, ""   # not ours: leave it
        alt.chmod(0o755)
        same = alt.stat().st_dev == d.stat().st_dev
    except OSError:
        return d, ""
    if not same or not reaches(alt):
        return d, ""
    return alt, (f"PostgreSQL runs as the {Postgres.USER} user, which cannot reach {d} (a directory on the way is "
                 f"closed to other users), so the databases and their predictions ran in {alt}, on the same filesystem")


def availability() -> dict[str, str]:
    """{database: why it cannot run here} for each database that cannot (empty: all three can)."""
    out = {}
    try:
        import psycopg  # noqa: F401
        postgres_bin()
        pwd.getpwnam(Postgres.USER)
    except ImportError:
        out["postgres"] = "the PostgreSQL client psycopg is not installed (pip install 'psycopg[binary]')"
    except DatabaseMissing as e:
        out["postgres"] = str(e)
    except KeyError:
        out["postgres"] = f"there is no {Postgres.USER!r} user to run PostgreSQL as (it refuses root)"
    try:
        import redis  # noqa: F401
        if shutil.which("redis-server") is None:
            out["redis"] = "redis-server is not installed (Debian: apt-get install redis-server)"
    except ImportError:
        out["redis"] = "the Redis client redis-py is not installed (pip install redis)"
    return out


def _require(db: str) -> None:
    """DatabaseMissing, saying why, when ``db`` cannot run here (``availability``)."""
    why = availability().get(db)
    if why:
        raise DatabaseMissing(why)


def remove_stale(directory: str | os.PathLike) -> list[str]:
    """Remove the data directories of runs that are gone (``.fsyncstudy-realdb-<pid>-*`` in
    ``directory`` whose pid is not alive on this machine), and their socket directories: what a
    SIGKILLed run could not clean up.  Returns the names removed from ``directory``."""
    removed = []
    for d, prefix in ((directory, PREFIX), (tempfile.gettempdir(), SOCKET_PREFIX)):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            if not n.startswith(prefix):
                continue
            rest = n[len(prefix):]
            if prefix == SOCKET_PREFIX:
                db, _, rest = rest.partition("-")
                if db not in DATABASES:
                    continue
            pid = rest.split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
                shutil.rmtree(os.path.join(d, n), ignore_errors=True)
                if d == directory:
                    removed.append(n)
    return removed


# -- the workload ----------------------------------------------------------------------------------

_GO = struct.Struct("<qq")     # start, deadline (CLOCK_MONOTONIC ns)


def _client_proc(conn_w: int, go_r: int, factory, payload: bytes, due=None) -> None:  # pragma: no cover - a child
    """One client process: connect, say ready, wait for the start, commit until the deadline, report.

    ``due`` None: a closed loop (the next commit when the last returned; latency = the call).  Else
    the intended arrival times (ns from the start) of an open loop: each commit is issued at its
    arrival or, if the client is still busy, as soon as it is free, and its latency is timed from its
    arrival; arrivals stop at the deadline, and what is still unserved DRAIN later is counted."""
    import pickle

    from .engine import wait_until
    from .load import DRAIN, DRAIN_MIN_S
    try:
        c = factory()
        os.write(conn_w, b"R")
        buf = b""
        while len(buf) < _GO.size:
            chunk = os.read(go_r, _GO.size - len(buf))
            if not chunk:
                os._exit(0)
            buf += chunk
        start, deadline = _GO.unpack(buf)
        while time.monotonic_ns() < start:
            pass
        lat = array.array("d")
        cpu0 = time.process_time()
        spin_ns = 0
        n, now, unserved, in_time = 0, time.monotonic_ns(), 0, 0
        if due is None:
            while now < deadline:
                c.commit(payload)
                t = time.monotonic_ns()
                lat.append((t - now) / 1e3)
                now = t
                n += 1
            in_time = n
        else:
            stop = deadline + int(max(DRAIN * (deadline - start), DRAIN_MIN_S * 1e9))
            for k, d in enumerate(due):
                at = start + d
                if time.monotonic_ns() > stop:
                    unserved = len(due) - k    # still queued: their wait so far is a lower bound
                    lat.extend((now - (start + x)) / 1e3 for x in due[k:])
                    break
                if at > time.monotonic_ns():
                    spin_ns += wait_until(at, clk=time.monotonic_ns)
                c.commit(payload)
                now = time.monotonic_ns()
                lat.append((now - at) / 1e3)
                n += 1
                in_time += now <= deadline
        cpu = time.process_time() - cpu0 - spin_ns / 1e9
        blob = pickle.dumps({"n": n, "end": now, "lat": lat.tobytes(), "cpu_s": cpu, "unserved": unserved,
                             "in_time": in_time, "scheduled": len(due) if due is not None else n})
    except BaseException as e:
        c = None
        blob = pickle.dumps({"error": f"{type(e).__name__}: {str(e)[:500]}"})
    os.write(conn_w, b"D" + struct.pack("<q", len(blob)))
    view = memoryview(blob)
    while view:
        view = view[os.write(conn_w, view):]
    # keep the connection (and the server's process serving it) until the parent has read the
    # server's counters: it closes the pipe when it has
    while os.read(go_r, 64):
        pass
    if c is not None:
        c.close()
    os._exit(0)


def _read_exact(fd: int, n: int, deadline: float) -> bytes:
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise DatabaseError("a client did not answer in time")
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise DatabaseError("a client died without a word")
        buf += chunk
    return buf


@dataclass
class Workload:
    """What a run of ``clients`` clients measured (closed loop, or open at a rate)."""

    commits: int
    elapsed_s: float
    commits_per_sec: float
    latency_us_p50: float | None
    latency_us_p99: float | None
    latency_us_max: float | None
    latency_hist: str           # commit latencies in ns, ``measures.histogram``
    client_cpu_us_per_commit: float | None
    server_cpu_us_per_commit: float | None
    server_write_calls_per_commit: float | None
    server_write_bytes_per_commit: float | None
    device_flushes_per_commit: float | None
    device_bytes_per_commit: float | None
    #: Open loop only (None in a closed loop): commits offered and achieved a second, commits still
    #: queued when the drain ran out, and whether it kept up (achieved >= 97% of offered, none left).
    offered_rate: float | None = None
    achieved_rate: float | None = None
    unserved: int | None = None
    saturated: bool | None = None


def run_workload(factory, clients: int, duration_s: float, payload_bytes: int = PAYLOAD_BYTES,
                 server_pids=lambda: [], block_device: str | None = None, rate: float | None = None,
                 arrivals: str = "poisson", seed: int = 0) -> Workload:
    """Run ``clients`` client processes (each ``factory()`` is one connection) of single-row commits
    for ``duration_s`` after all are connected, and count what it cost: a closed loop, or with
    ``rate`` an open one (each client offered rate / clients commits a second, ``arrivals`` constant
    or Poisson from ``seed``; latency from each commit's intended arrival, as ``fsyncstudy.load``)."""
    from .load import schedule
    import pickle
    if not isinstance(duration_s, (int, float)) or isinstance(duration_s, bool) or not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration must be a number of seconds in (0, {MAX_DURATION_S:g}], got {duration_s!r}")
    if not isinstance(clients, int) or isinstance(clients, bool) or not 1 <= clients <= MAX_CLIENTS:
        raise ValueError(f"clients must be an integer in 1..{MAX_CLIENTS}, got {clients!r}")
    if not isinstance(payload_bytes, int) or not 0 <= payload_bytes <= 1 << 20:
        raise ValueError(f"payload_bytes must be an integer in 0..1 MiB, got {payload_bytes!r}")
    payload = (bytes(range(256)) * (payload_bytes // 256 + 1))[:payload_bytes]
    dues = [None] * clients
    if rate is not None:
        dues = [schedule(rate / clients, duration_s, arrivals, seed=seed * 1000 + k) for k in range(clients)]
    kids = []
    try:
        for due in dues:
            r, w = os.pipe()
            gr, gw = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child: it never returns into the parent's frames (their
                try:          # cleanup is the parent's: a child unwinding there would stop the server)
                    os.close(r)
                    os.close(gw)
                    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides when to stop
                    _client_proc(w, gr, factory, payload, due)
                finally:
                    os._exit(1)
            os.close(w)
            os.close(gr)
            kids.append((pid, r, gw))
        deadline = time.monotonic() + READY_TIMEOUT_S
        for pid, r, _ in kids:
            tag = _read_exact(r, 1, deadline)
            if tag != b"R":  # it failed before it was ready: its report follows
                size = struct.unpack("<q", _read_exact(r, 8, deadline))[0]
                raise DatabaseError(f"a client could not start: {pickle.loads(_read_exact(r, size, deadline))}")
        dev0, srv0 = device_counters(block_device), proc_counters(server_pids())
        start = time.monotonic_ns() + 20_000_000
        end = start + int(duration_s * 1e9)
        for _, _, gw in kids:
            os.write(gw, _GO.pack(start, end))
        results = []
        deadline = time.monotonic() + duration_s + 60
        for _, r, _ in kids:
            if _read_exact(r, 1, deadline) != b"D":
                raise DatabaseError("a client broke the protocol")
            size = struct.unpack("<q", _read_exact(r, 8, deadline))[0]
            results.append(pickle.loads(_read_exact(r, size, deadline)))
        dev1, srv1 = device_counters(block_device), proc_counters(server_pids())
    finally:
        for pid, r, gw in kids:   # the end of the pipe tells each client to close its connection and go
            for fd in (r, gw):
                try:
                    os.close(fd)
                except OSError:
                    pass
        give_up = time.monotonic() + 5
        for pid, _, _ in kids:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > give_up:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.002)
    errors = [x["error"] for x in results if "error" in x]
    if errors:
        raise DatabaseError(f"a client failed: {errors[0]}")
    n = sum(x["n"] for x in results)
    elapsed = (max(x["end"] for x in results) - start) / 1e9
    lat = array.array("d")
    for x in results:
        lat.frombytes(x["lat"])
    s = sorted(lat)
    per = (lambda v: v / n) if n else (lambda v: None)
    dev = {k: (dev1[k] - dev0[k]) if dev0 and dev1 and dev0[k] is not None else None
           for k in ("flushes", "write_bytes")}
    return Workload(
        commits=n, elapsed_s=elapsed, commits_per_sec=n / elapsed if elapsed > 0 else 0.0,
        latency_us_p50=measures.percentile(s, 50) if s else None,
        latency_us_p99=measures.percentile(s, 99) if len(s) >= 100 else None,
        latency_us_max=s[-1] if s else None,
        latency_hist=measures.encode_histogram(measures.histogram([v * 1e3 for v in s], presorted=True)),  # ns
        client_cpu_us_per_commit=per(sum(x["cpu_s"] for x in results) * 1e6),
        server_cpu_us_per_commit=per((srv1["cpu_s"] - srv0["cpu_s"]) * 1e6) if server_pids() else None,
        server_write_calls_per_commit=per(srv1["write_calls"] - srv0["write_calls"]) if server_pids() else None,
        server_write_bytes_per_commit=per(srv1["write_bytes"] - srv0["write_bytes"]) if server_pids() else None,
        device_flushes_per_commit=per(dev["flushes"]) if dev["flushes"] is not None else None,
        device_bytes_per_commit=per(dev["write_bytes"]) if dev["write_bytes"] is not None else None,
        **({} if rate is None else _open_loop(results, rate, duration_s)))


def _open_loop(results: list[dict], rate: float, duration_s: float) -> dict:
    scheduled = sum(x["scheduled"] for x in results)
    achieved = sum(x["in_time"] for x in results) / duration_s
    unserved = sum(x["unserved"] for x in results)
    return {"offered_rate": scheduled / duration_s, "achieved_rate": achieved, "unserved": unserved,
            "saturated": unserved > 0 or achieved < 0.97 * scheduled / duration_s}


def measure(setting: Setting, directory, duration_s: float = 0.5, clients: int | None = None,
            payload_bytes: int = PAYLOAD_BYTES, block_device: str | None = None, rate: float | None = None,
            seed: int = 0) -> tuple[Workload, str]:
    """Start ``setting``'s database on ``directory``, run the workload (closed loop, or open at
    ``rate`` commits a second), stop it; (result, version)."""
    with open_database(directory, setting) as db:
        w = run_workload(db.client, clients or setting.clients, duration_s, payload_bytes,
                         server_pids=db.pids, block_device=block_device, rate=rate, seed=seed)
        return w, db.version()


# -- power cuts ------------------------------------------------------------------------------------

#: Cut moments are drawn uniformly from a window after the client is ready: from CUT_FROM_MS to
#: CUT_SPAN times the setting's promised loss window (so cuts fall before, inside and past it), at
#: least CUT_MIN_MS.  A durable setting is tested as well by a short window as by a long one: what
#: it must not lose is its last commits.
#: Settings with no bound in time get CUT_UNBOUNDED_MS: on lab:powercut SQLite's WAL with
#: synchronous=NORMAL checkpoints about every 150 ms (1,000 pages), so 600 ms spans several
#: checkpoints, and what a no-sync setting loses grows with the run either way.
#: (Until 2026-11-29 the bounds were 400 and 1,000 ms; shortened to fit 100 cuts of every setting
#: in the standard profile's budget.)
CUT_FROM_MS, CUT_MIN_MS, CUT_UNBOUNDED_MS, CUT_SPAN = 30.0, 250.0, 600.0, 1.5


def cut_window_ms(setting: Setting) -> tuple[float, float]:
    if setting.promise_ms is None:
        return CUT_FROM_MS, CUT_UNBOUNDED_MS
    return CUT_FROM_MS, max(CUT_MIN_MS, CUT_SPAN * setting.promise_ms)


@dataclass
class CutResult:
    """One power cut under a database: what was acknowledged, what the reopened database holds."""

    db: str
    setting: str
    cut: int
    seed: int
    cut_after_ms: float
    acked: int
    recovered: int | None
    lost_acked: int | None
    oldest_lost_age_ms: float | None
    newest_ack_age_ms: float | None
    opened: bool
    open_error: str
    promise_ms: float | None
    target: str
    error: str = ""


def _ack_client(ack_w: int, factory, payload: bytes) -> None:  # pragma: no cover - a child
    c = factory()
    cuts.ready(ack_w)
    n = 0
    while True:
        c.commit(payload)
        n += 1
        cuts.ack(ack_w, n)


def cut_moment_ms(seed: int, setting: Setting, k: int) -> float:
    return cuts.moment_ms(seed, cut_window_ms(setting), setting.key, k)


class CutSession:
    """One database on the power-cut mount, kept across the cuts of one setting (a fresh table, file
    or key per cut, made durable before the cut's clock starts), so a cut costs a restart and a
    recovery, not an initdb through the FUSE filesystem (Redis: a fresh server per cut, see ``_up``).  A database that does not come back after a
    cut is recorded as such and replaced by a fresh one for the next cut.

    Each cut: start the database if it is down; one client commits and reports every
    acknowledgement the moment its commit call returns; at the seeded moment the power is cut, the
    client and the server are SIGKILLed, the power comes back, and the database is started again on
    the mount (which now serves exactly what the cut kept: the backing directory) and asked how
    many rows (list entries) of this cut it holds.
    """

    def __init__(self, setting: Setting, power: cuts.PowerCut):
        self.setting, self.power = setting, power
        self.mount, self.label = power.mount, power.label
        self.db = None
        self.generation = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.db is not None:
            self.db.stop()
            self.db = None

    def _fresh(self):
        self.close()
        self.generation += 1
        self.db = open_database(self.mount, self.setting, name=f"cuts{self.generation}")
        self.db.exclusive = True  # SQLite: see SQLite.exclusive
        self.db.wal_segsize_mb = 1  # PostgreSQL: see Postgres.wal_segsize_mb
        self.db.startup_options = {"recovery_init_sync_method": "syncfs"}  # and Postgres.startup_options
        self.db.start()

    def _up(self):
        # Redis starts in milliseconds but loads its whole append-only file at every start: a fresh
        # server per cut keeps a restart's load to that cut's commits
        if self.db is None or self.setting.db == "redis":
            self._fresh()
        elif self.setting.db != "sqlite" and self.db.proc is None:
            self.db.restart()

    def cut(self, k: int, seed: int = 0) -> CutResult:
        s = self.setting
        after = cut_moment_ms(seed, s, k)
        payload = (bytes(range(256)) * 2)[:PAYLOAD_BYTES]
        self._up()
        name = f"log{k}"
        self.db.prepare(name)
        db = self.db
        try:
            seen = cuts.run_cut(lambda fd: _ack_client(fd, lambda: db.client(name), payload), after, self.power,
                                who="client", also_kill=db.kill, ready_timeout_s=READY_TIMEOUT_S,
                                context=lambda: _tail(db.log) if db.log else "")
        except cuts.CutError as e:
            raise DatabaseError(str(e)) from None
        finally:
            self.power.restore()
        recovered, opened, why = self._reopen(name)
        return CutResult(db=s.db, setting=s.name, cut=k, seed=seed, cut_after_ms=after, recovered=recovered,
                         **seen.tally(recovered), opened=opened, open_error=why, promise_ms=s.promise_ms,
                         target=self.label)

    def _reopen(self, name: str) -> tuple[int | None, bool, str]:
        """(rows of this cut, whether the database opened, why not): the database started again on
        what the cut kept; one that does not come back is replaced for the next cut."""
        try:
            if self.setting.db != "sqlite":
                self.db.restart()
            c = self.db.client(name)
            try:
                check = c.check()
                n = c.count()
            finally:
                c.close()
            self.db.forget(name)
            if check != "ok":
                self.close()
                return n, False, f"integrity check: {check[:200]}"
            return n, True, ""
        except Exception as e:
            self.close()
            return None, False, f"{type(e).__name__}: {str(e)[:300]}"


def one_cut(setting: Setting, power: cuts.PowerCut, k: int, seed: int = 0) -> CutResult:
    """One power cut under ``setting``'s database on a fresh instance (``CutSession`` for many)."""
    with CutSession(setting, power) as session:
        return session.cut(k, seed)


__all__ = ["BY_KEY", "CLASSES", "DATABASES", "SETTINGS", "CutResult", "Database", "DatabaseError",
           "CutSession", "DatabaseMissing", "Setting", "Workload", "availability", "device_counters", "measure", "one_cut",
           "open_database", "proc_counters", "remove_stale", "run_workload", "settings"]
