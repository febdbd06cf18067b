"""The study's sweep: a grid of configurations on several targets, repeated in randomized
rounds, every finished trial appended durably to the ``trials.csv`` of a dataset
(``fsyncstudy.dataset``); resumable.

The plan (which trial runs in which round, in which order) is a pure function of the
profile, the targets and the seed, so a re-run of the same study skips the trials that
already have a good row and runs only the rest (a failed trial runs again).  The named
profiles are ``fsyncstudy.profiles.PROFILES``.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from . import dataset, runner
from .log import remove_stale
from .places import default_targets, resolve_all
from .strategies import parse
from .targets import Target, describe, strip_verdict, table_label
from .trial import TrialResult, human_bytes, run_trial

#: The dataset kind, and its table.
KIND, TABLE = "sweep", "trials.csv"


@dataclass(frozen=True)
class Config:
    """One point of the grid: a strategy and how it is run."""

    strategy: str
    writers: int = 1
    prealloc: str = "append"
    sync_method: str = "fdatasync"
    #: the write path beyond the sync method (docs/strategies.md#write-paths); the defaults are the plain
    #: path, whose key and label stay what they were before the write paths existed
    write_mode: str = "per-entry"
    bytes_per_sync: int = 0
    segment_bytes: int = 0
    recycle: int = 0

    @property
    def key(self) -> str:
        return f"{self.strategy}/w{self.writers}/{self.prealloc}/{self.sync_method}" + "".join(
            f"/{part}" for part in self._path_parts(short=True))

    def _path_parts(self, short: bool) -> list[str]:
        parts = []
        if self.write_mode != "per-entry":
            parts.append(self.write_mode)
        if self.bytes_per_sync:
            parts.append(f"bps{self.bytes_per_sync}" if short else f"sync_file_range every {human_bytes(self.bytes_per_sync)}")
        if self.segment_bytes:
            parts.append(f"seg{self.segment_bytes}" if short else f"{human_bytes(self.segment_bytes)} segments")
            if self.recycle:
                parts.append(f"recycle{self.recycle}" if short else f"{self.recycle} recycled")
        return parts

    @property
    def label(self) -> str:
        extra = []
        if self.writers != 1:
            extra.append(f"{self.writers} writers")
        if self.prealloc != "append":
            extra.append(self.prealloc)
        if self.sync_method != "fdatasync":
            extra.append(self.sync_method)
        extra += self._path_parts(short=False)
        return self.strategy + (f" ({', '.join(extra)})" if extra else "")

    @property
    def path_options(self) -> dict:
        """``run_trial``'s write-path keywords for this configuration."""
        return {"write_mode": self.write_mode, "bytes_per_sync": self.bytes_per_sync,
                "segment_bytes": self.segment_bytes, "recycle": self.recycle}


