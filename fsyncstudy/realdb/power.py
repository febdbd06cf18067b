"""Power cuts under a database (``cuts.run_cut``, the harness our own writers use): one database kept
across a setting's cuts, reopened on what each cut kept."""
from __future__ import annotations

from dataclasses import dataclass

from .. import cuts
from .settings import DatabaseError, PAYLOAD_BYTES, READY_TIMEOUT_S, Setting
from .servers import _tail, open_database


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
