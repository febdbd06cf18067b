"""A fleet: one sweep across many hosts, on Dask distributed.

Every Dask worker is one host, named by the worker's ``--name``.  The client (this process) plans
each host's trials (its own randomized round order, on its own targets), sends them to that host one
at a time, pinned there (``workers=[address]``, ``allow_other_workers=False``: a trial never runs
elsewhere, also when its host is lost), and appends each row as it comes back to one dataset through
the dataset layer, with the host as a column and each host's environment in ``meta.json``.  Hosts run
in parallel; on a host, each round runs in a fresh worker process, as in a local sweep
(``sweep.Worker``).

Faults: a host lost mid-trial fails that trial (recorded, run again on resume) and its remaining
trials wait for the resume; a host that never joins is named in the error; a scheduler that does not
answer fails in seconds; a host whose fsyncstudy, measuring code or Python differs from the client's
is refused before anything is measured.

``local[:N]`` starts N named worker processes on this machine (``local-0`` ...) for trying it out:
they share one disk, so what they measure side by side is contention, not a fleet.

Dask is imported only here and only when a fleet is used: the node and the local study never load it.
"""
from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, dataset, loadstudy, runner, sweep
from .places import default_targets, resolve_all
from .targets import Target, describe

#: A fleet dataset is a sweep (or load) dataset, which the notebooks read as one, with more columns:
#: the Dask worker that ran the trial and that machine's hostname (the sweep has ``host`` already).
KIND, TABLE = sweep.KIND, sweep.TABLE
SCHEMA = sweep.SCHEMA + [["worker", "str"], ["hostname", "str"]]
LOAD_SCHEMA = loadstudy.SCHEMA + [["host", "str"], ["worker", "str"], ["hostname", "str"]]
#: How long to wait for the scheduler to answer, and for the hosts named to join.
CONNECT_TIMEOUT_S, JOIN_TIMEOUT_S = 5.0, 30.0


class FleetError(RuntimeError):
    """The fleet cannot run as asked; the text says why and what to do."""


def _dask():
    try:
        import distributed
    except ImportError:
        raise FleetError("a fleet needs Dask distributed: pip install 'fsyncstudy[fleet]' "
                         "(or pip install 'dask[distributed]')") from None
    return distributed


# -- on each host (these run inside a Dask worker) --------------------------------------------------

def host_facts() -> dict:
    """What the client checks and records about a host: versions, the environment, default targets."""
    env = dataset.environment()
    return {"fsyncstudy": __version__, "engine_sha256": dataset.engine_digest(),
            "python": platform.python_version(), "hostname": socket.gethostname(),
            "kernel": platform.release(), "default_targets": default_targets(), "environment": env}


def resolve_targets(names: list[str]) -> dict:
    """On the host: its target names (paths or lab:NAME) to directories, and each one's description."""
    dirs = resolve_all(names)
    return {"dirs": dirs, "names": dict(zip(dirs, names)),
            "descriptions": {d: describe(d).as_dict() for d in dirs}}


#: The host's sweep worker process, kept for one round (a fresh process per round, as locally).
_STATE: dict = {"key": None, "worker": None}


def _close_state() -> None:
    w, _STATE["worker"], _STATE["key"] = _STATE["worker"], None, None
    if w is not None:
        w.close()


def _same_engine(digest: str) -> None:
    if digest != dataset.engine_digest():
        raise FleetError("the measuring code on this host changed since the fleet was checked")


def _stamped(row: dict) -> dict:
    """A row as the host returns it: with the Dask worker that ran it and this machine's hostname."""
    from distributed import get_worker
    row["worker"] = str(get_worker().name)
    row["hostname"] = socket.gethostname()
    return row


def run_on_host(p: sweep.Planned, prof: sweep.Profile, target: dict, dirs: list[str], run_id: str,
                digest: str) -> dict:
    """On the host: one planned trial, in this host's worker process of its round (which warms up on
    each of the host's target directories ``dirs`` first); the row."""
    _same_engine(digest)
    key = (run_id, p.round)
    if _STATE["key"] != key:
        _close_state()
        _STATE["key"], _STATE["worker"] = key, sweep.Worker(list(dirs))
    try:
        row = _STATE["worker"].run(p, prof, Target(**target))
    except BaseException:
        _close_state()
        raise
    row["boot_id"] = (dataset.machine_fingerprint()["boot_id"] or "")[:36]
    return _stamped(row)


def run_load_on_host(p: dict, prof: loadstudy.LoadProfile, target: dict, seed: int, digest: str) -> dict:
    """On the host: one planned load-study trial (open loop), in the Dask worker's process; the row."""
    _same_engine(digest)
    return _stamped(loadstudy.run_one(p, prof, Target(**target), seed))