@dataclass(frozen=True)
class Profile:
    """How much to measure.

    Trial length rule: a trial runs at least ``min_duration_s`` and at least
    ``min_intervals`` batch/group intervals, whichever is longer (and at least one entry).
    """

    name: str
    trials: int
    warmup_rounds: int
    min_duration_s: float
    min_intervals: int
    batch_ms: tuple[int, ...]
    group: tuple[tuple[int, int], ...]            # (interval ms, writers)
    prealloc_compare: tuple[str, ...] = ("always", "batch_10ms")
    prealloc_modes: tuple[str, ...] = ("zero-fill",)
    #: How long a warm-up trial runs (None: as long as a counted one).  A warm-up round is not counted:
    #: it brings each target and configuration to a steady state (files, caches, the lab's daemons), which
    #: a short trial does as well as a long one (at least one interval of a batch or group strategy)
    warmup_duration_s: float | None = None
    #: The write paths (docs/strategies.md#write-paths), on every target that can be durable (on a volatile
    #: one a sync is a no-op, and so is every difference between the paths' syncs)
    write_paths: tuple[Config, ...] = ()
    #: Configurations for a filesystem on a block device only (not FUSE, not RAM): direct writes into
    #: fallocated (unwritten) extents against zero-filled ones, a hazard of the device's filesystem
    device_paths: tuple[Config, ...] = ()

    def configs(self) -> list[Config]:
        out = [Config("always"), Config("none")]
        out += [Config(f"batch_{n}ms") for n in self.batch_ms]
        out += [Config(f"group_{n}ms", writers=w) for n, w in self.group]
        # group commit's baseline at each of its writer counts: the same threads, each syncing its own
        # entries (what an application with W writers has without group commit)
        out += [Config("always", writers=w) for w in sorted({w for _, w in self.group if w > 1})]
        out += [Config(s, prealloc=p) for p in self.prealloc_modes for s in self.prealloc_compare]
        return out

    def configs_for(self, target: Target | None) -> list[Config]:
        """The configurations a target gets: every one of ``configs()``; the write paths where a sync can be
        durable; the device paths on a filesystem of a block device.  ``None`` (a target not described,
        as a fleet plans them): ``configs()`` alone."""
        out = self.configs()
        if target is not None and target.can_be_durable:
            out += list(self.write_paths)
            if target.block_device and not target.fstype.startswith("fuse"):
                out += list(self.device_paths)
        return out

    def duration_s(self, config: Config, warmup: bool = False) -> float:
        st = parse(config.strategy)
        if warmup and self.warmup_duration_s is not None:
            return max(self.warmup_duration_s, st.span_s(1))
        return max(self.min_duration_s, st.span_s(self.min_intervals))


#: Columns of trials.csv with their types: the plan's, then every field of TrialResult.
#: The levels above a trial: its round ran in one worker process (``worker_pid``), within one
#: invocation (``run_id``), on one boot (``boot_id``) of one host: a later run, boot or host is one
#: more level of the same table.
PLAN_COLUMNS = [["round", "int"], ["warmup", "bool"], ["position", "int"], ["target", "str"],
                ["target_label", "str"], ["config", "str"], ["config_label", "str"], ["duration_rule_s", "float"],
                ["status", "str"], ["error", "str"], ["worker_pid", "int"], ["run_id", "str"], ["boot_id", "str"],
                ["host", "str"]]
SCHEMA = PLAN_COLUMNS + dataset.columns_of(TrialResult)
COLUMNS = [name for name, _ in SCHEMA]


@dataclass
class Planned:
    round: int
    warmup: bool
    position: int
    target: str
    config: Config

    @property
    def ident(self) -> tuple[int, str, str]:
        return (self.round, self.target, self.config.key)


def plan(profile: Profile, targets: list[str], seed: int, described: dict[str, Target] | None = None,
         unavailable: dict[str, dict[str, str]] | None = None) -> list[Planned]:
    """Every trial in order: rounds of every (target, config) once, each round shuffled by the seed.
    ``described``: each target's description (``Profile.configs_for``); ``unavailable``: per target, the
    configurations that cannot run there (``probe_paths``), left out."""
    skip = unavailable or {}
    cells = [(t, c) for t in targets for c in profile.configs_for((described or {}).get(t))
             if c.key not in skip.get(t, {})]
    out = []
    for r in range(profile.warmup_rounds + profile.trials):
        order = list(cells)
        random.Random(f"{seed}/{r}").shuffle(order)
        out += [Planned(r, r < profile.warmup_rounds, k, t, c) for k, (t, c) in enumerate(order)]
    return out


# -- the sweep --------------------------------------------------------------------------------------

#: What a run of the sweep did (the runner's one summary).
SweepSummary = runner.Summary


def _ok(row: dict) -> bool:
    return row["status"] == "ok"


def _key(row: dict) -> tuple[int, str, str]:
    return (int(row["round"]), row["target"], row["config"])


