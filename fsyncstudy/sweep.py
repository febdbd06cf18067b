"""The study's sweep: a grid of configurations on several targets, repeated in randomized
rounds, every finished trial appended durably to the ``trials.csv`` of a dataset
(``fsyncstudy.dataset``); resumable.

The plan (which trial runs in which round, in which order) is a pure function of the
profile, the targets and the seed, so a re-run of the same study skips the trials that
already have a good row and runs only the rest (a failed trial runs again).  The named
profiles are ``fsyncstudy.study.PROFILES``.
"""
from __future__ import annotations

import os
import random
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import dataset
from .log import remove_stale
from .places import default_targets, resolve_all
from .strategies import parse
from .targets import Target, describe, strip_verdict, table_label
from .trial import TrialResult, run_trial

#: The dataset kind, and its table.
KIND, TABLE = "sweep", "trials.csv"


@dataclass(frozen=True)
class Config:
    """One point of the grid: a strategy and how it is run."""

    strategy: str
    writers: int = 1
    prealloc: str = "append"
    sync_method: str = "fdatasync"

    @property
    def key(self) -> str:
        return f"{self.strategy}/w{self.writers}/{self.prealloc}/{self.sync_method}"

    @property
    def label(self) -> str:
        extra = []
        if self.writers != 1:
            extra.append(f"{self.writers} writers")
        if self.prealloc != "append":
            extra.append(self.prealloc)
        if self.sync_method != "fdatasync":
            extra.append(self.sync_method)
        return self.strategy + (f" ({', '.join(extra)})" if extra else "")


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

    def configs(self) -> list[Config]:
        out = [Config("always"), Config("none")]
        out += [Config(f"batch_{n}ms") for n in self.batch_ms]
        out += [Config(f"group_{n}ms", writers=w) for n, w in self.group]
        out += [Config(s, prealloc=p) for p in self.prealloc_modes for s in self.prealloc_compare]
        return out

    def duration_s(self, config: Config) -> float:
        return max(self.min_duration_s, parse(config.strategy).span_s(self.min_intervals))


#: Columns of trials.csv with their types: the plan's, then every field of TrialResult.
PLAN_COLUMNS = [["round", "int"], ["warmup", "bool"], ["position", "int"], ["target", "str"],
                ["target_label", "str"], ["config", "str"], ["config_label", "str"], ["duration_rule_s", "float"],
                ["status", "str"], ["error", "str"]]
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


def plan(profile: Profile, targets: list[str], seed: int) -> list[Planned]:
    """Every trial in order: rounds of every (target, config) once, each round shuffled by the seed."""
    cells = [(t, c) for t in targets for c in profile.configs()]
    out = []
    for r in range(profile.warmup_rounds + profile.trials):
        order = list(cells)
        random.Random(f"{seed}/{r}").shuffle(order)
        out += [Planned(r, r < profile.warmup_rounds, k, t, c) for k, (t, c) in enumerate(order)]
    return out


# -- the sweep --------------------------------------------------------------------------------------

@dataclass
class SweepSummary:
    out: Path
    planned: int
    skipped: int
    ran: int
    failed: int
    retried: int = 0                 # trials whose earlier row said they failed, run again
    errors: dict[str, int] = field(default_factory=dict)   # each failed trial's error, counted
    interrupted: bool = False
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _ok(row: dict) -> bool:
    return row["status"] == "ok"


def _key(row: dict) -> tuple[int, str, str]:
    return (int(row["round"]), row["target"], row["config"])


