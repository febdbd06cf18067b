"""The study's sweep: a grid of configurations on several targets, repeated in randomized
rounds, every finished trial appended durably to ``trials.csv``; resumable.

A dataset is a directory::

    data/NAME/meta.json    where and how it was measured (host, kernel, CPU, versions, git
                           commit, the targets' descriptions, the profile, the seed)
    data/NAME/trials.csv   one row per finished trial, appended and fsynced before the next

The plan (which trial runs in which round, in which order) is a pure function of the
profile, the targets and the seed, so a re-run of the same study skips the trials that
are already in ``trials.csv`` and runs only the rest.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .log import fsync_dir, remove_stale
from .strategies import parse
from .targets import Target, describe
from .trial import TrialResult, run_trial

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
#: Bump when trials.csv changes meaning; resuming across versions is refused.
FORMAT = 1


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
        interval = parse(config.strategy).interval_ms or 0
        return max(self.min_duration_s, self.min_intervals * interval / 1000)


PROFILES = {
    "quick": Profile("quick", trials=3, warmup_rounds=1, min_duration_s=0.15, min_intervals=5,
                     batch_ms=(0, 10, 50, 100), group=((0, 4),)),
    "standard": Profile("standard", trials=5, warmup_rounds=1, min_duration_s=0.4, min_intervals=5,
                        batch_ms=tuple(range(0, 101, 5)),
                        group=tuple((n, w) for n in (0, 10, 50) for w in (1, 4, 16))),
    "full": Profile("full", trials=10, warmup_rounds=1, min_duration_s=1.0, min_intervals=10,
                    batch_ms=tuple(range(0, 101, 2)),
                    group=tuple((n, w) for n in (0, 1, 5, 10, 50) for w in (1, 2, 4, 8, 16)),
                    prealloc_modes=("zero-fill", "fallocate")),
}

#: Columns of trials.csv: the plan's, then every field of TrialResult.
PLAN_COLUMNS = ["round", "warmup", "position", "target", "target_label", "config", "config_label",
                "duration_rule_s", "status", "error"]
COLUMNS = PLAN_COLUMNS + [f for f in TrialResult.field_names() if f not in ("warnings",)] + ["warnings"]


def default_targets() -> list[str]:
    """The filesystem that holds data/ and /dev/shm as the volatile reference."""
    DATA.mkdir(parents=True, exist_ok=True)
    out = [str(DATA)]
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        out.append("/dev/shm")
    return out


def target_label(t: Target) -> str:
    """A short name for tables and plots: the lab name or filesystem and device, and the verdict."""
    if getattr(t, "lab_target", None):
        base = t.lab_target + (" (EMULATED)" if getattr(t, "emulated", False) else "")
    else:
        base = f"{t.fstype} on {t.block_device or t.source}"
    return f"{base}, {t.durability}"


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


# -- where it was measured --------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def machine_fingerprint() -> dict:
    """What identifies this machine and boot: resuming is allowed only on the same one."""
    return {"hostname": socket.gethostname(), "machine_id": _read("/etc/machine-id"),
            "boot_id": _read("/proc/sys/kernel/random/boot_id")}


def _git_commit() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _versions() -> dict:
    from importlib import metadata
    out = {"fsyncstudy": __version__, "python": platform.python_version()}
    for pkg in ("pandas", "numpy", "scipy", "matplotlib", "seaborn", "tqdm", "mfusepy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def environment() -> dict:
    cpu = None
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    return {
        "host": socket.gethostname(), "kernel": platform.release(), "os": platform.platform(),
        "cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "versions": _versions(), "git": _git_commit(),
        "dirty_expire_centisecs": _read("/proc/sys/vm/dirty_expire_centisecs"),
        "dirty_writeback_centisecs": _read("/proc/sys/vm/dirty_writeback_centisecs"),
        "fingerprint": machine_fingerprint(),
    }


# -- durable files ----------------------------------------------------------------------------------

def write_json_durably(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _csv_line(values: list) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


class TrialLog:
    """trials.csv, append-only: each row goes out in one write() and is fsynced before the next trial.

    One write() per row means an interrupt leaves either the whole row or none of it; a
    power cut can at worst leave a torn last line, which ``read_rows`` drops.
    """

    def __init__(self, path: Path, columns: list[str] = COLUMNS):
        self.path, self.columns = path, columns
        new = not path.exists() or path.stat().st_size == 0
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if new:
            self._append(_csv_line(columns))
            fsync_dir(path.parent)
        else:
            self._repair_tail()

    def _repair_tail(self) -> None:
        # a torn last line (power cut mid-row) would glue onto the next row: cut it off first
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            os.truncate(self.path, data.rfind(b"\n") + 1)
            os.fsync(self.fd)

    def _append(self, line: str) -> None:
        data = line.encode()
        n = os.write(self.fd, data)
        if n != len(data):
            raise OSError(28, f"short write to {self.path}: {n} of {len(data)} bytes")
        os.fsync(self.fd)

    def append(self, row: dict) -> None:
        self._append(_csv_line([_cell(row.get(c)) for c in self.columns]))

    def close(self) -> None:
        os.close(self.fd)


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, list):
        return "; ".join(map(str, v))
    return v


def read_rows(path: Path) -> list[dict]:
    """The complete rows of an append-only CSV such as trials.csv (a torn last line is dropped)."""
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text)))
    # a row with more fields than the header (None key) or fewer (None values) is not a whole row;
    # rows keep the file's own columns, so a dataset written by an older version still reads
    return [r for r in rows if None not in r and None not in r.values()]


# -- the sweep --------------------------------------------------------------------------------------

class _NoBar:
    """Stands in for the progress bar when there is none."""

    def set_postfix_str(self, s: str) -> None: ...
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


@contextmanager
def appending(log: TrialLog, summary, total: int, desc: str, unit: str, progress: bool):
    """The loop that fills a durable table, as the sweep and the crash experiment run it.

    Yields the progress bar (one that does nothing without ``progress``).  Ctrl-C ends the
    loop and sets ``summary.interrupted``; whatever happens the table and the bar are closed
    and ``summary.elapsed_s`` is set.
    """
    if progress and total:
        from tqdm.auto import tqdm
        tqdm.monitor_interval = 0  # no monitor thread: the crash experiment forks
        bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
    else:
        bar = _NoBar()
    start = time.monotonic()
    try:
        yield bar
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        log.close()
        bar.close()
        summary.elapsed_s = time.monotonic() - start


@dataclass
class SweepSummary:
    out: Path
    planned: int
    skipped: int
    ran: int
    failed: int
    interrupted: bool = False
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def resolve_targets(targets: list[str] | None) -> list[str]:
    """Directories for target names: paths as given, ``lab:NAME`` through the storage lab."""
    out = []
    for t in targets or default_targets():
        if t.startswith("lab:"):
            from .lab import resolve_target  # the lab is optional; imported only when asked for
            out.append(str(resolve_target(t)))
        else:
            p = Path(t).expanduser()
            if not p.is_dir():
                raise FileNotFoundError(f"target {t} is not a directory")
            out.append(str(p.resolve()))
    return out


def _check_resume(meta_path: Path, meta: dict) -> None:
    old = json.loads(meta_path.read_text())
    problems = []
    if old.get("format") != FORMAT:
        problems.append(f"format {old.get('format')} (this version writes {FORMAT})")
    for key in ("profile", "seed", "targets"):
        if old.get(key) != json.loads(json.dumps(meta[key])):  # compare as stored (tuples become lists)
            problems.append(f"a different {key}")
    trials = meta_path.parent / "trials.csv"
    if trials.exists():
        with open(trials) as f:
            header = f.readline().rstrip("\n").split(",")
        if header != COLUMNS:
            problems.append("other columns (written by another version of fsyncstudy)")
    if old.get("environment", {}).get("fingerprint") != meta["environment"]["fingerprint"]:
        problems.append("another machine or boot (hostname, machine-id or boot id differ)")
    if problems:
        raise ValueError(f"{meta_path.parent} holds a study with {', '.join(problems)}; "
                         "resuming would mix measurements: choose another --out")


def run_sweep(out: str | os.PathLike, profile: str | Profile = "quick", targets: list[str] | None = None,
              seed: int = 0, progress: bool = True, limit: int | None = None,
              skipped: dict[str, str] | None = None) -> SweepSummary:
    """Run (or resume) a study into directory ``out``; returns what was done.

    ``limit`` stops after that many new trials (for tests and dry runs); ``skipped`` names
    targets that were wanted but could not be measured, with the reason (kept in meta.json).
    """
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = targets or default_targets()
    dirs = resolve_targets(names)
    descriptions = {d: describe(d) for d in dirs}
    stale = [n for d in dirs for n in remove_stale(d)]
    meta = {
        "format": FORMAT,
        "profile": asdict(prof),
        "seed": seed,
        "targets": dirs,
        "target_descriptions": {d: t.as_dict() for d, t in descriptions.items()},
        "trial_rule": f"each trial runs at least {prof.min_duration_s} s and at least {prof.min_intervals} "
                      "batch/group intervals, whichever is longer",
        "environment": environment(),
        "target_names": dict(zip(dirs, names)),
        "skipped_targets": skipped or {},
    }
    meta_path = out / "meta.json"
    if meta_path.exists():
        _check_resume(meta_path, meta)
        meta["created_at"] = json.loads(meta_path.read_text()).get("created_at")
    else:
        meta["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json_durably(meta_path, meta)
    trials_path = out / "trials.csv"
    done = set()
    if trials_path.exists():
        done = {(int(r["round"]), r["target"], r["config"]) for r in read_rows(trials_path)}
    todo = [p for p in plan(prof, dirs, seed) if p.ident not in done]
    summary = SweepSummary(out=out, planned=len(todo) + len(done), skipped=len(done), ran=0, failed=0)
    if stale:
        summary.notes.append(f"removed {len(stale)} trial logs left behind by a killed run")
    for d, t in descriptions.items():
        if t.durability == "volatile":
            summary.notes.append(f"{d} is {t.fstype}: {t.reason} (kept as the volatile reference)")
    log = TrialLog(trials_path)
    with appending(log, summary, len(todo), f"{prof.name} study", "trial", progress) as bar:
        for p in todo:
            if limit is not None and summary.ran >= limit:
                break
            bar.set_postfix_str(f"round {p.round}: {p.config.label} on {Path(p.target).name or p.target}")
            row = _run_planned(p, prof, descriptions[p.target])
            log.append(row)
            summary.ran += 1
            summary.failed += row["status"] != "ok"
            bar.update(1)
    meta_now = json.loads(meta_path.read_text())
    meta_now.setdefault("runs", []).append({
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "ran": summary.ran,
        "failed": summary.failed, "interrupted": summary.interrupted, "elapsed_s": round(summary.elapsed_s, 1),
        "git": meta["environment"]["git"]})
    write_json_durably(meta_path, meta_now)
    if summary.interrupted:
        raise KeyboardInterrupt(f"sweep interrupted after {summary.ran} new trials; {trials_path} keeps every "
                                "finished one and the same command resumes")
    return summary


def _run_planned(p: Planned, prof: Profile, target: Target) -> dict:
    dur = prof.duration_s(p.config)
    row = {"round": p.round, "warmup": p.warmup, "position": p.position, "target": p.target,
           "target_label": target_label(target), "config": p.config.key, "config_label": p.config.label,
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

def load(dataset: str | os.PathLike, include_warmup: bool = False):
    """A dataset as (trials DataFrame, meta dict); warm-up rounds and failed trials left out by default."""
    import pandas as pd

    d = Path(dataset)
    meta = json.loads((d / "meta.json").read_text())
    rows = read_rows(d / "trials.csv")
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)  # columns an older version did not write are NaN
    for c in df.columns:
        if c in ("target", "target_label", "config", "config_label", "status", "error", "strategy", "kind",
                 "sync_method", "prealloc", "durability", "data_loss_window", "target_path", "target_fstype",
                 "target_durability", "target_reason", "verify_detail", "started_at", "warnings"):
            df[c] = df[c].fillna("").astype(str)
        else:
            df[c] = pd.to_numeric(df[c].replace("", None), errors="coerce")
    df["warmup"] = df["warmup"].astype(bool)
    df["synced"] = df["synced"].astype(bool)
    if not include_warmup:
        df = df[~df["warmup"]]
    df = df[df["status"] == "ok"].reset_index(drop=True)
    return df, meta


def study_key(profile: str | Profile) -> str:
    """A short hash of what a dataset's rows mean: the profile's grid, the columns, the format."""
    import hashlib
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    blob = json.dumps([FORMAT, asdict(prof), COLUMNS], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:6]


def machine_tag() -> str:
    """<host>-<boot id prefix>: what default dataset names carry, so a new machine or boot starts anew."""
    fp = machine_fingerprint()
    return f"{fp['hostname']}-{(fp['boot_id'] or 'unknown')[:8]}"


def default_out(profile: str, parent: Path = DATA) -> Path:
    """<parent>/<profile>-<host>-<boot>-<key>: a new machine, boot or version of the study starts a new
    dataset; the same ones resume."""
    return parent / f"{profile}-{machine_tag()}-{study_key(profile)}"