def run_sweep(out: str | os.PathLike, profile: Profile, targets: list[str] | None = None, seed: int = 0,
              progress: bool = True, limit: int | None = None,
              skipped: dict[str, str] | None = None, fresh_process: bool = True) -> SweepSummary:
    """Run (or resume) a study into directory ``out``; returns what was done.

    ``profile`` is a ``Profile`` (the named ones: ``fsyncstudy.profiles.PROFILES[name].sweep``).
    ``limit`` stops after that many new trials (for tests and dry runs); ``skipped`` names
    targets that were wanted but could not be measured, with the reason (kept in meta.json).
    ``fresh_process``: each round runs in a fresh worker process (``Worker``); False runs every trial
    in this process (tests that replace ``run_trial`` use it).
    """
    if not isinstance(profile, Profile):
        raise TypeError(f"profile must be a sweep.Profile, got {profile!r} (named profiles: fsyncstudy.profiles.PROFILES)")
    names = targets or default_targets()
    dirs = resolve_all(names)
    descriptions = {d: describe(d) for d in dirs}
    plan_ = {"profile": dataset.plan_of(profile), "seed": seed, "targets": dirs}
    notes = {"target_names": dict(zip(dirs, names)), "skipped_targets": skipped or {},
             "trial_rule": f"each trial runs at least {profile.min_duration_s} s and at least "
                           f"{profile.min_intervals} batch/group intervals, whichever is longer"}
    stale = [n for d in dirs for n in remove_stale(d)]
    unavailable = probe_paths(profile, descriptions)
    if unavailable:
        notes["unavailable"] = unavailable
    ds = dataset.open_or_resume(out, KIND, plan_, SCHEMA, TABLE,
                                targets={d: t.as_dict() for d, t in descriptions.items()}, notes=notes)
    done = ds.done(_key, _ok)
    failed_before = ds.done(_key, lambda r: not _ok(r)) - done
    todo = [p for p in plan(profile, dirs, seed, descriptions, unavailable) if p.ident not in done]
    summary = runner.Summary(out=Path(out), planned=len(todo) + len(done), skipped=len(done))
    if failed_before:
        summary.notes.append(f"running {len(failed_before)} trials again that failed in an earlier run "
                             "(their failed rows stay in trials.csv as history)")
    if stale:
        summary.notes.append(f"removed {len(stale)} trial logs left behind by a killed run")
    for d, t in descriptions.items():
        if t.durability == "volatile":
            summary.notes.append(f"{d} is {t.fstype}: {t.reason} (kept as the volatile reference)")
    for d, configs in unavailable.items():
        for key, why in configs.items():
            summary.notes.append(f"{key} cannot run on {d}: {why} (recorded in meta.json's notes, not measured)")
    levels = {"run_id": uuid.uuid4().hex[:12], "boot_id": (dataset.machine_fingerprint()["boot_id"] or "")[:36],
              "host": socket.gethostname()}
    if limit is not None:
        todo = todo[:limit]

    def run_one(p: Planned, worker) -> dict:
        row = worker.run(p, profile, descriptions[p.target])
        row.update(levels)
        return row

    def retried(p: Planned, row, summary) -> None:
        summary.retried += p.ident in failed_before
    # each round in a fresh worker process
    return runner.fill(ds, summary, todo, run_one, label=f"{profile.name} study", unit="trial", progress=progress,
                       ok=_ok, after=retried,
                       postfix=lambda p: f"round {p.round}: {p.config.label} on {Path(p.target).name or p.target}",
                       session=(lambda p: p.round, lambda rnd: Worker(sorted({p.target for p in rnd}))
                                if fresh_process else InProcess()))


#: Marks the worker's row lines on its stdout (anything else there is ignored).
_ROW = "FSYNCSTUDY-ROW "


class EngineChanged(dataset.DatasetError):
    """The measuring code on disk changed while a sweep ran: its rows would mix two engines."""


