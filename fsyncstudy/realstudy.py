"""The real-database study: each database setting beside the fsyncstudy strategy that predicts it, on
the same target in the same round, and power cuts under each database.

Rounds: every (target, setting) once per round, in an order shuffled by the seed; within a pair the
database runs first in even rounds and the prediction first in odd ones, so drift hits both alike.
Every trial is a row of ``trials.csv`` (``side``: ``db`` or ``prediction``) in a dataset of kind
``realdb``; power cuts are rows of ``cuts.csv`` in a dataset of kind ``realdb-crash``.  Both resume,
and a failed trial or cut runs again.  A database that cannot run here is recorded in the dataset's
notes with the reason, and the rest goes on.

The named plans are ``fsyncstudy.profiles.PROFILES[name].realdb``.
"""
from __future__ import annotations

import os
import random
import warnings
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from . import dataset, realdb, runner
from .cuts import CutError, PowerCut, durable_lost
from .log import remove_stale
from .places import resolve_all
from .targets import describe, table_label
from .trial import run_trial

KIND, TABLE = "realdb", "trials.csv"
CRASH_KIND, CRASH_TABLE = "realdb-crash", "cuts.csv"


@dataclass(frozen=True)
class RealPlan:
    """What the study measures: ``settings`` (keys of ``realdb.SETTINGS``) on every target, ``trials``
    rounds after ``warmup_rounds``, each trial ``duration_s``; ``cuts`` power cuts for each of
    ``cut_settings`` on ``lab:powercut`` (``lossy_cuts`` for a setting whose promise allows a loss)."""

    name: str
    trials: int = 3
    warmup_rounds: int = 1
    duration_s: float = 0.5
    settings: tuple[str, ...] = tuple(s.key for s in realdb.SETTINGS)
    cuts: int = 20
    cut_settings: tuple[str, ...] = tuple(s.key for s in realdb.SETTINGS)
    #: Open loop: these arrival rates (commits a second, Poisson) for ``rate_settings``, besides the
    #: closed loop every setting runs.
    rates: tuple[float, ...] = ()
    rate_settings: tuple[str, ...] = ()
    #: Power cuts for a setting that does not promise durability at commit (None: ``cuts``).  A setting
    #: that does needs many cuts for its zero-loss upper bound (3.0% of cuts from 100 that lose none);
    #: one that may lose is measured for its window against its promise, which fewer cuts show.
    lossy_cuts: int | None = None

    def cuts_for(self, setting: realdb.Setting) -> int:
        return self.cuts if setting.acks_durable or self.lossy_cuts is None else self.lossy_cuts


@dataclass
class RealTrial:
    """One trial: a database setting (``side`` db) or the strategy predicting it (``side`` prediction)."""

    round: int
    warmup: bool
    position: int
    first: str                 # which side of the pair ran first in this round: db or prediction
    target: str
    target_label: str
    db: str
    setting: str
    side: str
    strategy: str              # the prediction's strategy (on both sides, so rows pair up)
    clients: int
    payload_bytes: int
    rate: float = 0.0          # offered commits a second (open loop); 0: closed loop
    commits: int = 0
    elapsed_s: float | None = None
    commits_per_sec: float | None = None
    latency_us_p50: float | None = None
    latency_us_p99: float | None = None
    latency_us_max: float | None = None
    latency_hist: str = ""
    client_cpu_us_per_commit: float | None = None
    server_cpu_us_per_commit: float | None = None
    server_write_calls_per_commit: float | None = None
    server_write_bytes_per_commit: float | None = None
    device_flushes_per_commit: float | None = None
    device_bytes_per_commit: float | None = None
    #: Flushes a second the device saw from other processes, in a quiet window just before the trial
    #: (``realdb.quiet_flushes_per_sec``): a busy disk's share of the device-wide counts above.
    device_quiet_flushes_per_sec: float | None = None
    syncs_per_commit: float | None = None        # the prediction's own count (the engine counts its syncs)
    offered_rate: float | None = None            # open loop: offered and achieved a second, left queued
    achieved_rate: float | None = None
    unserved: int | None = None
    saturated: bool | None = None
    version: str = ""
    status: str = "ok"
    error: str = ""


