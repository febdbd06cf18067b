"""Datasets: every kind of run (the sweep's trials, the crash experiment's cuts, the peers
comparison's rounds) is a directory of the same shape::

    NAME/meta.json    what was planned, where it was measured, how to read the table
    NAME/<table>.csv  one row per finished unit (a trial, a cut, a round), appended and fsynced
                      before the next one starts
    NAME/.lock        held with flock(2) by the one process writing the dataset

``meta.json`` has one shape for every kind::

    format       FORMAT; resuming across formats is refused
    kind         "sweep", "crash", "peers", ...
    created_at   UTC, ISO 8601
    environment  host, kernel, CPU, versions, git commit, the machine's fingerprint, and
                 ``targets``: a description of every target, by the name the plan gives it
    plan         what the rows mean: a resume must plan exactly the same
    table        the CSV's file name
    columns      [[name, type], ...]: the CSV's header and how to type each column
                 (str, int, float, bool, list) when loading
    notes        what is worth knowing but does not define the rows (skipped targets, ...)
    runs         one entry per run that wrote rows: when, how many, failed, interrupted

``open_or_resume`` is the one way a run writes a dataset: it takes the lock, creates the
dataset or checks that the existing one was planned the same way on the same machine and
boot, and hands back the rows already there.  A unit whose row says it failed is run again
on resume; its failed row stays in the table as history and is left out of every statistic
(``ok`` decides which rows count).

Standard library only, except ``load``, which returns a pandas DataFrame.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import io
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

from . import __version__
from .log import fsync_dir
from .places import REPO

#: Bump when the layout of meta.json or the meaning of a table changes.
FORMAT = 2
META_FILE = "meta.json"
LOCK_FILE = ".lock"
#: Column types a table may declare.
TYPES = ("str", "int", "float", "bool", "list")


class DatasetError(ValueError):
    """A dataset that cannot be read or resumed; the message names the file and what to do."""


class DatasetBusy(DatasetError):
    """Another process holds the dataset's lock."""


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


def machine_tag() -> str:
    """<host>-<boot id prefix>: what default dataset names carry, so a new machine or boot starts anew."""
    fp = machine_fingerprint()
    return f"{fp['hostname']}-{(fp['boot_id'] or 'unknown')[:8]}"


def engine_sources() -> list[Path]:
    """The source files whose code decides what a measurement means: every module of the measuring
    layers (``fsyncstudy.MEASURING_LAYERS``, read from the layer table), packages with all their files."""
    from . import MEASURING_LAYERS, layers
    here = Path(__file__).resolve().parent
    out = set()
    for module, layer in layers().items():
        if layer not in MEASURING_LAYERS:
            continue
        rel = Path(*module.split(".")[1:])
        if (here / rel).is_dir():
            out.update((here / rel).rglob("*.py"))
        else:
            out.add(here / rel.with_suffix(".py"))
    return sorted(out)


def engine_digest() -> str:
    """sha256 (first 12 hex digits) of the measuring modules' source: a change to any of them changes
    the digest, and with it the default dataset names, so a changed engine starts a new dataset."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for path in engine_sources():
        h.update(str(path.relative_to(here)).encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()[:12]


def _sysctls() -> dict:
    names = ("dirty_expire_centisecs", "dirty_writeback_centisecs", "dirty_ratio", "dirty_background_ratio",
             "dirty_bytes", "dirty_background_bytes")
    return {f"vm.{n}": _read(f"/proc/sys/vm/{n}") for n in names}


def _git_commit() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _versions() -> dict:
    from importlib import metadata
    out = {"fsyncstudy": __version__, "python": platform.python_version()}
    for pkg in ("pandas", "numpy", "scipy", "matplotlib", "seaborn", "tqdm", "mfusepy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def environment(targets: dict | None = None) -> dict:
    """This machine, kernel, Python and package versions, git commit; ``targets``: {name: description}."""
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
        "fingerprint": machine_fingerprint(), "targets": targets or {},
        "engine_sha256": engine_digest(), "sysctl": _sysctls(), "switch_interval_s": sys.getswitchinterval(),
    }


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- durable files ----------------------------------------------------------------------------------

def write_json_durably(path: Path, obj) -> None:
    """Write JSON to a temporary file, fsync it, rename it over ``path``, fsync the directory."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def columns_of(cls, types: dict[str, str] | None = None) -> list[list[str]]:
    """[[name, type], ...] for a dataclass's fields, the type read off its annotation."""
    out = []
    for f in fields(cls):
        ann = str(f.type)
        kind = next((t for t in ("bool", "int", "float", "list", "str") if t in ann), "str")
        out.append([f.name, (types or {}).get(f.name, kind)])
    return out


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (list, tuple)):
        return "; ".join(map(str, v))
    return v