# -- the client --------------------------------------------------------------------------------------

def parse_scheduler(scheduler: str) -> tuple[str, int | None]:
    """("local", N) for ``local`` / ``local:N``, else ("address", None) for a scheduler address."""
    s = scheduler.strip()
    if s == "local" or s.startswith("local:"):
        n = s.partition(":")[2] or "2"
        if not n.isdigit() or not 1 <= int(n) <= 16:
            raise FleetError(f"--scheduler {scheduler!r}: local:N takes N from 1 to 16")
        return "local", int(n)
    if "://" not in s:
        s = f"tcp://{s}"
    return s, None


class Fleet:
    """A connection to a Dask cluster (or a local one we start), as a context manager."""

    def __init__(self, scheduler: str, timeout_s: float = CONNECT_TIMEOUT_S, names: list[str] | None = None):
        self.scheduler, self.timeout_s, self.names = scheduler, timeout_s, names
        self.client = self.cluster = self.scratch = None

    def __enter__(self) -> "Fleet":
        distributed = _dask()
        address, n = parse_scheduler(self.scheduler)
        import logging
        try:
            if address == "local":
                # the worker processes inherit this: they say only what goes wrong, not every start
                os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
                names = self.names or [f"local-{k}" for k in range(n)]
                # Dask's scratch space (dask-scratch-space/) in a directory of ours, removed by close()
                self.scratch = tempfile.mkdtemp(prefix="fsyncstudy-dask-")
                worker = {"cls": distributed.Nanny, "options": {"nthreads": 1, "host": "127.0.0.1", "dashboard": False,
                                                                "local_directory": self.scratch}}
                self.cluster = distributed.SpecCluster(
                    scheduler={"cls": distributed.Scheduler,
                               "options": {"host": "127.0.0.1", "dashboard_address": None, "port": 0,
                                           "local_directory": self.scratch}},
                    workers={nm: {**worker, "options": {**worker["options"], "name": nm}} for nm in names},
                    silence_logs=logging.ERROR, name="fsyncstudy-local-fleet")
                self.client = distributed.Client(self.cluster, timeout=f"{self.timeout_s}s")
            else:
                self.client = distributed.Client(address, timeout=f"{self.timeout_s}s")
        except (OSError, TimeoutError) as e:
            self.close()
            raise FleetError(f"the scheduler at {address} did not answer within {self.timeout_s:.0f} s "
                             f"({type(e).__name__}: {str(e)[:200]}): is `dask scheduler` running there, and "
                             "the port reachable from here?") from None
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        scratch, self.scratch = self.scratch, None
        try:
            if client is not None:
                try:
                    client.run(_close_state)
                except Exception:
                    pass
                client.close()
            if cluster is not None:
                cluster.close()
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def hosts(self) -> dict[str, str]:
        """{host name: worker address} of the workers connected now."""
        out: dict[str, str] = {}
        for addr, info in self.client.scheduler_info(n_workers=-1)["workers"].items():
            name = str(info.get("name", addr))
            if name in out:
                raise FleetError(f"two workers are named {name!r} ({out[name]} and {addr}): start each host's "
                                 "worker with its own --name")
            out[name] = addr
        return out

    def wait_for(self, names: list[str] | None, timeout_s: float = JOIN_TIMEOUT_S) -> dict[str, str]:
        """The hosts, once every one named has joined (or at least one, if none are named)."""
        deadline = time.monotonic() + timeout_s
        while True:
            hosts = self.hosts()
            missing = [n for n in names or [] if n not in hosts]
            if (names and not missing) or (not names and hosts):
                return hosts
            if time.monotonic() > deadline:
                if not hosts:
                    raise FleetError(f"no worker joined the scheduler in {timeout_s:.0f} s: start one on each "
                                     "host (`dask worker tcp://SCHEDULER:8786 --name HOST --nthreads 1`)")
                raise FleetError(f"host{'s' if len(missing) > 1 else ''} {', '.join(missing)} did not join in "
                                 f"{timeout_s:.0f} s (joined: {', '.join(sorted(hosts))})")
            time.sleep(0.2)

    def facts(self, hosts: dict[str, str]) -> dict[str, dict]:
        """{host: host_facts()}, run on each host."""
        by_addr = self.client.run(host_facts, workers=list(hosts.values()))
        return {name: by_addr[addr] for name, addr in hosts.items() if addr in by_addr}

    def on(self, host: str, address: str, fn, *args, **kw):
        """``fn(*args)`` on that host only, its result."""
        return self.client.submit(fn, *args, workers=[address], allow_other_workers=False, pure=False,
                                  key=f"fsyncstudy-{fn.__name__}-{host}-{uuid.uuid4().hex[:8]}", **kw).result()


