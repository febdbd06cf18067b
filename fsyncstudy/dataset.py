"""Datasets: every kind of run (the sweep's trials, the crash experiment's cuts, the peers
comparison's rounds) is a directory of the same shape::

    NAME/meta.json    what was planned, where it was measured, how to read the table
    NAME/<table>.csv  one row per finished unit (a trial, a cut, a round), appended and fsynced
                      before the next one starts; its last field, ``row_check``, is a checksum of
                      the others (sha256 over the dataset's ``created_at`` and the row's fields)
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

Every reader goes through ``check`` (``load`` raises on its first problem, ``check`` lists them all):
the files are regular files inside the directory, meta.json is small and shallow enough to parse,
the header is the declared columns, every field parses as its column's type, measured values are
finite and in range, each row's checksum matches its fields, no unit has two rows that count, and a
dataset short of its plan says so (``Checked.short``, carried into meta as ``meta["checked"]``).
What each kind's rows mean (their key, which rows count, how many repeats its plan asked for) is in
``KINDS``.

Standard library only, except ``load``, which returns a pandas DataFrame.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import io
import hashlib
import json
import math
import os
import platform
import re
import socket
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from . import __version__
from .log import fsync_dir
from .places import REPO

#: Bump when the layout of meta.json or the meaning of a table changes (3: each row carries ``row_check``).
FORMAT = 3
META_FILE = "meta.json"
LOCK_FILE = ".lock"
#: Column types a table may declare.
TYPES = ("str", "int", "float", "bool", "list")
#: The table's last column: a checksum of the row's other fields (``row_check``); not in meta's columns.
CHECK_COLUMN = "row_check"
#: meta.json larger or more deeply nested than this is refused before it is parsed.
MAX_META_BYTES, MAX_META_DEPTH = 4 << 20, 32
#: A table larger than this is refused before it is read (the largest measured so far: 1.5 MB).
MAX_TABLE_BYTES = 512 << 20


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


def git_state() -> dict:
    """The checkout's commit and whether its tracked files differ from it (``dirty``); when they do,
    ``diff_sha256``: a digest of the uncommitted diff of the measuring code (``engine_sources``), None
    when that code is as committed, so that a dataset measured from a dirty tree still says whether its
    measuring code was the commit's, and if not, which diff it was."""
    def git(*args, strip=True):
        try:
            out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                 timeout=10).stdout
            return out.strip() if strip else out
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "HEAD") or None
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    out = {"commit": commit, "dirty": dirty}
    if commit and dirty:
        diff = git("diff", "HEAD", "--", *map(str, engine_sources()), strip=False)
        out["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None
    return out


def provenance_text(git: dict | None) -> str:
    """Which code measured (or renders): "git 420ca20122 (clean)", or what differed from the commit."""
    git = git or {}
    head = f"git {str(git.get('commit'))[:10]}"
    if git.get("commit") is None:
        return "no git commit recorded"
    if not git.get("dirty"):
        return f"{head} (clean)"
    if "diff_sha256" not in git:
        return f"{head}, uncommitted changes (not recorded which)"
    if git["diff_sha256"] is None:
        return f"{head}, uncommitted changes outside the measuring code"
    return f"{head}, uncommitted changes to the measuring code (diff sha256 {git['diff_sha256']}): no commit reproduces it"


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
        "cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "versions": _versions(), "git": git_state(),
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
    if isinstance(v, float) and math.isnan(v):
        return ""  # no value (a NaN is pandas' missing value, and a table's is the empty field)
    if isinstance(v, (list, tuple)):
        return "; ".join(map(str, v))
    return v


def csv_line(values: list) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(v) for v in values])
    return buf.getvalue()


def row_check(salt: str, fields_: list[str]) -> str:
    """The checksum a row carries in its last field: sha256 (16 hex digits) over ``salt`` (the dataset's
    ``created_at``) and the row's other fields as they are written, so that an edited, negated or
    transplanted row no longer matches."""
    return hashlib.sha256((salt + "\n" + csv_line(fields_)).encode()).hexdigest()[:16]


