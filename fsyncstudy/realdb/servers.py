"""The servers and their clients: SQLite, PostgreSQL and Redis started by us as our children, on a
Unix socket, in a directory of the target; their processes' and the device's counters."""
from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from .settings import DATABASES, DatabaseError, DatabaseMissing, PREFIX, SOCKET_PREFIX, START_TIMEOUT_S, Setting


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

    def stop(self) -> None:
        # an immediate shutdown first (SIGQUIT to the postmaster: no checkpoint, as abrupt for the data as
        # a kill), because the postmaster then removes its shared memory; a SIGKILL leaves its System V
        # segment and its dynamic segments in /dev/shm behind for good (625 of them, 310 MB of RAM, on
        # this machine by 2026-12-07).  After a kill the next start removes the old ones itself.
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGQUIT)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        super().stop()

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
