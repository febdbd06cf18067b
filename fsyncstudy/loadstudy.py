"""The load study: each strategy on each target at rates from light load to past its capacity,
open loop (``fsyncstudy.load``), repeated in randomized rounds after a warm-up round, every trial
appended durably to the ``load.csv`` of a dataset; resumable, a failed trial run again.

The named profiles are ``fsyncstudy.profiles.PROFILES[name].load``; the knee and the advice are
computed from the dataset by ``fsyncstudy.analysis`` (``load_summary``, ``knees``, ``advise``).
"""
from __future__ import annotations

import os
import random
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

from . import dataset, runner
from .load import LoadResult, run_load_trial
from .log import remove_stale
from .places import resolve_all
from .strategies import parse
from .targets import describe, strip_verdict, table_label
from .trial import PathOptions

KIND, TABLE = "load", "load.csv"


@dataclass(frozen=True)
class LoadProfile:
    """What the load study measures: ``strategies`` as (name, clients), each at every rate on every
    target, ``trials`` rounds after ``warmup_rounds``, each trial ``duration_s`` long."""

    name: str
    rates: tuple[int, ...]
    #: group commit with 4 clients beside always with the same 4 (each syncing its own entries): like with like
    strategies: tuple[tuple[str, int], ...] = (("always", 1), ("batch_10ms", 1), ("none", 1), ("group_0ms", 4),
                                               ("always", 4))
    trials: int = 3
    warmup_rounds: int = 1
    duration_s: float = 0.5
    #: How long a warm-up trial runs (None: ``duration_s``); warm-up rounds are not counted
    warmup_duration_s: float | None = None
    arrivals: str = "poisson"
    #: the storage lab's targets that join the host's disk when the lab is up
    lab_targets: tuple[str, ...] = ("lab:ext4", "lab:hdd-emulated")
    #: an application that does work: these (strategy, clients) at ``busy_rate`` with the writer's thread
    #: spending each of ``busy_work_us`` microseconds of CPU between entries (the interpreter lock busy)
    busy: tuple[tuple[str, int], ...] = (("batch_10ms", 1), ("group_0ms", 4))
    busy_rate: int = 2000
    busy_work_us: tuple[float, ...] = (100.0, 300.0)
    #: the write paths real WALs use (docs/strategies.md#write-paths): (strategy, clients, ``PathOptions``),
    #: each measured only at ``path_rates`` (the budget's), a configuration of its own
    paths: tuple[tuple[str, int, PathOptions], ...] = ()
    path_rates: tuple[int, ...] = (2000,)

    def cells(self) -> list[tuple[str, int, int, float, PathOptions]]:
        """(strategy, clients, rate, work_us, path) of every configuration at every rate it is measured at."""
        plain = [(s, c, r, 0.0, PLAIN) for s, c in self.strategies for r in self.rates]
        busy = [(s, c, self.busy_rate, w, PLAIN) for s, c in self.busy for w in self.busy_work_us]
        return plain + busy + [(s, c, r, 0.0, PathOptions(*p)) for s, c, p in self.paths for r in self.path_rates]


PLAIN = PathOptions()


def config_key(strategy: str, clients: int, work_us: float = 0.0, path: str = "") -> str:
    """The configuration a row belongs to; ``path``: its write path's label ("" for the plain path, whose
    keys are as they were before the paths)."""
    return f"{strategy}/c{clients}" + (f"/w{work_us:g}" if work_us else "") + (f"/{path}" if path else "")


def config_label(strategy: str, clients: int, work_us: float = 0.0, path: str = "") -> str:
    return (strategy + (f" ({clients} clients)" if clients > 1 else "") + (f" [{path}]" if path else "")
            + (f", {work_us:g} us of work an entry" if work_us else ""))


PLAN_COLUMNS = [["round", "int"], ["warmup", "bool"], ["position", "int"], ["target", "str"],
                ["target_label", "str"], ["config", "str"], ["config_label", "str"], ["rate", "float"],
                ["seed", "int"], ["status", "str"], ["error", "str"]]
SCHEMA = PLAN_COLUMNS + dataset.columns_of(LoadResult)
COLUMNS = [name for name, _ in SCHEMA]


def plan(profile: LoadProfile, targets: list[str], seed: int) -> list[dict]:
    """Every trial in order: rounds of every (target, strategy, rate) once, each round shuffled by the seed."""
    cells = [(t, *cell) for t in targets for cell in profile.cells()]
    out = []
    for rnd in range(profile.warmup_rounds + profile.trials):
        order = list(cells)
        random.Random(f"{seed}/load/{rnd}").shuffle(order)
        out += [{"round": rnd, "warmup": rnd < profile.warmup_rounds, "position": k, "target": t, "strategy": s,
                 "clients": c, "rate": float(r), "work_us": w, "path": p} for k, (t, s, c, r, w, p) in enumerate(order)]
    return out


