"""The settings table: each database's durability settings, the strategy that predicts each, and
what its documentation promises at a power cut; our names, limits and errors."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..strategies import parse

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