SCHEMA = dataset.columns_of(RealTrial)
CRASH_SCHEMA = dataset.columns_of(realdb.CutResult)


def plan(p: RealPlan, targets: list[str], seed: int) -> list[dict]:
    """Every pair in order: rounds of every (target, setting), each round shuffled by the seed."""
    cells = [(t, s, 0.0) for t in targets for s in p.settings]
    cells += [(t, s, float(r)) for t in targets for s in p.rate_settings for r in p.rates]
    out = []
    for rnd in range(p.warmup_rounds + p.trials):
        order = list(cells)
        random.Random(f"{seed}/realdb/{rnd}").shuffle(order)
        out += [{"round": rnd, "warmup": rnd < p.warmup_rounds, "position": k, "target": t, "setting": s, "rate": r,
                 "first": "db" if rnd % 2 == 0 else "prediction"} for k, (t, s, r) in enumerate(order)]
    return out


def _key(row) -> tuple:
    return (int(row["round"]), row["target"], f"{row['db']}/{row['setting']}", float(row["rate"] or 0), row["side"])


def _ok(row) -> bool:
    return row["status"] == "ok"


def _settings(keys) -> list[realdb.Setting]:
    """The settings named by ``keys`` (``db/name``), each once, in order; unknown ones: ValueError."""
    return [realdb.settings(names=[k])[0] for k in dict.fromkeys(keys)]


def measure_db(s: realdb.Setting, directory: str, duration_s: float, block_device: str | None,
               rate: float = 0.0, seed: int = 0) -> dict:
    w, version = realdb.measure(s, directory, duration_s=duration_s, block_device=block_device, rate=rate or None,
                                seed=seed)
    return {**asdict(w), "version": version}