def key(row) -> tuple:
    """The unit a row belongs to: (round, target, config, rate)."""
    return (int(row["round"]), row["target"], row["config"], float(row["rate"]))


def ident(p: dict, target: str | None = None) -> tuple:
    """A planned trial's unit, as ``key`` gives it for its row (``target``: as the row names it)."""
    return (p["round"], target or p["target"], config_key(p["strategy"], p["clients"], p["work_us"], p["path"].label),
            p["rate"])


def _ok(row) -> bool:
    return row["status"] == "ok"


def run_load_study(out, profile: LoadProfile, targets: list[str], seed: int = 0, progress: bool = True,
                   limit: int | None = None) -> runner.Summary:
    """Run (or resume) the load study into the dataset ``out``."""
    if not isinstance(profile, LoadProfile):
        raise TypeError(f"profile must be a loadstudy.LoadProfile, got {profile!r}")
    dirs = resolve_all(targets)
    descriptions = {d: describe(d) for d in dirs}
    ds = dataset.open_or_resume(out, KIND, {"profile": dataset.plan_of(profile), "seed": seed, "targets": dirs}, SCHEMA, TABLE,
                                targets={d: t.as_dict() for d, t in descriptions.items()},
                                notes={"target_names": dict(zip(dirs, targets))})
    for d in dirs:
        remove_stale(d)
    done = ds.done(key, _ok)
    todo = [p for p in plan(profile, dirs, seed) if ident(p) not in done]
    summary = runner.Summary(out=ds.path, planned=len(todo) + len(done), skipped=len(done))
    return runner.fill(ds, summary, todo[:limit] if limit is not None else todo,
                       lambda p, _: run_one(p, profile, descriptions[p["target"]], seed),
                       label=f"{profile.name} load study", unit="trial", progress=progress, ok=_ok,
                       postfix=lambda p: f"round {p['round']}: {p['strategy']} at {p['rate']:,.0f}/s on "
                                         f"{Path(p['target']).name or p['target']}")


def _row(p: dict, target, seed: int) -> dict:
    return {"round": p["round"], "warmup": p["warmup"], "position": p["position"], "target": p["target"],
            "target_label": table_label(target),
            "config": config_key(p["strategy"], p["clients"], p["work_us"], p["path"].label),
            "config_label": config_label(p["strategy"], p["clients"], p["work_us"], p["path"].label), "rate": p["rate"],
            # the same arrivals for a strategy on every path at a rate in a round: like with like
            "seed": zlib.crc32(f"{seed}/{p['round']}/{p['strategy']}/{p['rate']}".encode()), "status": "ok",
            "error": "", **p["path"]._asdict()}


def _duration_s(profile: LoadProfile, p: dict) -> float:
    return profile.warmup_duration_s if p["warmup"] and profile.warmup_duration_s is not None else profile.duration_s


def run_one(p: dict, profile: LoadProfile, target, seed: int) -> dict:
    """One planned trial (open loop) on ``target`` (its ``Target``); its row, an error recorded in it."""
    row = _row(p, target, seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = run_load_trial(parse(p["strategy"]), p["rate"], duration_s=_duration_s(profile, p), directory=p["target"],
                               arrivals=profile.arrivals, clients=p["clients"], seed=row["seed"], target=target,
                               work_us=p["work_us"], **p["path"]._asdict())
        row.update(r.as_dict())
    except (OSError, ValueError) as e:
        row.update(failed_row(p, target, seed, f"{type(e).__name__}: {e}"))
    return row


def failed_row(p: dict, target, seed: int, why: str) -> dict:
    """The row of a planned trial that did not run, or failed, with why."""
    return {**_row(p, target, seed), "status": "error", "error": why, "strategy": p["strategy"]}


def load(path: str | os.PathLike, include_warmup: bool = False):
    """A load dataset as (trials DataFrame, meta): the trials that count, warm-up left out by default."""
    df, meta = dataset.load(path, KIND, SCHEMA)
    df["target_label"] = df["target_label"].map(strip_verdict)
    df["busy"] = df["work_us"].fillna(0) > 0     # the application-does-work cells, apart from the rate sweep
    # the write path's one name ("" for the plain path, which every dataset before the paths measured)
    df["path"] = [PathOptions(*p).label for p in zip(df["sync_method"], df["write_mode"], df["bytes_per_sync"].astype(int),
                                                   df["segment_bytes"].astype(int), df["recycle"].astype(int))]
    if not include_warmup:
        df = df[~df["warmup"]]
    return df[df["status"] == "ok"].reset_index(drop=True), meta