def version_problems(facts: dict[str, dict]) -> dict[str, str]:
    """{host: why it cannot join this client's study} for each host that cannot: another fsyncstudy,
    another measuring code, another Python (major.minor)."""
    mine = {"fsyncstudy": __version__, "engine_sha256": dataset.engine_digest(),
            "python": ".".join(platform.python_version().split(".")[:2])}
    out = {}
    for host, f in sorted(facts.items()):
        theirs = {"fsyncstudy": f["fsyncstudy"], "engine_sha256": f["engine_sha256"],
                  "python": ".".join(f["python"].split(".")[:2])}
        diff = [f"{k} {theirs[k]} (here {mine[k]})" for k in mine if theirs[k] != mine[k]]
        if diff:
            out[host] = ", ".join(diff)
    return out


def check_versions(facts: dict[str, dict]) -> list[str]:
    """``version_problems`` as lines "host: why" (empty: every host can join)."""
    return [f"{host}: {why}" for host, why in version_problems(facts).items()]


def split_targets(targets: list[str] | None, hosts: list[str]) -> dict[str, list[str] | None]:
    """``--target host:DIR`` (or host:lab:NAME) per host; a target without a known host prefix goes to
    every host; None: the host's defaults (its data disk and its tmpfs)."""
    out: dict[str, list[str] | None] = {h: None for h in hosts}
    for t in targets or []:
        host, sep, rest = t.partition(":")
        if sep and host in out and rest:
            out[host] = [*(out[host] or []), rest]
        elif sep and host not in out and not t.startswith(("lab:", "/", ".")):
            raise FleetError(f"--target {t!r}: no host named {host!r} in the fleet ({', '.join(sorted(out))})")
        else:
            for h in hosts:
                out[h] = [*(out[h] or []), t]
    return out


@dataclass
class FleetSummary(sweep.SweepSummary):
    hosts: dict[str, int] = field(default_factory=dict)       # trials run per host
    lost: dict[str, str] = field(default_factory=dict)        # hosts lost during the run, and why


@dataclass
class _Spec:
    """What differs between the studies a fleet runs (sweep, load): the rest of ``_run`` is shared."""

    what: str                      # "study", "load study": the progress bar's words
    kind: str
    table: str
    schema: list
    profile: object
    plan: object                   # (host, dirs) -> planned items, in that host's order
    ident: object                  # (host, item) -> the key ``key`` gives its row
    key: object                    # row -> key
    target_of: object              # item -> its directory on the host
    call: object                   # (host, item, description, dirs, run_id, digest) -> (fn, *args)
    failed_row: object             # (item, description, why) -> a row
    label: object                  # item -> the progress bar's words
    notes: dict = field(default_factory=dict)   # more for meta.json's notes


def _sweep_spec(profile: sweep.Profile, seed: int) -> _Spec:
    def failed(p, desc, why):
        return sweep.failed_row(p, profile, Target(**desc), why)
    return _Spec("study", KIND, TABLE, SCHEMA, profile,
                 plan=lambda h, dirs: sweep.plan(profile, dirs, f"{seed}/{h}"),
                 ident=lambda h, p: (p.round, f"{h}:{p.target}", p.config.key),
                 key=lambda r: (int(r["round"]), r["target"], r["config"]),
                 target_of=lambda p: p.target,
                 call=lambda h, p, desc, dirs, run_id, digest: (run_on_host, p, profile, desc, dirs, run_id, digest),
                 failed_row=failed, label=lambda p: f"round {p.round}, {p.config.label}",
                 notes={"trial_rule": f"each trial runs at least {profile.min_duration_s} s and at least "
                                      f"{profile.min_intervals} batch/group intervals, whichever is longer"})


def _load_spec(profile: loadstudy.LoadProfile, seed: int) -> _Spec:
    return _Spec("load study", loadstudy.KIND, loadstudy.TABLE, LOAD_SCHEMA, profile,
                 plan=lambda h, dirs: loadstudy.plan(profile, dirs, f"{seed}/{h}"),
                 ident=lambda h, p: loadstudy.ident(p, f"{h}:{p['target']}"),
                 key=loadstudy.key, target_of=lambda p: p["target"],
                 call=lambda h, p, desc, dirs, run_id, digest: (run_load_on_host, p, profile, desc, seed, digest),
                 failed_row=lambda p, desc, why: loadstudy.failed_row(p, Target(**desc), seed, why),
                 label=lambda p: f"round {p['round']}, {p['strategy']} at {p['rate']:,.0f}/s")


