"""The study's datasets: where each kind goes by default, which there are, which is the newest, what
the notebooks open (finding one, else measuring it), and the upgrade of datasets written before format 3.

A dataset's default name says what made it (``default_out``): the profile's plan, the machine and its
boot, and a short key over the plan, the format and the engine, so that a new machine, boot or version
of the study starts a new dataset and the same ones resume.  Datasets are looked for in data/ (the
committed reference datasets), runs/ (a user's runs) and build/ (what the notebooks measured).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from . import crash, dataset, diskcheck, loadstudy, peers, realdb, realstudy, sweep
from .places import BUILD, DATA, REPO, RUNS
from .profiles import profile


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


def key(*parts) -> str:
    """A short hash of what a dataset's rows mean: ``parts`` (its plan, its columns, ...), the dataset
    format and the engine digest (``dataset.engine_digest``)."""
    blob = json.dumps([dataset.FORMAT, dataset.engine_digest(), *parts], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:6]


#: Each kind's columns as this version writes them (``dataset.check``: meta.json must not retype them).
SCHEMAS = {sweep.KIND: sweep.SCHEMA, crash.KIND: crash.SCHEMA, peers.KIND: peers.SCHEMA,
           loadstudy.KIND: loadstudy.SCHEMA, realstudy.KIND: realstudy.SCHEMA,
           realstudy.CRASH_KIND: realstudy.CRASH_SCHEMA, diskcheck.KIND: diskcheck.SCHEMA}


#: A fleet's dataset is a sweep dataset whose plan names its hosts (``fleet``): "fleet" finds those,
#: and "sweep" the others, so that a fleet never stands in for this machine's own sweep.  A fleet's load
#: study is named "fleet-load".
FLEET, FLEET_LOAD = "fleet", "fleet-load"


def default_out(kind: str, profile_name: str, parent: Path | None = None, *, kinds=(),
                targets: list[str] | None = None, scheduler: str | None = None) -> Path:
    """Where a ``kind`` dataset measured with the profile's plan goes unless told otherwise:
    ``<parent, else runs/>/<name>-<host>-<boot>-<key>``, the key (``key``) over the plan and what else
    decides what its rows mean:

    ================  ============================  ===================================================
    kind              name                          the key covers, besides the plan
    ================  ============================  ===================================================
    sweep             <profile>                     the columns; ``targets`` when named (other targets,
                                                    another dataset)
    fleet             fleet-<profile>               ``scheduler`` (which hosts and targets a fleet has
                                                    is checked by the dataset)
    fleet-load        fleet-load-<profile>          ``scheduler``
    crash             crash-<plan>-<``kinds``>      the columns
    peers             peers-<peers>-r<rounds>       the columns
    load              load-<plan>                   the columns
    realdb            realdb-<plan>                 the columns
    realdb-crash      realdb-crash-<plan>           the columns
    ================  ============================  ===================================================

    (<plan> is the plan's own name: the full profile's crash plan is the standard one.)
    """
    prof = profile(profile_name)
    named = {
        sweep.KIND: (prof.sweep, profile_name, (sweep.SCHEMA, *([sorted(targets)] if targets is not None else []))),
        FLEET: (prof.sweep, f"fleet-{profile_name}", ("sweep", scheduler)),
        FLEET_LOAD: (prof.load, f"fleet-load-{profile_name}", ("load", scheduler)),
        crash.KIND: (prof.crash, f"crash-{prof.crash.name}-{'+'.join(kinds)}", (crash.SCHEMA,)),
        peers.KIND: (prof.peers, f"peers-{'+'.join(prof.peers.peers)}-r{prof.peers.rounds}", (peers.SCHEMA,)),
        loadstudy.KIND: (prof.load, f"load-{prof.load.name}", (loadstudy.SCHEMA,)),
        realstudy.KIND: (prof.realdb, f"realdb-{prof.realdb.name}", (realstudy.SCHEMA,)),
        realstudy.CRASH_KIND: (prof.realdb, f"realdb-crash-{prof.realdb.name}", (realstudy.CRASH_SCHEMA,)),
    }
    if kind not in named:
        raise ValueError(f"no default name for a {kind!r} dataset: use one of {', '.join(named)}")
    plan, name, parts = named[kind]
    return (parent or RUNS) / f"{name}-{dataset.machine_tag()}-{key(asdict(plan), *parts)}"


# -- which datasets there are -----------------------------------------------------------------------

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
#
# Every opener is one pattern: ``_found`` (the dataset named, else the newest of this machine or the
# newest committed), else the profile's measurement, fresh and resumable, into build/ under its default
# name (so that notebooks run one after another share it).  A fleet's opener measures nothing: a fleet
# is measured with ``sweep --scheduler``.

def _found(path, kind: str, look: bool, or_raise: bool = False) -> Path | None:
    """What every opener does first: ``path`` if given (it must hold a ``kind`` dataset); else, when
    ``look``, the newest of this machine or the newest committed; None when there is none (measure), or
    with ``or_raise`` the DatasetError that says how to make one."""
    if path is not None:
        return existing(path, kind)
    if look:
        try:
            return newest(kind)
        except dataset.DatasetError:
            if or_raise:
                raise
    return None


def diskcheck_dataset(path=None) -> Path | None:
    """A flush-honesty check's dataset (``diskcheck``): ``path`` if given, else the newest of this machine,
    else the newest committed; None when there is none (it is measured by ``python -m fsyncstudy diskcheck``,
    never by the report: a check needs a power cut)."""
    return _found(path, diskcheck.KIND, True)


def crash_evidence(path=None) -> tuple[Path | None, "pd.DataFrame | None"]:
    """(path, cuts) of the crash dataset whose power cuts stand beside the advice's loss column
    (``analysis.advise``): ``path`` if given, else the newest there is, else (None, None)."""
    found = _found(path, crash.KIND, True)
    return (None, None) if found is None else (found, crash.load(found)[0])


def crash_cuts(path=None):
    """The cuts of ``crash_evidence``, or None."""
    return crash_evidence(path)[1]


def sweep_dataset(path=None, profile_name: str = "quick", targets: list[str] | None = None, seed: int = 0,
                  progress: bool = True, measure: bool = False) -> Path:
    """The sweep dataset to analyse: ``path`` if it holds one; else, unless asked to ``measure`` (or
    given ``targets``), the newest of this machine or the newest committed one (a DatasetError saying
    how to make one when there is none: a sweep is measured only when asked); else a fresh (resumable)
    sweep into build/."""
    if (found := _found(path, sweep.KIND, not measure and targets is None, or_raise=True)) is not None:
        return found
    out = default_out(sweep.KIND, profile_name, BUILD, targets=targets)
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
                    out = default_out(crash.KIND, profile_name, BUILD, kinds=("power", "process"))
                    crash.run_crash(out, plan, kinds=("power", "process"), seed=seed, progress=progress,
                                    lab_dir=lab.lab_dir)
                    return out
                skipped["power"] = lab.skipped().get("lab:powercut", "lab:powercut is not available")
        except LabError as e:  # e.g. the remains of a crashed run in build/lab: say so, go on without
            skipped["power"] = str(e)
    log(f"power cuts skipped: {skipped['power']}; running process crashes only")
    out = default_out(crash.KIND, profile_name, BUILD, kinds=("process",))
    crash.run_crash(out, plan, kinds=("process",), seed=seed, progress=progress, note=skipped)
    return out


def peers_dataset(path=None, profile_name: str = "quick", log=None, measure: bool = False) -> Path:
    """A comparison dataset: ``path`` if it holds one, else the newest one of this machine (or
    committed), else (or with ``measure``) a fresh (resumable) comparison of the profile's peers on
    the default targets, in build/."""
    if (found := _found(path, peers.KIND, not measure)) is not None:
        return found
    plan = profile(profile_name).peers
    out = default_out(peers.KIND, profile_name, BUILD)
    peers.run_comparison(out, rounds=plan.rounds, peers=plan.peers, secs_per_test=plan.secs_per_test, log=log,
                         pairs=plan.pairs)
    return out


def load_dataset(path=None, profile_name: str = "quick", targets: list[str] | None = None, seed: int = 0,
                 measure: bool = False, progress: bool = True) -> Path:
    """A load dataset: ``path`` if it holds one, else the newest one of this machine (or committed), else
    (or with ``measure``) the profile's load study on ``targets`` (default: the checkout's disk, runs/) in build/."""
    if (found := _found(path, loadstudy.KIND, not measure and targets is None)) is not None:
        return found
    out = default_out(loadstudy.KIND, profile_name, BUILD)
    loadstudy.run_load_study(out, profile(profile_name).load, targets or [str(runs_dir())], seed=seed, progress=progress)
    return out


def realdb_dataset(path=None, profile_name: str = "quick", targets: list[str] | None = None, seed: int = 0,
                   measure: bool = False, progress: bool = True) -> Path:
    """A real-database dataset: ``path`` if it holds one, else the newest one of this machine (or
    committed), else (or with ``measure``) the profile's study on ``targets`` (default: the disk of
    the checkout, ``realdb_targets``) in build/."""
    if (found := _found(path, realstudy.KIND, not measure and targets is None)) is not None:
        return found
    out = default_out(realstudy.KIND, profile_name, BUILD)
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
    from .lab import LabError
    out = default_out(realstudy.CRASH_KIND, profile_name, BUILD)
    try:
        realstudy.run_real_crash_in_lab(out, profile(profile_name).realdb, seed=seed, progress=progress)
    except LabError as e:
        print(f"power cuts under real databases skipped: {e}")
        return None
    return out


def shortfall(meta: dict, name: str = "This dataset") -> str:
    """A sentence for a dataset short of its plan ("" when it is not), from what ``dataset.load`` found
    (``meta["checked"]``): every page, ``diff`` and ``advise`` computed from such a dataset says so."""
    text = dataset.shortfall_text(meta.get("checked"))
    return f"**Short of its plan**: {name}: {text}, so its intervals there are wider than planned." if text else ""


def show_shortfall(meta: dict, name: str = "This dataset") -> None:
    """In a notebook: ``shortfall``'s sentence, shown only when the dataset is short of its plan."""
    text = shortfall(meta, name)
    if text:
        from IPython.display import Markdown, display
        display(Markdown(text))


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
        import html
        short = dataset.shortfall_text(self.meta.get("checked"))
        return (f"<p>Dataset <code>{self.path.name}</code>: {len(self.df)} trials (warm-up round excluded), "
                f"measured on {env['host']} (Linux {env['kernel']}) from {self.meta['created_at']}. The machine and "
                "the targets: the report's index.</p>"
                + (f"<p><b>Short of its plan</b>: {html.escape(short)}, so its intervals there are wider than "
                   "planned.</p>" if short else ""))