def checked_line(salt: str, values: list) -> str:
    """A row as it is appended: its fields, then their checksum."""
    cells = [str(_cell(v)) for v in values]
    return csv_line([*cells, row_check(salt, cells)])


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
        try:
            record = next(csv.reader(io.StringIO(last)), [])
        except csv.Error:   # not a record at all (a stray carriage return, bytes that are no CSV)
            record = []
        if len(record) != ncols:
            end = starts[-2]
    return end


def read_rows(path: Path) -> list[dict]:
    """The whole rows of an append-only CSV (a torn or partial last record is left out), unchecked and
    without their checksum: what tests look at.  Readers of a dataset use ``check`` or ``load``."""
    data = Path(path).read_bytes()
    text = data[:complete_prefix(data)].decode("utf-8", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text)))
    # a row with more fields than the header (None key) or fewer (None values) is not a whole row
    return [{k: v for k, v in r.items() if k != CHECK_COLUMN} for r in rows if None not in r and None not in r.values()]


class Table:
    """An append-only CSV: each row goes out in one write() and is fsynced before the next.

    One write() per row means an interrupt leaves either the whole row or none of it; a
    power cut can at worst leave a torn last record, which is cut off when the table is
    opened again (and which no reader returns).  Each row ends with its checksum
    (``row_check``, salted with ``salt``: the dataset's ``created_at``).
    """

    def __init__(self, path: Path, columns: list[str], salt: str = ""):
        self.path, self.columns, self.salt = Path(path), list(columns), salt
        self.header = [*self.columns, CHECK_COLUMN]
        new = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise DatasetError(f"{self.path} is a symbolic link: a dataset's table must be a file inside "
                                   "its directory") from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(self.fd).st_mode):
                raise DatasetError(f"{self.path} is not a regular file: a dataset's table must be one")
            if new:
                self._append(csv_line(self.header))
                fsync_dir(self.path.parent)
            else:
                self._check_and_repair()
        except BaseException:
            os.close(self.fd)
            raise

    def _check_and_repair(self) -> None:
        data = self.path.read_bytes()
        header = next(csv.reader(io.StringIO(data.split(b"\n", 1)[0].decode("utf-8", errors="replace"))), [])
        if header != self.header:
            raise DatasetError(f"{self.path} has other columns than this version of fsyncstudy writes "
                               "(written by another version?); resuming would mix them: choose another --out")
        keep = max(complete_prefix(data, len(self.header)), len(data.split(b"\n", 1)[0]) + 1)
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
        self._append(checked_line(self.salt, [row.get(c) for c in self.columns]))

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