def run_fleet_sweep(out: str | os.PathLike, profile: sweep.Profile, scheduler: str, targets: list[str] | None = None,
                    hosts: list[str] | None = None, seed: int = 0, progress: bool = True, limit: int | None = None,
                    join_timeout_s: float = JOIN_TIMEOUT_S, fleet: Fleet | None = None) -> FleetSummary:
    """Run (or resume) ``profile``'s sweep on every host of the fleet at ``scheduler`` into ``out``.

    ``hosts``: the hosts that must take part (default: every worker connected); ``targets``: per host
    as ``host:DIR`` or for all as ``DIR``; default per host its data disk and its tmpfs.  ``fleet``: an
    open ``Fleet`` to use (tests); ``limit`` stops after that many new trials per host.
    """
    if not isinstance(profile, sweep.Profile):
        raise TypeError(f"profile must be a sweep.Profile, got {profile!r}")
    return _with_fleet(_sweep_spec(profile, seed), out, scheduler, targets, hosts, seed, progress, limit,
                       join_timeout_s, fleet)


def run_fleet_load(out: str | os.PathLike, profile: loadstudy.LoadProfile, scheduler: str,
                   targets: list[str] | None = None, hosts: list[str] | None = None, seed: int = 0,
                   progress: bool = True, limit: int | None = None, join_timeout_s: float = JOIN_TIMEOUT_S,
                   fleet: Fleet | None = None) -> FleetSummary:
    """The load study (open loop, ``loadstudy``) on every host of the fleet, as ``run_fleet_sweep``."""
    if not isinstance(profile, loadstudy.LoadProfile):
        raise TypeError(f"profile must be a loadstudy.LoadProfile, got {profile!r}")
    return _with_fleet(_load_spec(profile, seed), out, scheduler, targets, hosts, seed, progress, limit,
                       join_timeout_s, fleet)


def _with_fleet(spec, out, scheduler, targets, hosts, seed, progress, limit, join_timeout_s, fleet) -> FleetSummary:
    own = fleet is None
    fleet = fleet or Fleet(scheduler).__enter__()
    try:
        return _run(fleet, spec, out, targets, hosts, seed, progress, limit, join_timeout_s)
    finally:
        if own:
            fleet.close()


