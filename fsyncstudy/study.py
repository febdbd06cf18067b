"""The study as ``make report`` runs it, in one place: what each profile measures, where its
datasets go, the pipeline (storage lab, sweep, crash experiment, peers comparison), and the
datasets the notebooks open.

A profile (``PROFILES``) names one plan for every part of the study:

=========  =====================================  ==============================  ==========================
profile    sweep (``sweep.Profile``)              crash (``crash.CrashProfile``)  peers (``PeersPlan``)
=========  =====================================  ==============================  ==========================
quick      3 trials, batch 0/10/50/100 ms         8 power / 5 process cuts        fio, 3 rounds
standard   5 trials, 9 batch intervals 0..100 ms  100 power / 50 process cuts     fio + pg_test_fsync, 5
full       10 trials, batch 0..100 ms by 2        as standard                     as standard
=========  =====================================  ==============================  ==========================

The notebooks' parameter ``profile`` and the CLI's ``--profile`` both mean an entry of this table.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from . import crash, dataset, loadstudy, peers, realdb, realstudy, sweep
from .crash import CrashProfile
from .loadstudy import LoadProfile
from .realdb import QUIET_WINDOW_S
from .realstudy import RealPlan
from .places import BUILD, DATA, REPO, RUNS, default_targets
from .sweep import Profile


@dataclass(frozen=True)
class PeersPlan:
    """The comparison with the peers: alternating rounds per target, which peers, pg_test_fsync's -s."""

    rounds: int
    peers: tuple[str, ...] = ("fio", "pg_test_fsync")
    secs_per_test: int = 1


@dataclass(frozen=True)
class StudyProfile:
    name: str
    sweep: Profile
    crash: CrashProfile
    peers: PeersPlan
    load: LoadProfile
    realdb: RealPlan


_CRASH_QUICK = CrashProfile("quick", power=(("always", "group_0ms", "batch_10ms", "batch_50ms", "none"), 8),
                            process=(("always", "batch_10ms", "none"), 5))
# batch_1ms and batch_20ms left out since 2026-11-29 (room for the real databases' cuts): 0, 5, 10,
# 50 and 100 ms still span the curve of the loss window
_CRASH_STANDARD = CrashProfile(
    "standard", power=(("always", "group_0ms", *(f"batch_{n}ms" for n in (0, 5, 10, 50, 100)), "none"), 100),
    process=(("always", "batch_10ms", "none"), 50))
#: The real databases at a fixed rate (2,000 commits a second, the README's question): the settings
#: that sync (the throughput study and the power cuts run every setting).
_REAL_AT_RATE = ("sqlite/wal-full", "postgres/on", "postgres/off-200ms", "redis/always", "redis/everysec")

