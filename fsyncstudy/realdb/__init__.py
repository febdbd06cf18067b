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

The package: ``settings`` (the table, names, limits, errors), ``servers`` (processes we start, the three
databases and their clients, counters), ``workload`` (the clients' closed and open loops, ``measure``),
``power`` (``CutSession`` on the power-cut harness ``fsyncstudy.cuts``).
"""

from .settings import (  # noqa: F401
    SETTINGS, BY_KEY, DATABASES, DatabaseError, DatabaseMissing, GROUP_CLIENTS, MAX_CLIENTS,
    MAX_DURATION_S, PAYLOAD_BYTES, PREFIX, READY_TIMEOUT_S, SOCKET_PREFIX, SQLITE_FRAME_PAYLOAD,
    START_TIMEOUT_S, Setting, settings)
from .servers import (  # noqa: F401
    CLASSES, Database, Postgres, QUIET_WINDOW_S, Redis, SQLite,
    availability, device_counters, open_database, postgres_bin, proc_counters, quiet_flushes_per_sec,
    reachable_directory, remove_stale)
from .workload import (  # noqa: F401
    Workload, measure, run_workload)
from .power import (  # noqa: F401
    CUT_FROM_MS, CUT_MIN_MS, CUT_SPAN, CUT_UNBOUNDED_MS, CutResult, CutSession,
    cut_moment_ms, cut_window_ms, one_cut)

__all__ = ['BY_KEY', 'CLASSES', 'CUT_FROM_MS', 'CUT_MIN_MS', 'CUT_SPAN', 'CUT_UNBOUNDED_MS', 'CutResult', 'CutSession', 'DATABASES', 'Database', 'DatabaseError', 'DatabaseMissing', 'GROUP_CLIENTS', 'MAX_CLIENTS', 'MAX_DURATION_S', 'PAYLOAD_BYTES', 'PREFIX', 'Postgres', 'QUIET_WINDOW_S', 'READY_TIMEOUT_S', 'Redis', 'SOCKET_PREFIX', 'SETTINGS', 'SQLITE_FRAME_PAYLOAD', 'SQLite', 'START_TIMEOUT_S', 'Setting', 'Workload', 'availability', 'cut_moment_ms', 'cut_window_ms', 'device_counters', 'measure', 'one_cut', 'open_database', 'postgres_bin', 'proc_counters', 'quiet_flushes_per_sec', 'reachable_directory', 'remove_stale', 'run_workload', 'settings']