def run_sweep(out: str | os.PathLike, profile: Profile, targets: list[str] | None = None, seed: int = 0,
              progress: bool = True, limit: int | None = None,
              skipped: dict[str, str] | None = None) -> SweepSummary:
    """Run (or resume) a study into directory ``out``; returns what was done.

    ``profile`` is a ``Profile`` (the named ones: ``fsyncstudy.study.PROFILES[name].sweep``).
    ``limit`` stops after that many new trials (for tests and dry runs); ``skipped`` names
    targets that were wanted but could not be measured, with the reason (kept in meta.json).
    """
    if not isinstance(profile, Profile):
        raise TypeError(f"profile must be a sweep.Profile, got {profile!r} (named profiles: fsyncstudy.study.PROFILES)")
    names = targets or default_targets()
    dirs = resolve_all(names)
    descriptions = {d: describe(d) for d in dirs}
    plan_ = {"profile": asdict(profile), "seed": seed, "targets": dirs}
    notes = {"target_names": dict(zip(dirs, names)), "skipped_targets": skipped or {},
             "trial_rule": f"each trial runs at least {profile.min_duration_s} s and at least "
                           f"{profile.min_intervals} batch/group intervals, whichever is longer"}
    ds = dataset.open_or_resume(out, KIND, plan_, SCHEMA, TABLE,
                                targets={d: t.as_dict() for d, t in descriptions.items()}, notes=notes)
    stale = [n for d in dirs for n in remove_stale(d)]
    done = ds.done(_key, _ok)
    failed_before = ds.done(_key, lambda r: not _ok(r)) - done
    todo = [p for p in plan(profile, dirs, seed) if p.ident not in done]
    summary = SweepSummary(out=Path(out), planned=len(todo) + len(done), skipped=len(done), ran=0, failed=0)
    if failed_before:
        summary.notes.append(f"running {len(failed_before)} trials again that failed in an earlier run "
                             "(their failed rows stay in trials.csv as history)")
    if stale:
        summary.notes.append(f"removed {len(stale)} trial logs left behind by a killed run")
    for d, t in descriptions.items():
        if t.durability == "volatile":
            summary.notes.append(f"{d} is {t.fstype}: {t.reason} (kept as the volatile reference)")
    with dataset.filling(ds, summary, len(todo), f"{profile.name} study", "trial", progress) as bar:
        for p in todo:
            if limit is not None and summary.ran >= limit:
                break
            bar.set_postfix_str(f"round {p.round}: {p.config.label} on {Path(p.target).name or p.target}")
            row = _run_planned(p, profile, descriptions[p.target])
            ds.append(row, ok=_ok(row))
            summary.ran += 1
            summary.failed += not _ok(row)
            if not _ok(row):
                summary.errors[row["error"]] = summary.errors.get(row["error"], 0) + 1
            summary.retried += p.ident in failed_before
            bar.update(1)
    if summary.interrupted:
        raise KeyboardInterrupt(f"sweep interrupted after {summary.ran} new trials; {ds.path / TABLE} keeps every "
                                "finished one and the same command resumes")
    return summary


def _run_planned(p: Planned, prof: Profile, target: Target) -> dict:
    dur = prof.duration_s(p.config)
    row = {"round": p.round, "warmup": p.warmup, "position": p.position, "target": p.target,
           "target_label": table_label(target), "config": p.config.key, "config_label": p.config.label,
           "duration_rule_s": dur, "status": "ok", "error": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a volatile target is flagged in its description and every row
            r = run_trial(p.config.strategy, duration_s=dur, directory=p.target, sync_method=p.config.sync_method,
                          prealloc=p.config.prealloc, writers=p.config.writers, target=target)
        row.update(r.as_dict())
    except (OSError, ValueError) as e:
        # an I/O error on one trial is a result worth keeping, not a reason to lose the study
        row.update(status="error", error=f"{type(e).__name__}: {e}", strategy=p.config.strategy)
    return row


# -- reading a dataset ------------------------------------------------------------------------------

def load(path: str | os.PathLike, include_warmup: bool = False):
    """A sweep dataset as (trials DataFrame, meta dict): the trials that count, warm-up rounds left
    out by default, failed trials always (their rows are history)."""
    df, meta = dataset.load(path, KIND)
    df["target_label"] = df["target_label"].map(strip_verdict)  # the verdict has its own column
    if not include_warmup:
        df = df[~df["warmup"]]
    return df[df["status"] == "ok"].reset_index(drop=True), meta