PROFILES = {
    "quick": StudyProfile(
        "quick", sweep=Profile("quick", trials=3, warmup_rounds=1, min_duration_s=0.15, min_intervals=5,
                               batch_ms=(0, 10, 50, 100), group=((0, 4),)),
        crash=_CRASH_QUICK, peers=PeersPlan(rounds=3, peers=("fio",)),
        # no warm-up round in the quick load study (2026-12-07: the quick report took 5 min 14 s here, idle;
        # its 32 warm-up trials cost about 15 s, the notebooks two at a time save about 30 s)
        load=LoadProfile("quick", rates=(500, 2000, 5000, 20000), duration_s=0.4, lab_targets=("lab:hdd-emulated",),
                         busy=(), warmup_rounds=0),
        realdb=RealPlan("quick", trials=2, warmup_rounds=0, duration_s=0.3,
                        settings=("sqlite/wal-full", "sqlite/wal-normal", "postgres/on", "postgres/off-200ms",
                                  "redis/always", "redis/everysec"),
                        cuts=3, cut_settings=("sqlite/wal-full", "postgres/off-200ms", "redis/everysec"))),
    "standard": StudyProfile(
        # 0.5 s: benchmarks/trial_length.py (2026-11-28, host ext4 and lab:ext4, 5 rounds) found 0.25 s
        # trials reading always's p99 13% high and its ops/sec up to 15% low against 4 s trials, and
        # no trend from 0.5 to 4 s beyond the trial-to-trial spread (medians within 0.90-1.06)
        # batch intervals: 9, not every 5 ms, to make room in the 35-minute budget for the real databases;
        # the committed sweep of 2026-11-29 found the batch curve flat from 5 to 100 ms (CPU-bound), so
        # the finer grid bought nothing
        "standard", sweep=Profile("standard", trials=5, warmup_rounds=1, min_duration_s=0.5, min_intervals=5,
                                  batch_ms=(0, 2, 5, 10, 20, 30, 50, 75, 100),
                                  # one writer only at 0 ms: with a delay it is always plus the delay
                                  group=((0, 1), *((n, w) for n in (0, 10, 50) for w in (4, 16)))),
        crash=_CRASH_STANDARD, peers=PeersPlan(rounds=5),
        load=LoadProfile("standard", rates=(200, 500, 1000, 2000, 5000, 10000, 50000)),
        realdb=RealPlan("standard", trials=3, warmup_rounds=1, duration_s=0.5, cuts=100,
                        rates=(2000.0,), rate_settings=_REAL_AT_RATE)),
    "full": StudyProfile(
        "full", sweep=Profile("full", trials=10, warmup_rounds=1, min_duration_s=1.0, min_intervals=10,
                              batch_ms=tuple(range(0, 101, 2)),
                              group=tuple((n, w) for n in (0, 1, 5, 10, 50) for w in (1, 2, 4, 8, 16)),
                              prealloc_modes=("zero-fill", "fallocate")),
        crash=_CRASH_STANDARD, peers=PeersPlan(rounds=5),
        load=LoadProfile("full", rates=(100, 200, 500, 1000, 2000, 3000, 5000, 8000, 10000, 20000, 50000), trials=5,
                         duration_s=1.0),
        realdb=RealPlan("full", trials=5, warmup_rounds=1, duration_s=1.0, cuts=100)),
}


def profile(name: str) -> StudyProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}: use one of {', '.join(PROFILES)}") from None


# -- where datasets go ------------------------------------------------------------------------------

def runs_dir() -> Path:
    """runs/: where a user's own runs go (and the directory measured on the checkout's disk)."""
    RUNS.mkdir(parents=True, exist_ok=True)
    return RUNS


def realdb_targets(targets: list[str] | None = None) -> tuple[list[str], str]:
    """Where the real databases run: ``targets`` as named (a server that cannot reach one is a clear
    error), else the checkout's disk in a directory their servers can reach
    (``realdb.reachable_directory``); with the sentence saying why, if it is not runs/ itself."""
    if targets:
        return list(targets), ""
    d, where = realdb.reachable_directory(runs_dir())
    return [str(d)], where


def _key(*parts) -> str:
    blob = json.dumps([dataset.FORMAT, dataset.engine_digest(), *parts], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:6]


def study_key(prof: Profile) -> str:
    """A short hash of what a sweep's rows mean: the profile's grid, the columns, the format."""
    return _key(asdict(prof), sweep.SCHEMA)


def sweep_out(name: str, parent: Path | None = None, targets: list[str] | None = None) -> Path:
    """<parent>/<profile>-<host>-<boot>-<key>: a new machine, boot or version of the study starts a new
    dataset; the same ones resume.  Targets named explicitly are part of the key (other targets,
    another dataset)."""
    key = study_key(profile(name).sweep) if targets is None else _key(asdict(profile(name).sweep), sweep.SCHEMA,
                                                                        sorted(targets))
    return (parent or RUNS) / f"{name}-{dataset.machine_tag()}-{key}"


def fleet_out(name: str, scheduler: str, parent: Path | None = None, kind: str = "sweep") -> Path:
    """<parent>/fleet[-load]-<profile>-<client host>-<boot>-<key>: the key covers the profile's plan and
    the scheduler (the same fleet resumes; which hosts and targets it has is checked by the dataset)."""
    plan = profile(name).sweep if kind == "sweep" else profile(name).load
    return (parent or RUNS) / (f"fleet{'' if kind == 'sweep' else '-' + kind}-{name}-{dataset.machine_tag()}-"
                     f"{_key(asdict(plan), kind, scheduler)}")


def crash_out(name: str, kinds, parent: Path | None = None) -> Path:
    """<parent>/crash-<profile>-<kinds>-<host>-<boot>-<key>."""
    plan = profile(name).crash
    return (parent or RUNS) / f"crash-{plan.name}-{'+'.join(kinds)}-{dataset.machine_tag()}-{_key(asdict(plan), crash.SCHEMA)}"