def measure_prediction(s: realdb.Setting, directory: str, duration_s: float, block_device: str | None,
                       rate: float = 0.0, seed: int = 0) -> dict:
    """The setting's predicting strategy on the same directory: our engine (``run_trial``, or
    ``run_load_trial`` at ``rate``), with the same device counters around it."""
    dev0 = realdb.device_counters(block_device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if rate:
            from .load import run_load_trial
            r = run_load_trial(s.predict, rate, duration_s=duration_s, directory=directory, arrivals="poisson",
                               clients=s.predict_writers, seed=seed, payload_bytes=s.predict_payload_bytes)
            n, elapsed, ops = r.served, r.duration_s, r.achieved_rate
            lat = (r.latency_us_p50, r.latency_us_p99, r.latency_us_max, "")
            extra = {"offered_rate": r.offered_rate, "achieved_rate": r.achieved_rate, "unserved": r.unserved,
                     "saturated": r.saturated}
        else:
            r = run_trial(s.predict, duration_s=duration_s, directory=directory,
                          payload_bytes=s.predict_payload_bytes, writers=s.predict_writers)
            n, elapsed, ops = r.entries, r.elapsed_s, r.ops_per_sec
            lat = (r.ack_latency_us_p50, r.ack_latency_us_p99, r.ack_latency_us_max, r.ack_latency_hist or "")
            extra = {}
    dev1 = realdb.device_counters(block_device)
    per = (lambda v: v / n) if n else (lambda v: None)
    return {"commits": n, "elapsed_s": elapsed, "commits_per_sec": ops,
            "latency_us_p50": lat[0], "latency_us_p99": lat[1], "latency_us_max": lat[2], "latency_hist": lat[3],
            "client_cpu_us_per_commit": r.cpu_us_per_entry, "syncs_per_commit": per(r.syncs), **extra,
            "device_flushes_per_commit": per(dev1["flushes"] - dev0["flushes"]) if dev0 and dev1 and
            dev0["flushes"] is not None else None,
            "device_bytes_per_commit": per(dev1["write_bytes"] - dev0["write_bytes"]) if dev0 and dev1 else None,
            "version": "fsyncstudy engine"}


def run_real_study(out, p: RealPlan, targets: list[str], seed: int = 0, progress: bool = True,
                   limit: int | None = None, where: str = "") -> runner.Summary:
    """Run (or resume) the real-database study into the dataset ``out`` (``where``: a sentence on why the
    targets are where they are, kept in its notes for the page)."""
    if not isinstance(p, RealPlan):
        raise TypeError(f"p must be a realstudy.RealPlan, got {p!r}")
    chosen = _settings(p.settings + p.rate_settings)
    dirs = resolve_all(targets)
    descriptions = {d: describe(d) for d in dirs}
    missing = realdb.availability()
    ds = dataset.open_or_resume(out, KIND, {"plan": asdict(p), "seed": seed, "targets": dirs}, SCHEMA, TABLE,
                                targets={d: t.as_dict() for d, t in descriptions.items()},
                                notes={"target_names": dict(zip(dirs, targets)), "missing": missing, "where": where,
                                       "settings": {s.key: s.as_dict() for s in chosen}})
    for d in dirs:
        remove_stale(d)
        realdb.remove_stale(d)
    done = ds.done(_key, _ok)
    by_key = {s.key: s for s in chosen}
    todo = []
    for cell in plan(p, dirs, seed):
        s = by_key[cell["setting"]]
        if s.db in missing:
            continue
        sides = ["db", "prediction"] if cell["first"] == "db" else ["prediction", "db"]
        for side in sides:
            if (cell["round"], cell["target"], s.key, cell["rate"], side) not in done:
                todo.append((cell, s, side))
    summary = runner.Summary(out=ds.path, planned=len(todo) + len(done), skipped=len(done), missing=missing)

    def run_one(item, _) -> dict:
        cell, s, side = item
        t = descriptions[cell["target"]]
        row = RealTrial(round=cell["round"], warmup=cell["warmup"], position=cell["position"],
                        first=cell["first"], target=cell["target"], target_label=table_label(t), db=s.db,
                        setting=s.name, side=side, strategy=s.predict,
                        clients=s.clients if side == "db" else s.predict_writers,
                        payload_bytes=realdb.PAYLOAD_BYTES if side == "db" else s.predict_payload_bytes,
                        rate=cell["rate"])
        try:
            row.device_quiet_flushes_per_sec = realdb.quiet_flushes_per_sec(t.block_device)
            got = (measure_db if side == "db" else measure_prediction)(
                s, cell["target"], p.duration_s, t.block_device, rate=cell["rate"],
                seed=zlib.crc32(f"{seed}/{cell['round']}/{s.key}/{cell['rate']}".encode()))
            for f in fields(RealTrial):
                if f.name in got:
                    setattr(row, f.name, got[f.name])
        except (OSError, ValueError, realdb.DatabaseError, realdb.DatabaseMissing) as e:
            row.status, row.error = "error", f"{type(e).__name__}: {str(e)[:600]}"
        return asdict(row)

    def postfix(item) -> str:
        cell, s, side = item
        return (f"round {cell['round']}: {s.key if side == 'db' else s.predict}"
                + (f" at {cell['rate']:,.0f}/s" if cell["rate"] else "") + f" on {Path(cell['target']).name or cell['target']}")
    return runner.fill(ds, summary, todo[:limit] if limit is not None else todo, run_one,
                       label=f"{p.name} real databases", unit="trial", progress=progress, ok=_ok, postfix=postfix)


def load(path: str | os.PathLike, include_warmup: bool = False):
    """A real-database dataset as (trials DataFrame, meta): the trials that count (warm-up left out)."""
    df, meta = dataset.load(path, KIND, SCHEMA)
    if not include_warmup:
        df = df[~df["warmup"]]
    df = df[df["status"] == "ok"].reset_index(drop=True)
    df["key"] = df["db"] + "/" + df["setting"]
    df["rate"] = df["rate"].fillna(0.0) if "rate" in df.columns else 0.0  # datasets before open loops: closed
    return df, meta


# -- power cuts ------------------------------------------------------------------------------------

def run_real_crash(out, p: RealPlan, seed: int = 0, target: str = "lab:powercut", lab_dir=None,
                   progress: bool = True, cuts: int | None = None) -> runner.Summary:
    """Run (or resume) power cuts under each of the plan's ``cut_settings`` on the lab's power-cut
    filesystem (which must be up) into the dataset ``out``."""
    n = cuts or p.cuts
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 100_000:
        raise ValueError(f"cuts must be an integer in 1..100,000, got {n!r}")
    chosen = _settings(p.cut_settings)
    # --cuts sets every setting's number; the plan's own gives the settings that may lose fewer
    per = {c.key: n if cuts else p.cuts_for(c) for c in chosen}
    power = PowerCut(target, lab_dir)
    mount = power.mount
    missing = realdb.availability()
    ds = dataset.open_or_resume(out, CRASH_KIND, {"plan": asdict(p), "seed": seed, "cuts": n, "cuts_per_setting": per,
                                                  "cut_window_ms": {c.key: list(realdb.cut_window_ms(c))
                                                                    for c in chosen}},
                                CRASH_SCHEMA, CRASH_TABLE, targets={target: describe(mount).as_dict()},
                                notes={"missing": missing, "settings": {s.key: s.as_dict() for s in chosen}})
    realdb.remove_stale(mount)
    done = ds.done(lambda r: (r["db"], r["setting"], int(r["cut"])), lambda r: r["error"] == "")
    todo = [(s, k) for s in chosen for k in range(per[s.key])
            if s.db not in missing and (s.db, s.name, k) not in done]
    summary = runner.Summary(out=ds.path, planned=len(todo) + len(done), skipped=len(done), missing=missing)

    def run_one(item, session: realdb.CutSession) -> dict:
        s, k = item
        try:
            res = session.cut(k, seed)
        except (OSError, realdb.DatabaseError, realdb.DatabaseMissing, CutError) as e:
            session.close()
            res = realdb.CutResult(db=s.db, setting=s.name, cut=k, seed=seed,
                                   cut_after_ms=realdb.cut_moment_ms(seed, s, k), acked=0, recovered=None,
                                   lost_acked=None, oldest_lost_age_ms=None, newest_ack_age_ms=None,
                                   opened=False, open_error="", promise_ms=s.promise_ms, target=target,
                                   error=f"{type(e).__name__}: {str(e)[:600]}")
        return asdict(res)

    def lost(item, row, summary) -> None:
        s, k = item
        if durable_lost(row, s.acks_durable):
            summary.lost_by_durable.append(f"cut {k} of {s.key}: {row['lost_acked']} acknowledged commits lost")
    # one database per setting, kept across its cuts
    return runner.fill(ds, summary, todo, run_one, label="power cuts under real databases", unit="cut",
                       progress=progress, ok=runner.error_empty, postfix=lambda item: item[0].key, after=lost,
                       session=(lambda item: item[0].key, lambda items: realdb.CutSession(items[0][0], power)))


def load_crash(path: str | os.PathLike):
    df, meta = dataset.load(path, CRASH_KIND, CRASH_SCHEMA)
    df["key"] = df["db"] + "/" + df["setting"]
    return df, meta


# -- one setting beside its prediction, and power cuts with the lab brought up ----------------------

def side_by_side(s: realdb.Setting, directory: str, duration_s: float, block_device: str | None,
                 rate: float = 0.0, seed: int = 0) -> dict:
    """One trial of the setting and one of its prediction on ``directory`` (the database first), and the
    ratio database / prediction of their commits a second (None when the prediction committed nothing):
    what ``realdb --db`` shows, as a dict ready for JSON.  One trial a side: ``run_real_study`` repeats
    them in rounds, for intervals."""
    d = measure_db(s, directory, duration_s, block_device, rate=rate, seed=seed)
    p = measure_prediction(s, directory, duration_s, block_device, rate=rate, seed=seed)
    return {"setting": s.key, "clients": s.clients, "db": d, "prediction": {"strategy": s.predict, **p},
            "ratio": d["commits_per_sec"] / p["commits_per_sec"] if p["commits_per_sec"] else None}


def run_real_crash_in_lab(out, p: RealPlan, seed: int = 0, progress: bool = True,
                          cuts: int | None = None) -> runner.Summary:
    """``run_real_crash`` on a storage lab of its own: lab:powercut is brought up for the cuts and torn
    down after (``lab.Lab.for_run``); a ``lab.LabError`` saying why when it cannot come up here."""
    from .lab import Lab, LabError
    with Lab.for_run(targets=["powercut"]) as up:
        if "lab:powercut" not in up.available():
            raise LabError(f"lab:powercut cannot come up here: {up.skipped().get('lab:powercut')}")
        return run_real_crash(out, p, seed=seed, lab_dir=up.lab_dir, progress=progress, cuts=cuts)