def _meta_problem(meta, formats=(FORMAT,)) -> str | None:
    if not isinstance(meta, dict):
        return f"it holds a JSON {type(meta).__name__}, not an object"
    fmt = meta.get("format")
    if fmt not in formats:
        return (f"it is format {fmt!r}; this version of fsyncstudy reads and writes format {FORMAT}"
                + (" (written by an older version: `python -m fsyncstudy upgrade DIR` converts it)"
                   if fmt in (1, 2) else ""))
    for key, kind in (("kind", str), ("created_at", str), ("environment", dict), ("plan", dict), ("table", str),
                      ("columns", list), ("notes", dict), ("runs", list)):
        if not isinstance(meta.get(key), kind):
            return f"its {key!r} is {'missing' if key not in meta else repr(meta[key])[:60]}, not a {kind.__name__}"
    if not isinstance(meta["environment"].get("fingerprint"), dict):
        return "its environment has no machine fingerprint"
    for col in meta["columns"]:
        if not (isinstance(col, list) and len(col) == 2 and isinstance(col[0], str) and col[1] in TYPES):
            return f"its columns hold {col!r}, not a [name, type] pair with a type among {', '.join(TYPES)}"
    names = [c[0] for c in meta["columns"]]
    if len(set(names)) != len(names) or CHECK_COLUMN in names:
        return f"its columns repeat a name or declare {CHECK_COLUMN!r} (the checksum is not a column of its own)"
    if not meta["table"] or "/" in meta["table"] or meta["table"] in (".", "..", META_FILE, LOCK_FILE):
        return f"its table {meta['table']!r} is not a file name"
    return None


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _too_deep(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests arrays and objects deeper than ``limit`` (strings left out), found
    without parsing it: json's parser recurses, and a deep enough file exhausts the stack."""
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def _regular_file(path: Path, what: str) -> str | None:
    """Why ``path`` is not a regular file inside its dataset directory (None if it is)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"a symbolic link (to {os.readlink(path)!r}): {what} must be a file inside the dataset directory"
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file: {what} must be one"
    return None


def read_meta(directory: str | os.PathLike, formats=(FORMAT,)) -> dict:
    """A dataset's meta.json, checked; a DatasetError naming the file if it is missing or malformed
    (``formats``: the formats accepted; ``upgrade`` reads format 2 too)."""
    path = Path(directory) / META_FILE
    why = _regular_file(path, "meta.json")
    if why:
        raise DatasetError(f"{path} is {why}")
    try:
        size = path.stat().st_size
        if size > MAX_META_BYTES:
            raise DatasetError(f"{path} is {size:,} bytes, more than a meta.json holds (at most "
                               f"{MAX_META_BYTES:,}): not read")
        text = path.read_text()
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist: {Path(directory)} holds no fsyncstudy dataset") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} cannot be read: {e}") from None
    if _too_deep(text, MAX_META_DEPTH):
        raise DatasetError(f"{path} nests deeper than {MAX_META_DEPTH} levels, which no meta.json does: not parsed")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise DatasetError(f"{path} is not valid JSON ({' '.join(str(e).split())[:200]}): repair it from a backup, "
                           "or choose another dataset") from None
    why = _meta_problem(meta, formats)
    if why:
        raise DatasetError(f"{path} is not a meta.json this version can read: {why}")
    return meta


def _as_stored(obj):
    return json.loads(json.dumps(obj, default=str))  # tuples become lists, as in the file


#: A profile's fields added after datasets were planned with it: left out of a plan while at their default
#: (None, empty, or their default: no write-path cells), so a dataset planned before they existed still resumes
#: under the same profile.
ADDED_FIELDS = ("warmup_duration_s", "write_paths", "device_paths", "paths", "path_rates")


def plan_of(profile) -> dict:
    """A profile (a dataclass) as a dataset's plan records it."""
    from dataclasses import MISSING, asdict
    default = {f.name: f.default for f in fields(profile) if f.default is not MISSING}
    return {k: v for k, v in asdict(profile).items()
            if not (k in ADDED_FIELDS and (v in (None, (), []) or (k in default and v == default[k])))}


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
                                      "git": git_state()})
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
    rows exist without a readable meta.json, when a directory without one holds other files (a
    user's), when meta.json is malformed, or when the
    existing dataset has another format, kind, plan, table, columns, or was measured on
    another machine or boot, or when its rows do not pass ``check`` (a duplicated row is never
    counted as done).  ``targets`` ({name: description}) goes into the environment of
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
            others = sorted(p.name for p in out.iterdir() if p.name not in (LOCK_FILE, table, META_FILE + ".tmp"))
            if others:
                raise DatasetError(f"{out} holds other files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}) "
                                   "and no meta.json: it is not a dataset, and a new one is made only in a new or "
                                   "empty directory; choose another --out")
            meta = {"format": FORMAT, "kind": kind, "created_at": now_utc(), "environment": environment(targets),
                    "plan": _as_stored(plan), "table": table, "columns": _as_stored(columns),
                    "notes": notes or {}, "runs": []}
            write_json_durably(meta_path, meta)
        why = _regular_file(table_path, "the table")
        if why:
            raise DatasetError(f"{table_path} is {why}")
        tab = Table(table_path, names, salt=meta["created_at"])  # cuts off a torn last row
        try:
            got = check(out, kind, schema=columns)
            if got.problems:
                raise got.error()
        except BaseException:
            tab.close()
            raise
        return Dataset(path=out, meta=meta, rows=got.rows, table=tab, lock=lock)
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


# -- what each kind's rows mean --------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """What the dataset layer checks in the rows of one kind of dataset.

    ``key``: the columns that name a unit (a resume runs each once; no unit has two rows that count);
    ``counts``: (column, value) a row must hold to count (None: every row counts), the others are the
    history of failed units; ``replicate``: the key column that numbers repeats of one configuration
    (the rest of the key names the configuration); ``planned(plan, row)``: how many repeats the plan
    asked for in that row's configuration (warm-up rows, ``warmup`` true, are not among them);
    ``positive``: columns that are > 0 in a row that counts; every other number is ≥ 0 unless in
    ``signed``.
    """

    name: str
    key: tuple[str, ...]
    counts: tuple[str, str] | None
    replicate: str
    planned: Callable[[dict, dict], int]
    positive: tuple[str, ...] = ()
    signed: tuple[str, ...] = ()

    def configuration(self, row: dict) -> tuple:
        return tuple(row.get(c, "") for c in self.key if c != self.replicate)

    def counted(self, row: dict) -> bool:
        return self.counts is None or row.get(self.counts[0]) == self.counts[1]


def _crash_planned(plan: dict, row: dict) -> int:
    """The cuts a crash plan asked for in a row's cell: a write path's from ``path_cuts`` ({kind: {strategy:
    {path label: cuts}}}), the plain path's by strategy (a row without the path's columns ran it)."""
    from .trial import row_path_label
    label = row_path_label(row)
    if label:
        return plan["path_cuts"][row["kind"]][row["strategy"]][label]
    return plan.get("cuts_by_strategy", {}).get(row["kind"], {}).get(row["strategy"],
                                                                      plan["cuts_per_strategy"][row["kind"]])


KINDS = {k.name: k for k in (
    Kind("sweep", key=("round", "target", "config"), counts=("status", "ok"), replicate="round",
         planned=lambda plan, row: plan["profile"]["trials"], positive=("ops_per_sec",)),
    # the write path's columns are in the key: a cell is a strategy on a path (a dataset written before
    # them has none, and every row's path is the plain one)
    Kind("crash", key=("kind", "strategy", "sync_method", "write_mode", "bytes_per_sync", "segment_bytes", "recycle",
                       "cut"), counts=("error", ""), replicate="cut", planned=_crash_planned),
    Kind("peers", key=("target", "pair", "round", "side"), counts=None, replicate="round",
         planned=lambda plan, row: plan["rounds"]),
    Kind("load", key=("round", "target", "config", "rate"), counts=("status", "ok"), replicate="round",
         planned=lambda plan, row: plan["profile"]["trials"], positive=("offered_rate",)),
    Kind("realdb", key=("round", "target", "db", "setting", "rate", "side"), counts=("status", "ok"),
         replicate="round", planned=lambda plan, row: plan["plan"]["trials"], positive=("commits_per_sec",)),
    Kind("realdb-crash", key=("db", "setting", "cut"), counts=("error", ""), replicate="cut",
         planned=lambda plan, row: plan["cuts_per_setting"][f"{row['db']}/{row['setting']}"]),
    # an observer's acknowledgements: a row per HELLO and per batch read together; how many pulls a user
    # makes is not planned (the plan has no "pulls": nothing to fall short of)
    Kind("diskcheck", key=("session", "n"), counts=None, replicate="n", planned=lambda plan, row: plan["pulls"]),
)}


# -- checking a dataset -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file, the line (1 = the header) and field if it is in one."""

    file: str
    text: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = "".join([f", line {self.line}" if self.line else "", f", field {self.field!r}" if self.field else ""])
        return f"{self.file}{where}: {self.text}"