def peers_out(plan: PeersPlan, parent: Path | None = None) -> Path:
    """<parent>/peers-<peers>-r<rounds>-<host>-<boot>-<key>."""
    return (parent or RUNS) / (f"peers-{'+'.join(plan.peers)}-r{plan.rounds}-{dataset.machine_tag()}-"
                     f"{_key(asdict(plan), peers.SCHEMA)}")


#: A fleet's dataset is a sweep dataset whose plan names its hosts (``fleet``): "fleet" finds those,
#: and "sweep" the others, so that a fleet never stands in for this machine's own sweep.
FLEET = "fleet"


def _kind_of(meta: dict) -> str:
    return FLEET if meta["kind"] == sweep.KIND and meta["plan"].get("fleet") else meta["kind"]


def datasets(kind: str) -> list[tuple[Path, dict]]:
    """Every readable dataset of ``kind`` in data/ and build/, newest first (``FLEET``: the fleets')."""
    found = []
    for parent in (DATA, RUNS, BUILD):
        for d in sorted(parent.glob("*/meta.json")) if parent.is_dir() else []:
            try:
                meta = dataset.read_meta(d.parent)
            except dataset.DatasetError:
                continue
            if _kind_of(meta) == kind:
                found.append((d.parent, meta))
    # a dataset upgraded from format 1 may not know when it was made: it sorts as the oldest
    return sorted(found, key=lambda x: x[1]["created_at"] if x[1]["created_at"][:1].isdigit() else "", reverse=True)


def _available(kind: str) -> str:
    names = [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p, _ in datasets(kind)]
    return ("the " + kind + " datasets here: " + ", ".join(names)) if names else f"there is no {kind} dataset here yet"


def newest(kind: str) -> Path:
    """The newest dataset of ``kind`` measured on this machine, else the newest in data/ (the committed
    ones); a DatasetError saying how to make one when there is none."""
    found = datasets(kind)
    fp = dataset.machine_fingerprint()
    here = [p for p, m in found if {k: m["environment"]["fingerprint"].get(k) for k in ("hostname", "machine_id")}
            == {k: fp[k] for k in ("hostname", "machine_id")}]
    committed = [p for p, _ in found if p.parent == DATA]
    if here or committed:
        return (here or committed)[0]
    raise dataset.DatasetError(f"there is no {kind} dataset in {DATA}, {RUNS} or {BUILD}: measure one (`make report`, "
                               "or set measure = True in the notebook)")


def reference_for(path: Path) -> Path | None:
    """The newest committed sweep dataset (in data/) other than ``path``, to put beside it; None if none."""
    others = [p for p, _ in datasets(sweep.KIND) if p.parent == DATA and p.resolve() != Path(path).resolve()]
    return others[0] if others else None


def load_out(name: str, parent: Path | None = None) -> Path:
    """<parent>/load-<profile>-<host>-<boot>-<key>."""
    plan = profile(name).load
    return (parent or RUNS) / f"load-{plan.name}-{dataset.machine_tag()}-{_key(asdict(plan), loadstudy.SCHEMA)}"


def realdb_out(name: str, parent: Path | None = None) -> Path:
    """<parent>/realdb-<profile>-<host>-<boot>-<key>."""
    plan = profile(name).realdb
    return (parent or RUNS) / f"realdb-{plan.name}-{dataset.machine_tag()}-{_key(asdict(plan), realstudy.SCHEMA)}"


def realdb_crash_out(name: str, parent: Path | None = None) -> Path:
    """<parent>/realdb-crash-<profile>-<host>-<boot>-<key>."""
    plan = profile(name).realdb
    return (parent or RUNS) / f"realdb-crash-{plan.name}-{dataset.machine_tag()}-{_key(asdict(plan), realstudy.CRASH_SCHEMA)}"


def existing(path: str | os.PathLike, kind: str) -> Path:
    """``path`` (a relative path also from the repository) if it holds a dataset of ``kind``, else a
    DatasetError that says what it holds, and which datasets there are."""
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = REPO / p
    if not (p / dataset.META_FILE).exists():
        raise dataset.DatasetError(f"{p} holds no dataset; {_available(kind)}")
    meta = dataset.read_meta(p)
    if meta["kind"] != kind:
        raise dataset.DatasetError(f"{p} holds a {meta['kind']} dataset, not a {kind} dataset; {_available(kind)}")
    return p