def open_sweep(path=None, profile_name: str = "quick", targets: list[str] | None = None, seed: int = 0,
               n_boot: int = 2000, measure: bool = False) -> SweepView:
    """The opening of notebooks 01-03: find (or measure) the sweep dataset, load it, summarize it."""
    from . import analysis
    p = sweep_dataset(path, profile_name, targets=targets, seed=seed, measure=measure)
    df, meta = sweep.load(p)
    return SweepView(p, df, meta, analysis.summary(df, seed=seed, n_boot=n_boot))


def write_ceiling_for(sweep_meta: dict, path=None):
    """fio's no-sync write rate (a C loop's) to show beside a sweep (``analysis.write_ceiling``): from the
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
                    "No comparison dataset was measured on this sweep's machine, so fio's no-sync write rate is "
                    "not shown beside it (`make report` measures one).")
        p = pick[0]
    df, _ = peers.load(p)
    ceiling = analysis.write_ceiling(df)
    where = ", ".join(f"{analysis.display_label(t)}" for t in ceiling.index) or "no target"
    return ceiling, p.name, (f"fio's no-sync write rate (a C loop, a reference rate, not a ceiling) comes from the "
                             f"comparison dataset `{p.name}` (measured on {where}).")


def load_run(path: str | os.PathLike):
    """A run to put beside another (``analysis.diff_runs``): a sweep dataset's trials, or the results
    of ``bench --json`` saved to a file (one trial per strategy).  Returns (DataFrame, name)."""
    import pandas as pd

    from .targets import Target, table_label
    p = Path(path)
    if p.is_dir():
        df, meta = sweep.load(existing(p, sweep.KIND))
        # how many trials its plan asked for per configuration: a short dataset says "n = 2 of 5 planned"
        return df.assign(planned=meta["checked"]["planned"]), p.name
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


# -- datasets written before format 3 ---------------------------------------------------------------

def upgrade(directory: str | os.PathLike) -> dict:
    """Bring a dataset written by an older fsyncstudy to today's format: format 1's meta.json is
    rewritten in the format-2 shape, then format 2's rows are checked and given their checksums
    (``dataset.upgrade_rows``: a row with a problem refuses the upgrade).

    Format 1 had a meta.json of its own shape for each kind (a sweep's had no kind at all).
    Returns the new meta; refuses a dataset of today's format or a meta.json it cannot read.
    """
    d = Path(directory)
    try:
        dataset.read_meta(d, formats=(2, dataset.FORMAT))
    except dataset.DatasetError:
        _meta_format_1(d)   # format 1 (or unreadable: it says which) becomes format 2's meta.json
    return dataset.upgrade_rows(d)


def _meta_format_1(d: Path) -> dict:
    """Rewrite a format-1 meta.json in the format-2 shape (its rows are not touched)."""
    path = d / dataset.META_FILE
    why = dataset._regular_file(path, "meta.json")
    if why:
        raise dataset.DatasetError(f"{path} {why}")
    try:
        text = path.read_text()
        if len(text) > dataset.MAX_META_BYTES or dataset._too_deep(text, dataset.MAX_META_DEPTH):
            raise ValueError("too large or too deeply nested for a meta.json")
        old = json.loads(text)
    except (OSError, ValueError) as e:
        raise dataset.DatasetError(f"{path} cannot be read as JSON: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(old, dict) or old.get("format", 1) != 1 or not isinstance(old.get("environment"), dict):
        raise dataset.DatasetError(f"{path} is neither a format-1 meta.json nor a dataset this version reads "
                                   "(nothing to upgrade)")
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
    new = {"format": 2, "kind": kind,
           "created_at": old.get("created_at") or "unknown (format 1 recorded none)", "environment": env,
           "plan": plan, "table": table, "columns": columns, "notes": notes, "runs": old.get("runs", [])}
    dataset.write_json_durably(path, new)
    return new