@dataclass
class Checked:
    """What ``check`` found: the meta (None if unreadable), the whole rows as text (checksum left out)
    with their line numbers, every problem, and the configurations short of their plan."""

    path: Path
    meta: dict | None = None
    rows: list[dict] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    short: list[dict] = field(default_factory=list)   # {"configuration": {...}, "n": 2, "planned": 5}
    planned: int | None = None                         # repeats planned per configuration, if one number
    torn_tail: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def error(self) -> "DatasetError":
        more = len(self.problems) - 1
        tail = (f" (and {more} more problem{'s' * (more > 1)}: `python -m fsyncstudy check {self.path}` lists them)"
                if more else "")
        return DatasetError(f"{self.problems[0]}{tail}")

    def summary(self) -> dict:
        """What a reader carries with the rows (``meta["checked"]``): rows, configurations short of plan."""
        return {"rows": len(self.rows), "short": self.short, "planned": self.planned}


_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|-?inf|nan")
_BOOLS = {"1": True, "True": True, "true": True, "0": False, "False": False, "false": False}


def _value(text: str, typ: str):
    """A field as its column's type (None: empty); ValueError saying why it is not one."""
    if text == "" or typ in ("str", "list"):
        return None if text == "" and typ not in ("str", "list") else text
    if typ == "int":
        if not _INT.fullmatch(text):
            raise ValueError(f"{text[:40]!r} is not an integer")
        return int(text)
    if typ == "float":
        if not _FLOAT.fullmatch(text):
            raise ValueError(f"{text[:40]!r} is not a number")
        x = float(text)
        if not math.isfinite(x):
            raise ValueError(f"{text!r} is not a finite number")
        return x
    if text not in _BOOLS:
        raise ValueError(f"{text[:40]!r} is not a boolean (0 or 1)")
    return _BOOLS[text]


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def check(directory: str | os.PathLike, kind: str | None = None, *, schema: list | None = None,
          legacy: bool = False) -> Checked:
    """Every problem of the dataset in ``directory`` (of ``kind``, if given), without raising on its
    content: what ``load`` and a resume refuse, and what ``python -m fsyncstudy check`` lists.
    ``schema``: the kind's columns as this version writes them; a column meta.json declares with
    another type is a problem (an older dataset may lack columns, never retype them).  ``legacy``: a
    format-2 dataset (rows without checksums) is read too, as ``upgrade`` does."""
    d = Path(directory)
    got = Checked(path=d)

    def problem(file, text, line=None, field_=None):
        got.problems.append(Problem(str(file), text, line, field_))

    if not d.is_dir():
        problem(d, "it is not a directory" if d.exists() else "it does not exist")
        return got
    try:
        meta = read_meta(d, (2, FORMAT) if legacy else (FORMAT,))
    except DatasetError as e:
        # read_meta's messages open with the file's path and a verb: the problem names the file itself
        problem(d / META_FILE, "it " + str(e).removeprefix(str(d / META_FILE)).strip())
        return got
    got.meta = meta
    if kind is not None and meta["kind"] != kind:
        problem(d / META_FILE, f"it describes a {meta['kind']} dataset, not a {kind} dataset")
        return got
    path = d / meta["table"]
    why = _regular_file(path, "the table")
    if why:
        problem(path, f"it is {why}")
        return got
    try:
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            problem(path, f"is {size:,} bytes, more than this version reads (at most {MAX_TABLE_BYTES:,})")
            return got
        data = path.read_bytes()
    except FileNotFoundError:
        problem(path, "does not exist: the dataset has no rows yet")
        return got
    except OSError as e:
        problem(path, f"cannot be read ({e.strerror})")
        return got
    expected = dict(schema or [])
    retyped = [f"{name} as {typ} (this version: {expected[name]})" for name, typ in meta["columns"]
               if name in expected and expected[name] != typ]
    if retyped:
        problem(d / META_FILE, f"it declares {len(retyped)} column{'s' * (len(retyped) > 1)} with another type than a "
                               f"{meta['kind']} dataset's: {', '.join(retyped[:4])}{', ...' if len(retyped) > 4 else ''}")
        return got
    columns = [c for c, _ in meta["columns"]]
    checksums = meta["format"] >= 3
    header_wanted = [*columns, CHECK_COLUMN] if checksums else columns
    end = complete_prefix(data, len(header_wanted))
    got.torn_tail = end < len(data)
    nul = data.find(b"\0", 0, end)
    if nul >= 0:
        problem(path, "holds NUL bytes, which no table written here does (overwritten or corrupted?)",
                _line_of(data, nul))
        return got
    try:
        text = data[:end].decode("utf-8")
    except UnicodeDecodeError as e:
        problem(path, "is not UTF-8 text (corrupted?)", _line_of(data, e.start))
        return got
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
    except csv.Error as e:
        problem(path, f"its header cannot be read as CSV ({e})", 1)
        return got
    if header != header_wanted:
        missing = [c for c in header_wanted if c not in (header or [])]
        extra = [c for c in (header or []) if c not in header_wanted]
        why = "; ".join(filter(None, [f"missing {', '.join(missing[:5])}" if missing else "",
                                      f"not declared: {', '.join(extra[:5])}" if extra else "",
                                      "" if missing or extra else "the columns are in another order"]))
        problem(path, f"its header is not the columns meta.json declares ({why})", 1)
        return got
    types = dict(meta["columns"])
    spec = KINDS.get(meta["kind"])
    salt = meta.get("created_at", "")
    first_line = 2
    seen: dict[tuple, int] = {}
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problem(path, f"cannot be read as CSV ({e})", first_line)
            break
        line, first_line = first_line, reader.line_num + 1
        if len(record) != len(header_wanted):
            problem(path, f"has {len(record)} fields, not {len(header_wanted)}", line)
            continue
        fields_, check_ = (record[:-1], record[-1]) if checksums else (record, None)
        if checksums and row_check(salt, fields_) != check_:
            problem(path, "its checksum does not match its fields: the row was changed after it was written",
                    line, CHECK_COLUMN)
            continue
        row = dict(zip(columns, fields_))
        bad = False
        for name, raw in row.items():
            try:
                v = _value(raw, types[name])
            except ValueError as e:
                problem(path, str(e), line, name)
                bad = True
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0 \
                    and not (spec and name in spec.signed):
                problem(path, f"{raw} is negative, which this measure never is", line, name)
                bad = True
        if bad:
            continue
        if spec is not None and spec.counted(row):
            for name in spec.positive:
                if name in row and not (row[name] and float(row[name]) > 0):
                    problem(path, f"{row[name] or 'empty'} in a row that counts: it must be above 0", line, name)
                    bad = True
            k = tuple(row.get(c, "") for c in spec.key)
            if k in seen:
                problem(path, f"the unit {', '.join(f'{c} {v}' for c, v in zip(spec.key, k))} has a row that "
                              f"counts already (line {seen[k]}): a unit counts once", line)
                bad = True
            else:
                seen[k] = line
        if not bad:
            got.rows.append(row)
            got.lines.append(line)
    if spec is not None and not got.problems:
        _plan_shortfall(got, spec, meta["plan"])
    return got