class Worker:
    """One fresh Python process for one round of trials (as pyperf runs each benchmark in fresh
    processes): what one process carries from trial to trial (allocator state, caches, the
    interpreter's warm paths) then varies between rounds, where the analysis can see it, instead
    of being shared by every trial of the study.  Before its first trial it runs a short untimed
    warm-up on each of its targets.  A worker that dies fails the trial it was running (recorded,
    and run again on resume) and the next trial starts a new one.  The worker runs in its own
    session; on Ctrl-C the sweep interrupts it so that its trial log is removed, then stops.
    """

    def __init__(self, targets: list[str]):
        self.targets = targets
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> subprocess.Popen:
        here = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)}
        return subprocess.Popen([sys.executable, "-m", "fsyncstudy.sweep", "--worker", *self.targets],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)

    def run(self, p: Planned, prof: Profile, target: Target) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        job = {"planned": {"round": p.round, "warmup": p.warmup, "position": p.position, "target": p.target,
                           "config": asdict(p.config)},
               "duration_s": prof.duration_s(p.config, p.warmup), "target": target.as_dict(),
               "engine_sha256": dataset.engine_digest()}
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith(_ROW):
                    row = json.loads(line[len(_ROW):])
                    if row.get("error", "").startswith("EngineChanged"):
                        self.close()
                        raise EngineChanged(row["error"].split(": ", 1)[1])
                    row["worker_pid"] = self.proc.pid
                    return row
        except BrokenPipeError:
            pass
        except KeyboardInterrupt:
            self.close(interrupt=True)
            raise
        code = self.proc.wait()
        self.proc = None
        return failed_row(p, prof, target, f"WorkerDied: the worker process ended (exit status {code}) during this trial")

    def close(self, interrupt: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if interrupt and proc.poll() is None:
                proc.send_signal(signal.SIGINT)     # its trial removes its log on the way out
            proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
        if interrupt:
            # a Ctrl-C can land between a log's creation and the code that removes it (Python checks for
            # signals between any two calls); the worker is gone now, so what it left is stale: remove it
            for d in self.targets:
                remove_stale(d)


class InProcess:
    """``Worker``'s interface, running each trial in this process."""

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, p: Planned, prof: Profile, target: Target) -> dict:
        return _run_planned(p, prof, target)


def _worker_main(targets: list[str]) -> int:
    """The worker's side: warm up on each target, then run one trial per job line on stdin."""
    out = sys.stdout
    sys.stdout = sys.stderr            # nothing but rows on the pipe
    _interrupt_when_orphaned()
    try:
        return _worker_loop(targets, out)
    except (KeyboardInterrupt, BrokenPipeError):
        return 130                      # the sweep stopped us; the trial's log is already removed