# -- what the notebooks open ------------------------------------------------------------------------

def _found(path, kind: str, look: bool) -> Path | None:
    """What every opener does first: ``path`` if given (it must hold a ``kind`` dataset); else, when
    ``look``, the newest of this machine or the newest committed; None when there is none (measure)."""
    if path is not None:
        return existing(path, kind)
    if look:
        try:
            return newest(kind)
        except dataset.DatasetError:
            pass
    return None


def sweep_dataset(path=None, profile_name: str = "quick", targets: list[str] | None = None, seed: int = 0,
                  progress: bool = True, measure: bool = False) -> Path:
    """The sweep dataset to analyse: ``path`` if it holds one; else, unless asked to ``measure`` (or
    given ``targets``), the newest of this machine or the newest committed one; else a fresh
    (resumable) sweep into build/, so that notebooks run one after another share it."""
    if path is not None:
        return existing(path, sweep.KIND)
    if not measure and targets is None:
        return newest(sweep.KIND)
    out = sweep_out(profile_name, BUILD, targets)
    sweep.run_sweep(out, profile=profile(profile_name).sweep, targets=targets, seed=seed, progress=progress)
    return out


def fleet_dataset(path=None) -> Path | None:
    """The fleet dataset to show: ``path`` if it holds a sweep dataset (of a fleet or of one host), else
    the newest fleet dataset here or committed; None if there is none."""
    if path is not None:
        return existing(path, sweep.KIND)
    found = datasets(FLEET)
    return found[0][0] if found else None


def crash_dataset(path=None, profile_name: str = "quick", seed: int = 0, progress: bool = True, log=print,
                  measure: bool = False) -> Path:
    """A crash dataset: ``path`` if it holds one, else the newest one of this machine (or committed),
    else (or with ``measure``) a fresh (resumable) experiment in build/.

    The power kind needs the storage lab's power-cut filesystem; it is brought up for the
    experiment and torn down after.  Where the machine cannot (not root, no /dev/fuse, no
    libfuse), only the process kind runs, and ``meta.json`` says why.
    """
    if (found := _found(path, crash.KIND, not measure)) is not None:
        return found
    plan = profile(profile_name).crash
    skipped = {}
    try:
        from .lab import Lab, LabError
        lab = Lab.for_run(targets=["powercut"])
    except ImportError as e:
        lab, skipped["power"] = None, f"the storage lab cannot be imported: {e}"
    if lab is not None:
        try:
            with lab:
                if "lab:powercut" in lab.available():
                    out = crash_out(profile_name, ("power", "process"), BUILD)
                    crash.run_crash(out, plan, kinds=("power", "process"), seed=seed, progress=progress,
                                    lab_dir=lab.lab_dir)
                    return out
                skipped["power"] = lab.skipped().get("lab:powercut", "lab:powercut is not available")
        except LabError as e:  # e.g. the remains of a crashed run in build/lab: say so, go on without
            skipped["power"] = str(e)
    log(f"power cuts skipped: {skipped['power']}; running process crashes only")
    out = crash_out(profile_name, ("process",), BUILD)
    crash.run_crash(out, plan, kinds=("process",), seed=seed, progress=progress, note=skipped)
    return out


def peers_dataset(path=None, profile_name: str = "quick", log=None, measure: bool = False) -> Path:
    """A comparison dataset: ``path`` if it holds one, else the newest one of this machine (or
    committed), else (or with ``measure``) a fresh (resumable) comparison of the profile's peers on
    the default targets, in build/."""
    if (found := _found(path, peers.KIND, not measure)) is not None:
        return found
    plan = profile(profile_name).peers
    out = peers_out(plan, BUILD)
    peers.run_comparison(out, rounds=plan.rounds, peers=plan.peers, secs_per_test=plan.secs_per_test, log=log)
    return out