def _plan_shortfall(got: Checked, spec: Kind, plan: dict) -> None:
    """Each configuration with fewer rows that count than its plan asked for (warm-ups not counted)."""
    counts: dict[tuple, list] = {}
    for row in got.rows:
        if not spec.counted(row) or _BOOLS.get(row.get("warmup", "0")):
            continue
        c = counts.setdefault(spec.configuration(row), [0, row])
        c[0] += 1
    planned_all = set()
    for conf, (n, row) in counts.items():
        try:
            planned = int(spec.planned(plan, row))
        except (KeyError, TypeError, ValueError):
            continue  # a plan without the number (an older or hand-made one): nothing to compare with
        planned_all.add(planned)
        if n < planned:
            got.short.append({"configuration": dict(zip([c for c in spec.key if c != spec.replicate], conf)),
                              "n": n, "planned": planned})
    got.planned = planned_all.pop() if len(planned_all) == 1 else None


def shortfall_text(checked: dict | None) -> str:
    """One sentence on a dataset short of its plan ("" when it is not): from ``meta["checked"]``."""
    if not checked or not checked.get("short"):
        return ""
    short = checked["short"]
    low = min(short, key=lambda s: s["n"] / s["planned"])
    return (f"{len(short)} configuration{'s' * (len(short) > 1)} of this dataset {'have' if len(short) > 1 else 'has'} "
            f"fewer repeats than planned (as few as n = {low['n']} of {low['planned']} planned)")