def csv_line(values: list) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(v) for v in values])
    return buf.getvalue()


def complete_prefix(data: bytes, ncols: int | None = None) -> int:
    """How many bytes at the start of an append-only CSV are whole records.

    A record ends at a newline outside quotes (a quoted field may hold newlines).  A power cut
    can leave the last record torn anywhere, even just after a newline inside a quoted field,
    so the tail after the last whole record is not data, whatever it holds; with ``ncols``, a
    last record with another number of fields is cut off too.
    """
    end, quotes, starts = 0, 0, [0]
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        quotes += data.count(b'"', pos, nl)
        pos = nl + 1
        if quotes % 2 == 0:  # csv doubles a quote inside a quoted field, so the parity says "outside"
            end = pos
            starts.append(pos)
    if ncols is not None and len(starts) > 1:
        last = data[starts[-2]:end].decode("utf-8", errors="replace")
        record = next(csv.reader(io.StringIO(last)), [])
        if len(record) != ncols:
            end = starts[-2]
    return end


def read_rows(path: Path) -> list[dict]:
    """The whole rows of an append-only CSV (a torn or partial last record is left out)."""
    data = Path(path).read_bytes()
    text = data[:complete_prefix(data)].decode("utf-8", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text)))
    # a row with more fields than the header (None key) or fewer (None values) is not a whole row
    return [r for r in rows if None not in r and None not in r.values()]


class Table:
    """An append-only CSV: each row goes out in one write() and is fsynced before the next.

    One write() per row means an interrupt leaves either the whole row or none of it; a
    power cut can at worst leave a torn last record, which is cut off when the table is
    opened again (and which ``read_rows`` never returns).
    """

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = Path(path), list(columns)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if new:
                self._append(csv_line(self.columns))
                fsync_dir(self.path.parent)
            else:
                self._check_and_repair()
        except BaseException:
            os.close(self.fd)
            raise

    def _check_and_repair(self) -> None:
        data = self.path.read_bytes()
        header = next(csv.reader(io.StringIO(data.split(b"\n", 1)[0].decode("utf-8", errors="replace"))), [])
        if header != self.columns:
            raise DatasetError(f"{self.path} has other columns than this version of fsyncstudy writes "
                               "(written by another version?); resuming would mix them: choose another --out")
        keep = max(complete_prefix(data, len(self.columns)), len(data.split(b"\n", 1)[0]) + 1)
        if keep < len(data):
            os.truncate(self.path, keep)
            os.fsync(self.fd)

    def _append(self, line: str) -> None:
        data = line.encode()
        n = os.write(self.fd, data)
        if n != len(data):
            raise OSError(errno.ENOSPC, f"short write to {self.path}: {n} of {len(data)} bytes")
        os.fsync(self.fd)

    def append(self, row: dict) -> None:
        self._append(csv_line([row.get(c) for c in self.columns]))

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


# -- the lock ---------------------------------------------------------------------------------------

def _command() -> str:
    raw = _read("/proc/self/cmdline")
    return " ".join(raw.split("\0")).strip() if raw else " ".join(sys.argv)