def _interrupt_when_orphaned() -> None:
    """Ask Linux to send this process SIGINT when its parent dies (a killed sweep), so a worker never
    outlives its sweep by more than the clean-up of its trial."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGINT), 0, 0, 0)     # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os.kill(os.getpid(), signal.SIGINT)
    except (OSError, AttributeError):
        pass


def _worker_loop(targets: list[str], out) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for d in targets:
            try:
                for strategy, n in (("always", 20), ("none", 2000)):   # 20 syncs: 0.2 s on an 8 ms disk
                    run_trial(strategy, entries=n, directory=d)
            except (OSError, ValueError):
                pass                    # the planned trial will meet the same error and record it
    mine = dataset.engine_digest()
    for line in sys.stdin:
        job = json.loads(line)
        if job.get("engine_sha256") not in (None, mine):
            out.write(_ROW + json.dumps({"status": "error", "error": (
                f"EngineChanged: the measuring code changed while this study ran (digest {job['engine_sha256']} "
                f"at its start, {mine} now); its rows so far stay, and a new run of the changed code starts a "
                "new dataset (or restore the code to resume this one)")}) + "\n")
            out.flush()
            return 3
        p = job["planned"]
        planned = Planned(p["round"], p["warmup"], p["position"], p["target"], Config(**p["config"]))
        target = Target(**job["target"])
        row = _run_planned(planned, None, target, duration_s=job["duration_s"])
        out.write(_ROW + json.dumps(row, default=str) + "\n")
        out.flush()
    return 0


#: Entries of the trial that tells whether a write path runs on a target (its log is removed after).
PROBE_ENTRIES = 8


def probe_paths(profile: Profile, described: dict[str, Target]) -> dict[str, dict[str, str]]:
    """Per target, the write-path configurations that cannot run there, with the one-line reason: a tiny
    trial of each (no RWF_DSYNC, O_DIRECT refused, no sync_file_range: the trial's own refusal), so the
    sweep records why a cell is missing instead of falling back to another path."""
    out: dict[str, dict[str, str]] = {}
    for d, t in described.items():
        for c in profile.configs_for(t)[len(profile.configs()):]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    run_trial(c.strategy, entries=PROBE_ENTRIES * c.writers, directory=d, sync_method=c.sync_method,
                              prealloc=c.prealloc, writers=c.writers, target=t, prealloc_bytes=1 << 20,
                              **c.path_options)
            except OSError as e:   # a path this target lacks; a ValueError (a combination that never runs) is raised
                out.setdefault(d, {})[c.key] = str(e)
    return out


def _planned_row(p: Planned, prof: Profile | None, target: Target, duration_s: float | None = None) -> dict:
    dur = duration_s if duration_s is not None else prof.duration_s(p.config, p.warmup)
    return {"round": p.round, "warmup": p.warmup, "position": p.position, "target": p.target,
            "target_label": table_label(target), "config": p.config.key, "config_label": p.config.label,
            "duration_rule_s": dur, "status": "ok", "error": "", "worker_pid": os.getpid()}


def failed_row(p: Planned, prof: Profile, target: Target, why: str) -> dict:
    """The row of a planned trial that did not run, or failed, with why."""
    return {**_planned_row(p, prof, target), "status": "error", "error": why, "strategy": p.config.strategy,
            "worker_pid": None}


def _run_planned(p: Planned, prof: Profile | None, target: Target, duration_s: float | None = None) -> dict:
    row = _planned_row(p, prof, target, duration_s)
    dur = row["duration_rule_s"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a volatile target is flagged in its description and every row
            r = run_trial(p.config.strategy, duration_s=dur, directory=p.target, sync_method=p.config.sync_method,
                          prealloc=p.config.prealloc, writers=p.config.writers, target=target, **p.config.path_options)
        row.update(r.as_dict())
    except (OSError, ValueError) as e:
        # an I/O error on one trial is a result worth keeping, not a reason to lose the study
        row.update(status="error", error=f"{type(e).__name__}: {e}", strategy=p.config.strategy)
    return row


# -- reading a dataset ------------------------------------------------------------------------------

def load(path: str | os.PathLike, include_warmup: bool = False):
    """A sweep dataset as (trials DataFrame, meta dict): the trials that count, warm-up rounds left
    out by default, failed trials always (their rows are history)."""
    df, meta = dataset.load(path, KIND, SCHEMA)
    df["target_label"] = df["target_label"].map(strip_verdict)  # the verdict has its own column
    if {"cpu_share", "daemon_cpu_share", "bound"} <= set(df.columns):
        # what a trial waited for follows today's rule (trial.bound_of) from the shares it measured
        from .trial import bound_of
        has = df["cpu_share"].notna()
        wait = df["cpu_wait_share"] if "cpu_wait_share" in df else df["cpu_share"] * float("nan")
        df.loc[has, "bound"] = [bound_of(s, None if w != w else w, None if d != d else d)
                                for s, w, d in zip(df.loc[has, "cpu_share"], wait[has], df.loc[has, "daemon_cpu_share"])]
    if not include_warmup:
        df = df[~df["warmup"]]
    return df[df["status"] == "ok"].reset_index(drop=True), meta


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    sys.exit(_worker_main(sys.argv[2:]))