def load(directory: str | os.PathLike, kind: str | None = None, schema: list | None = None):
    """A dataset as (DataFrame of every whole row, typed by its columns, meta dict), after ``check``:
    its first problem is raised as a DatasetError.  ``meta["checked"]`` says which configurations are
    short of their plan.

    Rows of failed units are included (they are history); the kind's own loader leaves them
    out of statistics.  ``kind``, if given, must match, and ``schema`` (its columns) agree with meta.json;
    with a ``schema``, the columns a later version added (``added_columns``) that the dataset lacks are
    added with the value its rows measured under, so old and new datasets read alike.
    """
    import pandas as pd

    got = check(directory, kind, schema=schema)
    if got.problems:
        raise got.error()
    meta = got.meta
    names = [c for c, _ in meta["columns"]]
    df = pd.DataFrame(got.rows, columns=names)
    for name, typ in meta["columns"]:
        col = df[name]
        if typ in ("str", "list"):
            df[name] = col.fillna("").astype(str)
        elif typ == "bool":
            mapped = col.map(_BOOLS)
            df[name] = mapped.astype(bool) if mapped.notna().all() else mapped
        else:
            df[name] = pd.to_numeric(col.replace("", None), errors="coerce")
    for name, value in (added_columns(meta["kind"]) if schema else {}).items():
        if name not in df.columns:      # a dataset written before the column: the value it measured under
            df[name] = value
    meta["checked"] = got.summary()
    return df, meta