class Lock:
    """An exclusive flock on ``directory/.lock`` for as long as it is held.

    The file names its holder (pid and command line); a second process is refused at once,
    with the holder's name.  The kernel releases the lock when the holder dies, however it dies.
    ``create`` makes the directory (and its parents) if need be; ``undo`` releases the lock and removes
    the lock file and directories that taking it made, so that a refused run leaves them as they were.
    """

    def __init__(self, directory: Path, create: bool = False):
        directory = Path(directory)
        self.path = directory / LOCK_FILE
        self.fd, self.made_file, self.made_dirs = -1, False, []
        try:
            if create:
                d = directory
                while not os.path.lexists(d):
                    self.made_dirs.append(d)   # deepest first
                    d = d.parent
                directory.mkdir(parents=True, exist_ok=True)
            self._take()
        except BaseException:
            self.undo()
            raise
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} ({_command()[:1000]})\n".encode(), 0)

    def _take(self) -> None:
        while True:
            try:
                fd, made = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), True
            except FileExistsError:
                try:
                    fd, made = os.open(self.path, os.O_RDWR | os.O_CLOEXEC), False
                except FileNotFoundError:
                    continue  # removed by a refused run since: make it again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "an unknown process"
                os.close(fd)
                raise DatasetBusy(f"{self.path.parent} is in use by {holder}; wait for it to finish, or choose "
                                  "another --out") from None
            except BaseException:
                os.close(fd)
                raise
            # a refused run unlinks the lock file it made while holding it: one flocked after that holds a
            # file no longer at the path, which guards nothing; take the one at the path
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if current:
                self.fd, self.made_file = fd, made
                return
            os.close(fd)

    def release(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor releases the flock

    def undo(self) -> None:
        """Release, and remove the lock file if taking the lock made it (unlinked while still held, so
        that no other process holds it then) and the directories ``create`` made (if still empty)."""
        if self.fd >= 0 and self.made_file:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self.release()
        for d in self.made_dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                continue  # mkdir stopped above it
            except OSError:
                break


# -- meta.json --------------------------------------------------------------------------------------

def _meta_problem(meta) -> str | None:
    if not isinstance(meta, dict):
        return f"it holds a JSON {type(meta).__name__}, not an object"
    fmt = meta.get("format")
    if fmt != FORMAT:
        return (f"it is format {fmt!r}; this version of fsyncstudy reads and writes format {FORMAT}"
                + (" (written by an older version: `python -m fsyncstudy upgrade DIR` converts it)"
                   if fmt == 1 else ""))
    for key, kind in (("kind", str), ("created_at", str), ("environment", dict), ("plan", dict), ("table", str),
                      ("columns", list), ("notes", dict), ("runs", list)):
        if not isinstance(meta.get(key), kind):
            return f"its {key!r} is {'missing' if key not in meta else repr(meta[key])[:60]}, not a {kind.__name__}"
    if not isinstance(meta["environment"].get("fingerprint"), dict):
        return "its environment has no machine fingerprint"
    for col in meta["columns"]:
        if not (isinstance(col, list) and len(col) == 2 and isinstance(col[0], str) and col[1] in TYPES):
            return f"its columns hold {col!r}, not a [name, type] pair with a type among {', '.join(TYPES)}"
    if not meta["table"] or "/" in meta["table"]:
        return f"its table {meta['table']!r} is not a file name"
    return None


def read_meta(directory: str | os.PathLike) -> dict:
    """A dataset's meta.json, checked; a DatasetError naming the file if it is missing or malformed."""
    path = Path(directory) / META_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist: {Path(directory)} holds no fsyncstudy dataset") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} cannot be read: {e}") from None
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise DatasetError(f"{path} is not valid JSON ({e}): repair it from a backup, or choose another "
                           "dataset") from None
    why = _meta_problem(meta)
    if why:
        raise DatasetError(f"{path} is not a meta.json this version can read: {why}")
    return meta


def _as_stored(obj):
    return json.loads(json.dumps(obj, default=str))  # tuples become lists, as in the file


# -- a dataset being written ------------------------------------------------------------------------

@dataclass
class Dataset:
    """A dataset open for writing: the lock is held until ``close`` (or the end of a ``with``)."""

    path: Path
    meta: dict
    rows: list[dict]                       # the rows already there when it was opened
    table: Table
    lock: Lock
    new_rows: int = 0
    failed_rows: int = 0
    started: float = field(default_factory=time.monotonic)

    def done(self, key, ok) -> set:
        """Keys of the units that have a row that counts (``ok(row)``): a resume skips these."""
        return {key(r) for r in self.rows if ok(r)}

    def append(self, row: dict, ok: bool = True) -> None:
        self.table.append(row)
        self.new_rows += 1
        self.failed_rows += not ok

    def close(self, interrupted: bool = False) -> None:
        """Record this run in meta.json, close the table, release the lock."""
        if self.lock.fd < 0:
            return
        try:
            self.table.close()
            self.meta["runs"].append({"finished_at": now_utc(), "rows": self.new_rows, "failed": self.failed_rows,
                                      "interrupted": interrupted,
                                      "elapsed_s": round(time.monotonic() - self.started, 1),
                                      "git": _git_commit()})
            write_json_durably(self.path / META_FILE, self.meta)
        finally:
            self.lock.release()

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(interrupted=exc_type is not None and issubclass(exc_type, KeyboardInterrupt))