def load_dataset(path=None, profile_name: str = "quick", targets: list[str] | None = None, seed: int = 0,
                 measure: bool = False, progress: bool = True) -> Path:
    """A load dataset: ``path`` if it holds one, else the newest one of this machine (or committed), else
    (or with ``measure``) the profile's load study on ``targets`` (default: the checkout's disk, runs/) in build/."""
    if (found := _found(path, loadstudy.KIND, not measure and targets is None)) is not None:
        return found
    out = load_out(profile_name, BUILD)
    loadstudy.run_load_study(out, profile(profile_name).load, targets or [str(runs_dir())], seed=seed, progress=progress)
    return out


def realdb_dataset(path=None, profile_name: str = "quick", targets: list[str] | None = None, seed: int = 0,
                   measure: bool = False, progress: bool = True) -> Path:
    """A real-database dataset: ``path`` if it holds one, else the newest one of this machine (or
    committed), else (or with ``measure``) the profile's study on ``targets`` (default: the disk of
    the checkout, ``realdb_targets``) in build/."""
    if (found := _found(path, realstudy.KIND, not measure and targets is None)) is not None:
        return found
    out = realdb_out(profile_name, BUILD)
    dirs, where = realdb_targets(targets)
    realstudy.run_real_study(out, profile(profile_name).realdb, dirs, seed=seed, progress=progress, where=where)
    return out


def realdb_crash_dataset(path=None, profile_name: str = "quick", seed: int = 0, measure: bool = False,
                         progress: bool = True) -> Path | None:
    """A dataset of power cuts under real databases: ``path``, else the newest one, else (or with
    ``measure``) the profile's cuts in build/ with the lab's power-cut filesystem brought up for
    them; None when the lab cannot come up here (the reason is printed)."""
    if (found := _found(path, realstudy.CRASH_KIND, not measure)) is not None:
        return found
    from .lab import Lab, LabError
    try:
        with Lab.for_run(targets=["powercut"]) as lab:
            if "lab:powercut" not in lab.available():
                print(f"power cuts under real databases skipped: {lab.skipped().get('lab:powercut')}")
                return None
            out = realdb_crash_out(profile_name, BUILD)
            realstudy.run_real_crash(out, profile(profile_name).realdb, seed=seed, lab_dir=lab.lab_dir,
                                     progress=progress)
            return out
    except LabError as e:
        print(f"power cuts under real databases skipped: {e}")
        return None


@dataclass
class SweepView:
    """What notebooks 01-03 open with: the dataset, its trials, its meta and their summary.

    Shown in a notebook, it is the dataset's name and size (the machine and the targets are on the
    report's index, or ``analysis.machine_table(meta)`` and ``analysis.targets_table(meta)``).
    """

    path: Path
    df: object
    meta: dict
    summary: object

    def _repr_html_(self) -> str:
        env = self.meta["environment"]
        return (f"<p>Dataset <code>{self.path.name}</code>: {len(self.df)} trials (warm-up round excluded), "
                f"measured on {env['host']} (Linux {env['kernel']}) from {self.meta['created_at']}. The machine and "
                "the targets: the report's index.</p>")


def open_sweep(path=None, profile_name: str = "quick", targets: list[str] | None = None, seed: int = 0,
               n_boot: int = 2000, measure: bool = False) -> SweepView:
    """The opening of notebooks 01-03: find (or measure) the sweep dataset, load it, summarize it."""
    from . import analysis
    p = sweep_dataset(path, profile_name, targets=targets, seed=seed, measure=measure)
    df, meta = sweep.load(p)
    return SweepView(p, df, meta, analysis.summary(df, seed=seed, n_boot=n_boot))


def write_ceiling_for(sweep_meta: dict, path=None):
    """The C loop's no-sync write ceiling to show beside a sweep (``analysis.write_ceiling``): from the
    comparison dataset ``path``, else from the newest one measured on the sweep's machine in the same
    boot (the same devices), else on the same machine.  Returns (frame, dataset name or None, a
    sentence on where it came from)."""
    import pandas as pd

    from . import analysis
    if path is not None:
        p = existing(path, peers.KIND)
    else:
        fp = sweep_meta["environment"].get("fingerprint", {})
        keys = ("hostname", "machine_id")
        found = [(q, m["environment"].get("fingerprint", {})) for q, m in datasets(peers.KIND)]
        same_machine = [(q, f) for q, f in found if all(f.get(k) == fp.get(k) for k in keys) and fp.get("machine_id")]
        same_boot = [q for q, f in same_machine if f.get("boot_id") and f.get("boot_id") == fp.get("boot_id")]
        pick = same_boot or [q for q, _ in same_machine]
        if not pick:
            return (analysis.write_ceiling(pd.DataFrame()), None,
                    "No comparison dataset was measured on this sweep's machine, so no C loop's write ceiling is "
                    "shown beside it (`make report` measures one).")
        p = pick[0]
    df, _ = peers.load(p)
    ceiling = analysis.write_ceiling(df)
    where = ", ".join(f"{analysis.display_label(t)}" for t in ceiling.index) or "no target"
    return ceiling, p.name, (f"The C loop's write ceiling comes from the comparison dataset `{p.name}` (fio's no-sync "
                             f"writes; measured on {where}).")