def added_columns(kind: str) -> dict:
    """Columns a later version added to a kind's rows, with the value every row written before them
    had: for sweep rows, the write path's fields of ``TrialResult`` (``trial.WRITE_PATH_FIELDS``), whose
    defaults are the plain path (per-entry writes, one file, no sync_file_range); for crash and load rows,
    the write path's columns (``trial.PATH_COLUMNS``: fdatasync, per-entry writes, one file).  A dataset's
    meta.json is never rewritten for them: ``check`` accepts a dataset that lacks a column, and ``load``
    adds it."""
    if kind in ("crash", "load"):
        from .trial import PATH_COLUMNS
        return dict(PATH_COLUMNS)
    if kind != "sweep":
        return {}
    from .trial import WRITE_PATH_FIELDS, TrialResult
    return {f.name: (float("nan") if f.default is None else f.default) for f in fields(TrialResult)
            if f.name in WRITE_PATH_FIELDS}


def upgrade_rows(directory: str | os.PathLike) -> dict:
    """Turn a format-2 dataset into format 3: its rows, checked as ``check`` checks them (types, ranges,
    no unit twice), are written again each with its checksum (into a new file, fsynced, renamed over
    the table), and meta.json says so in ``notes["upgraded"]``.  Refused if any row has a problem:
    an upgrade does not bless a corrupt dataset.  Returns the new meta."""
    d = Path(directory)
    got = check(d, legacy=True)
    if got.problems:
        raise got.error()
    meta = got.meta
    if meta["format"] == FORMAT:
        raise DatasetError(f"{d / META_FILE} is format {FORMAT} already: nothing to upgrade")
    lock = Lock(d)
    try:
        path = d / meta["table"]
        tmp = path.with_name(path.name + ".upgrade")
        names = [c for c, _ in meta["columns"]]
        with open(tmp, "w") as f:
            f.write(csv_line([*names, CHECK_COLUMN]))
            for row in got.rows:
                f.write(checked_line(meta["created_at"], [row[c] for c in names]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(d)
        meta["format"] = FORMAT
        meta["notes"] = {**meta["notes"], "upgraded": f"format 2 to {FORMAT} at {now_utc()}: each row's checksum "
                         f"computed from the row as it was then ({len(got.rows)} rows; a torn last row "
                         f"{'dropped' if got.torn_tail else 'none'})"}
        write_json_durably(d / META_FILE, meta)
    finally:
        lock.release()
    return meta