def open_or_resume(out: str | os.PathLike, kind: str, plan: dict, columns: list[list[str]], table: str,
                   targets: dict | None = None, notes: dict | None = None) -> Dataset:
    """Create the dataset ``out`` of ``kind``, or resume it if it was planned the same way here.

    Refused (DatasetError, one line naming the file) when another process holds it, when
    rows exist without a readable meta.json, when meta.json is malformed, or when the
    existing dataset has another format, kind, plan, table, columns, or was measured on
    another machine or boot.  ``targets`` ({name: description}) goes into the environment of
    a new dataset; ``notes`` are updated on every run.
    """
    out = Path(out)
    lock = Lock(out, create=True)  # a refusal below undoes it: the directory is left as it was
    try:
        names = [c[0] for c in columns]
        meta_path, table_path = out / META_FILE, out / table
        if meta_path.exists():
            meta = read_meta(out)
            problems = []
            if meta["kind"] != kind:
                problems.append(f"another kind ({meta['kind']}, not {kind})")
            if meta["table"] != table:
                problems.append(f"another table ({meta['table']})")
            old_plan, new_plan = meta["plan"], _as_stored(plan)
            for key in sorted(set(old_plan) | set(new_plan)):
                if old_plan.get(key) != new_plan.get(key):
                    problems.append(f"a different {key}")
            if meta["columns"] != _as_stored(columns):
                problems.append("other columns (written by another version of fsyncstudy)")
            old_digest = meta["environment"].get("engine_sha256")
            if old_digest and old_digest != engine_digest():
                problems.append(f"another engine (its measuring code's digest {old_digest}, now {engine_digest()})")
            if meta["environment"]["fingerprint"] != machine_fingerprint():
                problems.append("another machine or boot (hostname, machine-id or boot id differ)")
            if problems:
                raise DatasetError(f"{out} holds a {meta['kind']} dataset with {', '.join(problems)}; "
                                   "resuming would mix measurements: choose another --out")
            meta["notes"] = {**meta["notes"], **(notes or {})}
        else:
            for stray in (table_path, *out.glob("*.csv")):
                if stray.exists() and stray.stat().st_size > 0:
                    raise DatasetError(f"{stray} holds rows but {meta_path} is missing: nothing says what they "
                                       "measured, so they cannot be resumed; move them away or choose another --out")
            meta = {"format": FORMAT, "kind": kind, "created_at": now_utc(), "environment": environment(targets),
                    "plan": _as_stored(plan), "table": table, "columns": _as_stored(columns),
                    "notes": notes or {}, "runs": []}
            write_json_durably(meta_path, meta)
        tab = Table(table_path, names)
        rows = read_rows(table_path)
        return Dataset(path=out, meta=meta, rows=rows, table=tab, lock=lock)
    except BaseException:
        lock.undo()
        raise


class _NoBar:
    """Stands in for the progress bar when there is none."""

    def set_postfix_str(self, s: str) -> None: ...
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


class _LineBar(_NoBar):
    """Progress for a log that is not a terminal: one line at each tenth done, at most every 30 s."""

    def __init__(self, total: int, desc: str, unit: str):
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.start = self.last = time.monotonic()
        self.next_tenth = 1

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.done * 10 >= self.next_tenth * self.total and (now - self.last >= 30 or self.done == self.total):
            self.next_tenth = self.done * 10 // self.total + 1
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            left = (self.total - self.done) / rate if rate else 0
            print(f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}s ({100 * self.done / self.total:.0f}%), "
                  f"{now - self.start:.0f} s so far, about {left:.0f} s to go", file=sys.stderr, flush=True)


@contextmanager
def filling(ds: Dataset, summary, total: int, desc: str, unit: str, progress: bool):
    """The loop that fills a dataset, as the sweep and the crash experiment run it.

    Yields a progress bar on stderr (one that does nothing without ``progress``).  Ctrl-C
    ends the loop and sets ``summary.interrupted``; whatever happens the bar is closed, the
    run is recorded and the lock released (``Dataset.close``), and ``summary.elapsed_s`` is set.
    """
    if progress and total and sys.stderr.isatty():
        from tqdm.auto import tqdm
        tqdm.monitor_interval = 0  # no monitor thread: the crash experiment forks
        bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
    elif progress and total:
        bar = _LineBar(total, desc, unit)  # a log file gets lines, not a bar's frames
    else:
        bar = _NoBar()
    start = time.monotonic()
    try:
        yield bar
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        ds.close(interrupted=summary.interrupted)
        summary.elapsed_s = time.monotonic() - start


# -- reading a dataset ------------------------------------------------------------------------------

def load(directory: str | os.PathLike, kind: str | None = None):
    """A dataset as (DataFrame of every whole row, typed by its columns, meta dict).

    Rows of failed units are included (they are history); the kind's own loader leaves them
    out of statistics.  ``kind``, if given, must match.
    """
    import pandas as pd

    d = Path(directory)
    meta = read_meta(d)
    if kind is not None and meta["kind"] != kind:
        raise DatasetError(f"{d} holds a {meta['kind']} dataset, not a {kind} dataset")
    path = d / meta["table"]
    if not path.exists():
        raise DatasetError(f"{path} does not exist: the dataset in {d} has no rows yet")
    names = [c for c, _ in meta["columns"]]
    df = pd.DataFrame(read_rows(path)).reindex(columns=names)
    for name, typ in meta["columns"]:
        col = df[name]
        if typ in ("str", "list"):
            df[name] = col.fillna("").astype(str)
        elif typ == "bool":
            mapped = col.map({"1": True, "True": True, "true": True, "0": False, "False": False, "false": False})
            df[name] = mapped.astype(bool) if mapped.notna().all() else mapped
        else:
            df[name] = pd.to_numeric(col.replace("", None), errors="coerce")
    return df, meta
