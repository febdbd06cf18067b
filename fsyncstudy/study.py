"""The study as ``make report`` runs it: the storage lab, the sweep, the crash experiment, the load
study, the real databases and their power cuts, and the peers comparison, each into its dataset (resumed
when interrupted).  What each profile measures is ``profiles``; where the datasets go and what the
notebooks open is ``catalog``.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from . import crash, loadstudy, peers, realdb, realstudy, runner, sweep
from .catalog import default_out, realdb_targets, runs_dir
from .places import BUILD, default_targets
from .profiles import eta, profile


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run_study(profile_name: str = "standard", targets: list[str] | None = None, use_lab: bool = True, seed: int = 0,
              progress: bool = True, log=print) -> dict[str, Path | None]:
    """The measurements behind the report: the sweep, the crash experiment, the peers comparison, the
    load study and the real databases.  Returns the datasets filled, named as ``report.build_report``
    takes them (``dataset``: the sweep; ``crash_dataset``, ...; None for what did not run).

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
        sweep_path = default_out(sweep.KIND, prof.name)
        log(f"study: {prof.name} profile on {len(chosen)} targets into {sweep_path} (resumes if interrupted)")
        s = sweep.run_sweep(sweep_path, profile=prof.sweep, targets=chosen, seed=seed, progress=progress,
                            skipped=skipped)
        log(f"{s.ran} trials run ({s.failed} failed), {s.skipped} already done, in {s.elapsed_s:.0f} s")
        crash_path = default_out(crash.KIND, prof.name, kinds=kinds)
        log(f"crash experiment: {prof.crash.name}, {' and '.join(kinds)} cuts into {crash_path}")
        c = crash.run_crash(crash_path, prof.crash, kinds=kinds, seed=seed, progress=progress,
                            lab_dir=up.lab_dir if up is not None else None,
                            note={} if "power" in kinds else {"power": skipped.get("lab:powercut", "the lab is not up")})
        log(f"{c.ran} cuts run, {c.skipped} already done, in {c.elapsed_s:.0f} s")
        for line in c.lost_by_durable:
            log(f"BUG: {line}")
        load_targets = [str(runs_dir())] + [t for t in prof.load.lab_targets if t in lab_targets]
        load_path = default_out(loadstudy.KIND, prof.name)
        log(f"load study: {prof.load.name}, {len(prof.load.rates)} rates on {', '.join(load_targets)} into {load_path}")
        ls = loadstudy.run_load_study(load_path, prof.load, load_targets, seed=seed, progress=progress)
        log(f"{ls.ran} load trials run ({ls.failed} failed), {ls.skipped} already done, in {ls.elapsed_s:.0f} s")
        real_path = default_out(realstudy.KIND, prof.name)
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
            real_crash_path = default_out(realstudy.CRASH_KIND, prof.name)
            lossy = "" if prof.realdb.lossy_cuts is None else f" ({prof.realdb.lossy_cuts} where the setting may lose)"
            log(f"power cuts under real databases: {prof.realdb.cuts} per setting{lossy} for "
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
    peers_path = default_out(peers.KIND, prof.name)
    peers.run_comparison(peers_path, rounds=prof.peers.rounds, peers=prof.peers.peers,
                         secs_per_test=prof.peers.secs_per_test, log=(lambda m: log(f"peers: {m}")) if progress else None,
                         pairs=prof.peers.pairs)
    return {"dataset": sweep_path, "crash_dataset": crash_path, "peers_dataset": peers_path,
            "load_dataset": load_path, "realdb_dataset": real_path, "realdb_crash_dataset": real_crash_path}


# -- power cuts under the real databases, as `realdb crash` runs them --------------------------------

def run_realdb_crash(profile_name: str | None = None, db: str | None = None, settings: list[str] | None = None,
                     cuts: int | None = None, out=None, seed: int = 0, progress: bool = True) -> runner.Summary:
    """Power cuts under the real databases on a storage lab of their own
    (``realstudy.run_real_crash_in_lab``: a LabError when lab:powercut cannot come up here).

    The plan is the profile's when no database or setting is named; else the named ones (``db``, and
    ``settings`` of it, as ``realdb.settings``) with ``cuts`` each, 20 unless given.  Into ``out``, else
    the profile's default dataset in runs/, else build/realdb-crash-<databases>.  The summary's ``out``
    is the dataset.
    """
    chosen = realdb.settings(db, settings)
    if profile_name and not (db or settings):
        plan = profile(profile_name).realdb
        default = default_out(realstudy.CRASH_KIND, profile_name)
    else:
        keys = tuple(s.key for s in chosen)
        plan = realstudy.RealPlan(profile_name or "custom", settings=keys, cut_settings=keys, cuts=cuts or 20)
        default = BUILD / f"realdb-crash-{'+'.join(sorted({s.db for s in chosen}))}"
    return realstudy.run_real_crash_in_lab(Path(out) if out else default, plan, seed=seed, progress=progress, cuts=cuts)