def load_run(path: str | os.PathLike):
    """A run to put beside another (``analysis.diff_runs``): a sweep dataset's trials, or the results
    of ``bench --json`` saved to a file (one trial per strategy).  Returns (DataFrame, name)."""
    import pandas as pd

    from .targets import Target, table_label
    p = Path(path)
    if p.is_dir():
        df, _ = sweep.load(existing(p, sweep.KIND))
        return df, p.name
    try:
        doc = json.loads(p.read_text())
        env, results = doc["fsyncstudy"], doc["results"]
        target = Target(**env["target"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{p} does not exist: give a dataset directory or a `bench --json` file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise dataset.DatasetError(f"{p} is neither a dataset directory nor the output of `bench --json` "
                                   f"({type(e).__name__}: {str(e)[:100]})") from None
    rows = []
    for r in results:
        c = sweep.Config(r["strategy"], r["writers"], r["prealloc"], r["sync_method"])
        rows.append({**r, "target": target.path, "target_label": table_label(target), "config": c.key,
                     "config_label": c.label})
    return pd.DataFrame(rows), p.name


# -- the pipeline behind make report ----------------------------------------------------------------

#: Seconds a phase costs beyond what its plan says, per unit, as measured on the CI machine
#: (2026-11-26/28: 1,836 sweep trials in 832 s, 2,300 cuts in 545 s, 10 peer rounds in about 3 min).
SWEEP_OVERHEAD_S = 0.05
CUT_S = 0.24
PEER_ROUND_S = {"fio": 2.5, "pg_test_fsync": 15.5}
NOTEBOOKS_S = 45   # two at a time (report.PARALLEL): 45 s for the quick report's nine, 2026-12-07
#: Seconds a real-database trial (start, connect, stop) and a power cut (restart, recovery) cost beyond
#: their timed part, about, on this kind of machine.
REAL_TRIAL_OVERHEAD_S, REAL_CUT_OVERHEAD_S = 0.4, 0.2
LOAD_OVERHEAD_S = 0.03


def eta(prof: StudyProfile, targets: int, default_targets: int, kinds, lab_targets=()) -> dict[str, float]:
    """About how long each phase of ``run_study`` takes, in seconds (an estimate to plan by)."""
    sp = prof.sweep
    trials = sum(sp.duration_s(c) + SWEEP_OVERHEAD_S for c in sp.configs()) * (sp.trials + sp.warmup_rounds)
    cuts = sum(len(getattr(prof.crash, k)[0]) * getattr(prof.crash, k)[1] for k in kinds)
    lp = prof.load
    load_targets = 1 + sum(1 for t in lp.lab_targets if t in lab_targets)
    load = (lp.trials + lp.warmup_rounds) * len(lp.cells()) * load_targets * (lp.duration_s + LOAD_OVERHEAD_S)
    rp = prof.realdb
    cells = len(rp.settings) + len(rp.rate_settings) * len(rp.rates)
    real = (rp.trials + rp.warmup_rounds) * cells * 2 * (rp.duration_s + REAL_TRIAL_OVERHEAD_S + QUIET_WINDOW_S)
    if "power" in kinds:
        from .realdb import BY_KEY, cut_window_ms
        real += sum(rp.cuts * (sum(cut_window_ms(BY_KEY[k])) / 2e3 + REAL_CUT_OVERHEAD_S) for k in rp.cut_settings)
    return {"sweep": trials * targets, "crash": cuts * CUT_S, "load": load, "real databases": real,
            "peers": prof.peers.rounds * default_targets * sum(PEER_ROUND_S.get(p, 10) for p in prof.peers.peers),
            "notebooks": NOTEBOOKS_S}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run_study(profile_name: str = "standard", targets: list[str] | None = None, use_lab: bool = True, seed: int = 0,
              progress: bool = True, log=print) -> "StudyPaths":
    """The measurements behind the report: the sweep, the crash experiment, the peers comparison.

    With ``use_lab`` (and a machine that allows it: root, loop devices, /dev/fuse, the mkfs
    tools) the storage lab comes up for the duration, its targets join the sweep, and the
    power cuts run on lab:powercut; whatever cannot come up is recorded with the reason.
    """
    prof = profile(profile_name)
    skipped: dict[str, str] = {}
    lab = None
    if use_lab:
        try:
            from .lab import TARGET_NAMES, Lab, requirements
            needs = requirements(TARGET_NAMES)
            skipped = {t: r for t, r in needs.items() if r}
            if len(skipped) < len(needs):
                lab = Lab.for_run(targets=[t[4:] for t, r in needs.items() if not r])
        except ImportError as e:
            skipped = {"lab": f"the storage lab cannot be imported ({e})"}
    else:
        skipped = {"lab": "not asked for (--no-lab)"}
    with lab if lab is not None else nullcontext() as up:
        lab_targets = []
        if up is not None:
            skipped.update(up.skipped())
            lab_targets = up.available()
            log(f"lab up: {', '.join(lab_targets) or 'nothing'}" + (f"; skipped: {skipped}" if skipped else ""))
        chosen = targets or default_targets() + lab_targets
        kinds = ("power", "process") if "lab:powercut" in lab_targets else ("process",)
        plan = eta(prof, len(chosen), len(default_targets()), kinds, lab_targets)
        log(f"make report, {prof.name} profile: about {_minutes(sum(plan.values()))} in all ("
            + ", ".join(f"{k} ~{_minutes(v)}" for k, v in plan.items()) + "; resumed work is skipped)")
        sweep_path = sweep_out(prof.name)
        log(f"study: {prof.name} profile on {len(chosen)} targets into {sweep_path} (resumes if interrupted)")
        s = sweep.run_sweep(sweep_path, profile=prof.sweep, targets=chosen, seed=seed, progress=progress,
                            skipped=skipped)
        log(f"{s.ran} trials run ({s.failed} failed), {s.skipped} already done, in {s.elapsed_s:.0f} s")
        crash_path = crash_out(prof.name, kinds)
        log(f"crash experiment: {prof.crash.name}, {' and '.join(kinds)} cuts into {crash_path}")
        c = crash.run_crash(crash_path, prof.crash, kinds=kinds, seed=seed, progress=progress,
                            lab_dir=up.lab_dir if up is not None else None,
                            note={} if "power" in kinds else {"power": skipped.get("lab:powercut", "the lab is not up")})
        log(f"{c.ran} cuts run, {c.skipped} already done, in {c.elapsed_s:.0f} s")
        for line in c.lost_by_durable:
            log(f"BUG: {line}")
        load_targets = [str(runs_dir())] + [t for t in prof.load.lab_targets if t in lab_targets]
        load_path = load_out(prof.name)
        log(f"load study: {prof.load.name}, {len(prof.load.rates)} rates on {', '.join(load_targets)} into {load_path}")
        ls = loadstudy.run_load_study(load_path, prof.load, load_targets, seed=seed, progress=progress)
        log(f"{ls.ran} load trials run ({ls.failed} failed), {ls.skipped} already done, in {ls.elapsed_s:.0f} s")
        real_path = realdb_out(prof.name)
        real_dirs, where = realdb_targets()
        log(f"real databases: {len(prof.realdb.settings)} settings and their predictions on {real_dirs[0]} into "
            f"{real_path}" + (f" ({where})" if where else ""))
        rs = realstudy.run_real_study(real_path, prof.realdb, real_dirs, seed=seed, progress=progress, where=where)
        for db, why in rs.missing.items():
            log(f"real databases: {db} skipped: {why}")
        log(f"{rs.ran} real-database trials run ({rs.failed} failed), {rs.skipped} already done, in "
            f"{rs.elapsed_s:.0f} s")
        real_crash_path = None
        if "lab:powercut" in lab_targets:
            real_crash_path = realdb_crash_out(prof.name)
            log(f"power cuts under real databases: {prof.realdb.cuts} per setting for "
                f"{len(prof.realdb.cut_settings)} settings into {real_crash_path}")
            rc = realstudy.run_real_crash(real_crash_path, prof.realdb, seed=seed, lab_dir=up.lab_dir,
                                          progress=progress)
            log(f"{rc.ran} cuts run ({rc.failed} failed), {rc.skipped} already done, in {rc.elapsed_s:.0f} s")
            for line in rc.lost_by_durable:
                log(f"lost by a durable setting: {line}")
        else:
            log(f"power cuts under real databases skipped: {skipped.get('lab:powercut', 'the lab is not up')}")
    # the peers, on the default targets (not the lab's: fio and pg_test_fsync compare real devices)
    log(f"peers: {' and '.join(prof.peers.peers)} side by side with us, {prof.peers.rounds} rounds on each "
        "default target")
    peers_path = peers_out(prof.peers)
    peers.run_comparison(peers_path, rounds=prof.peers.rounds, peers=prof.peers.peers,
                         secs_per_test=prof.peers.secs_per_test, log=(lambda m: log(f"peers: {m}")) if progress else None)
    return StudyPaths(sweep_path, crash_path, peers_path, load_path, real_path, real_crash_path)


class StudyPaths(NamedTuple):
    """The datasets ``run_study`` filled."""

    sweep: Path
    crash: Path
    peers: Path
    load: Path
    realdb: Path | None = None
    realdb_crash: Path | None = None


# -- datasets written before format 2 ---------------------------------------------------------------

def upgrade(directory: str | os.PathLike) -> dict:
    """Rewrite a format-1 dataset's meta.json in the format-2 shape; the rows are not touched.

    Format 1 had a meta.json of its own shape for each kind (a sweep's had no kind at all).
    Returns the new meta; refuses anything but a readable format-1 meta.json.
    """
    d = Path(directory)
    path = d / dataset.META_FILE
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise dataset.DatasetError(f"{path} cannot be read as JSON: {e}") from None
    if not isinstance(old, dict) or old.get("format", 1) != 1 or not isinstance(old.get("environment"), dict):
        raise dataset.DatasetError(f"{path} is not a format-1 meta.json (nothing to upgrade)")
    kind = old.get("kind", "sweep")
    env = dict(old["environment"])
    if kind == "sweep":
        schema, table = sweep.SCHEMA, sweep.TABLE
        plan = {"profile": old["profile"], "seed": old["seed"], "targets": old["targets"]}
        env["targets"] = old.get("target_descriptions", {})
        notes = {"target_names": old.get("target_names", {}), "skipped_targets": old.get("skipped_targets", {}),
                 "trial_rule": old.get("trial_rule", "")}
    elif kind == "crash":
        schema, table = crash.SCHEMA, crash.TABLE
        plan = {"profile": old["profile"], "kinds": old["kinds"], "seed": old["seed"],
                "cut_window_ms": old["cut_window_ms"], "strategies": old["plan"],
                "cuts_per_strategy": old["cuts_per_strategy"]}
        env["targets"] = {v["label"]: v["description"] for v in old.get("targets", {}).values()}
        notes = {"targets": {k: v["label"] for k, v in old.get("targets", {}).items()},
                 "skipped": old.get("skipped", {})}
    elif kind == "peers":
        schema, table = peers.SCHEMA, peers.TABLE
        plan = {"rounds": old["rounds"], "peers": old["peers"], "secs_per_test": old["secs_per_test"],
                "targets": old["targets"]}
        env["targets"] = old.get("target_descriptions", {})
        notes = {"missing_peers": old.get("missing_peers", {})}
    else:
        raise dataset.DatasetError(f"{path} is of an unknown kind {kind!r}")
    try:
        with open(d / table, newline="") as f:
            header = next(csv.reader(f), None)
    except FileNotFoundError:
        header = None
    types = dict(schema)
    columns = [[c, types.get(c, "str")] for c in header] if header else schema
    new = {"format": dataset.FORMAT, "kind": kind,
           "created_at": old.get("created_at") or "unknown (format 1 recorded none)", "environment": env,
           "plan": plan, "table": table, "columns": columns, "notes": notes, "runs": old.get("runs", [])}
    dataset.write_json_durably(path, new)
    return new