def _run(fleet: Fleet, spec: _Spec, out, targets, names, seed, progress, limit, join_timeout_s) -> FleetSummary:
    distributed = _dask()
    hosts = fleet.wait_for(names, join_timeout_s)
    if names:
        hosts = {n: hosts[n] for n in names}
    facts = fleet.facts(hosts)
    gone = sorted(set(hosts) - set(facts))
    if gone:
        raise FleetError(f"host{'s' if len(gone) > 1 else ''} {', '.join(gone)} left before the check")
    bad = check_versions(facts)
    if bad:
        raise FleetError("refused before measuring: these hosts run other versions than this client "
                         f"(fsyncstudy {__version__}, Python {platform.python_version()}): " + "; ".join(bad))
    wanted = split_targets(targets, sorted(hosts))
    resolved = {}
    for h in sorted(hosts):
        try:
            resolved[h] = fleet.on(h, hosts[h], resolve_targets, wanted[h] or facts[h]["default_targets"])
        except Exception as e:   # the host's own error (a directory that does not exist there)
            raise FleetError(f"{h}: {type(e).__name__}: {e}") from None
    keyed = {f"{h}:{d}": (h, d) for h in sorted(hosts) for d in resolved[h]["dirs"]}
    plan_ = {"profile": dataset.plan_of(spec.profile), "seed": seed, "fleet": {h: resolved[h]["dirs"] for h in sorted(hosts)}}
    notes = {"fleet": {h: {k: facts[h][k] for k in ("fsyncstudy", "python", "hostname", "kernel")}
                       for h in sorted(hosts)},
             "hosts": {h: facts[h]["environment"] for h in sorted(hosts)},
             "target_names": {k: resolved[h]["names"][d] for k, (h, d) in keyed.items()}, **spec.notes}
    ds = dataset.open_or_resume(out, spec.kind, plan_, spec.schema, spec.table,
                                targets={k: resolved[h]["descriptions"][d] for k, (h, d) in keyed.items()},
                                notes=notes)
    done = ds.done(spec.key, lambda r: r["status"] == "ok")
    queues: dict[str, deque] = {}
    for h in sorted(hosts):
        # the host's own round order: its seed is the study's and its name
        todo = [p for p in spec.plan(h, resolved[h]["dirs"]) if spec.ident(h, p) not in done]
        queues[h] = deque(todo[:limit] if limit is not None else todo)
    todo = [(h, p) for h in sorted(hosts) for p in queues[h]]
    summary = FleetSummary(out=Path(out), planned=len(todo) + len(done), skipped=len(done))
    run_id = uuid.uuid4().hex[:12]

    def failed(h: str, p, why: str) -> dict:
        return spec.failed_row(p, resolved[h]["descriptions"][spec.target_of(p)], why)

    def on_dask(_todo, starting):
        """runner.fill's executor: each host works through its own queue, one trial at a time, in its
        worker; rows are yielded as they finish, a lost host's trial as failed (its queue then dropped)."""
        running: dict = {}

        def submit(h: str) -> None:
            p = queues[h].popleft()
            fn, *args = spec.call(h, p, resolved[h]["descriptions"][spec.target_of(p)], resolved[h]["dirs"], run_id,
                                  facts[h]["engine_sha256"])
            fut = fleet.client.submit(fn, *args, workers=[hosts[h]], allow_other_workers=False, pure=False,
                                      retries=0, key=f"fsyncstudy-{spec.kind}-{run_id}-{h}-{uuid.uuid4().hex[:8]}")
            running[fut] = (h, p)
        try:
            for h in sorted(hosts):
                if queues[h]:
                    submit(h)
            while running:
                try:
                    finished, _ = distributed.wait(list(running), timeout=1.0, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    finished = set()
                for fut in finished:
                    h, p = running.pop(fut)
                    try:
                        row = fut.result()
                    except Exception as e:
                        row = failed(h, p, f"{type(e).__name__}: {str(e)[:300]} (on {h})")
                    starting((h, p))
                    yield (h, p), row
                    if queues[h] and h not in summary.lost:
                        submit(h)
                if not finished:
                    alive = set(fleet.hosts().values())
                    for fut, (h, p) in list(running.items()):
                        if hosts[h] not in alive:
                            running.pop(fut)
                            fut.cancel()
                            why = f"the worker of host {h} ({hosts[h]}) left the cluster"
                            summary.lost[h] = why
                            queues[h].clear()
                            yield (h, p), failed(h, p, f"WorkerLost: {why} during this trial")
        finally:
            for fut in running:
                fut.cancel()
            running.clear()

    def count_host(item, row: dict, summary: FleetSummary) -> None:
        summary.hosts[item[0]] = summary.hosts.get(item[0], 0) + 1

    def record(item, row: dict) -> dict:
        h, p = item
        row["target"] = f"{h}:{spec.target_of(p)}"
        row["target_label"] = f"{h}: {row.get('target_label') or spec.target_of(p)}"
        row["host"] = h
        row["run_id"] = run_id
        row.setdefault("hostname", facts[h]["hostname"])
        return row

    def execute(todo_, starting):
        for item, row in on_dask(todo_, starting):
            yield item, record(item, row)
    runner.fill(ds, summary, todo, label=f"fleet {spec.profile.name} {spec.what} on {len(hosts)} hosts", unit="trial",
                progress=progress, postfix=lambda item: f"{item[0]}: {spec.label(item[1])}", after=count_host,
                execute=execute)
    for h, why in summary.lost.items():
        summary.notes.append(f"{why}: its trial then was recorded failed and its remaining trials did not run; "
                             "the same command resumes them")
    return summary


def status(scheduler: str, timeout_s: float = CONNECT_TIMEOUT_S) -> list[dict]:
    """Each host of the fleet: its address, versions, kernel, default targets, and whether this client
    would accept it."""
    with Fleet(scheduler, timeout_s) as fleet:
        hosts = fleet.wait_for(None, timeout_s)
        facts = fleet.facts(hosts)
        bad = version_problems(facts)
        return [{"host": h, "address": hosts[h], "hostname": facts[h]["hostname"],
                 "fsyncstudy": facts[h]["fsyncstudy"], "python": facts[h]["python"], "kernel": facts[h]["kernel"],
                 "default_targets": facts[h]["default_targets"], "refused": bad.get(h, "")}
                for h in sorted(facts)]


__all__ = ["Fleet", "FleetError", "FleetSummary", "LOAD_SCHEMA", "SCHEMA", "check_versions", "host_facts",
           "parse_scheduler", "run_fleet_load", "run_fleet_sweep", "split_targets", "status", "version_problems"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit("fsyncstudy.fleet is a library: python -m fsyncstudy sweep --scheduler ...")
