"""Running and reading the peer tools, fio and pg_test_fsync: find them, run them, parse what they print.

fio's JSON gives ``jobs[0].write`` (writes, runtime, iops) and ``jobs[0].sync.lat_ns.percentile``
(fio >= 3.4 times syncs; we ask for 3.5, as etcd's guides do).  pg_test_fsync prints one
``ops/sec  usecs/op`` line per test under five section headers; we run it in the C locale.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from dataclasses import dataclass

#: How to get each peer on Debian/Ubuntu.
INSTALL = {
    "fio": "apt-get install fio",
    "pg_test_fsync": "apt-get install postgresql (Debian's postgresql-<version> package ships "
                     "/usr/lib/postgresql/<version>/bin/pg_test_fsync)",
}
#: Where Debian's PostgreSQL packages put pg_test_fsync (not on PATH).
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin/pg_test_fsync"
#: fio added sync latency statistics in 3.4 (commit b2b3eefe); guides ask for at least 3.5.
FIO_MIN_VERSION = (3, 5)
#: Our preallocation policy and the fio options that lay the file out the same way.
PREALLOC_TO_FIO = {
    # both start from an empty file that grows with every write: each data sync also persists the size
    "append": ["--fallocate=none"],
    # fallocate(fd, 0, 0, size): fio's default on Linux, and what posix_fallocate does on ext4/xfs
    "fallocate": ["--fallocate=native"],
    # the file is written in full and synced before timing; fio then drops it from the page cache,
    # so read it back in (pre_read) as ours stays cached: no read-before-write on partial pages
    "zero-fill": ["--overwrite=1", "--invalidate=0", "--pre_read=1"],
}
#: fio's default percentile list, used for fio-shaped output.
FIO_PERCENTILES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9, 99.95, 99.99)


class PeerMissing(RuntimeError):
    """A peer tool is not installed (or too old); the message says how to install it."""

    def __init__(self, peer: str, why: str):
        super().__init__(f"{peer} {why}; install it with: {INSTALL[peer]}")
        self.peer = peer


class PeerFailed(RuntimeError):
    """A peer ran but failed, or printed something we cannot read."""


# -- finding the peers ---------------------------------------------------------------------------

def find_fio() -> str:
    """Path of an fio with sync latency statistics, or PeerMissing."""
    path = shutil.which("fio")
    if not path:
        raise PeerMissing("fio", "is not installed (not on PATH)")
    version = fio_version(path)
    m = re.search(r"(\d+)\.(\d+)", version)
    if m and (int(m.group(1)), int(m.group(2))) < FIO_MIN_VERSION:
        raise PeerMissing("fio", f"is {version}, older than 3.5: it reports no sync latencies")
    return path


def fio_version(path: str = "fio") -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or out.stderr.strip()


def find_pg_test_fsync() -> str:
    """Path of pg_test_fsync: PATH first, then Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    path = shutil.which("pg_test_fsync")
    if path:
        return path

    def version(p: str) -> tuple:
        v = p.split(os.sep)[-3]
        return tuple(int(x) for x in re.findall(r"\d+", v)) or (0,)
    found = sorted((p for p in glob.glob(PG_BIN_GLOB) if os.access(p, os.X_OK)), key=version)
    if not found:
        raise PeerMissing("pg_test_fsync", "is not installed (not on PATH nor in /usr/lib/postgresql/*/bin)")
    return found[-1]


def peer_versions(paths: dict[str, str]) -> dict[str, str]:
    """Each found peer's version line, from the binary that will run ({name: path} as ``find_peers``
    returns it); '' where it cannot say."""
    out = {}
    for name, path in paths.items():
        try:
            v = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
            out[name] = (v.stdout.strip() or v.stderr.strip()).splitlines()[0] if (v.stdout or v.stderr).strip() else ""
        except (OSError, subprocess.SubprocessError):
            out[name] = ""
    return out


def find_peers(peers) -> dict[str, str]:
    """Paths of the requested peers; PeerMissing before anything runs if one is absent."""
    finders = {"fio": find_fio, "pg_test_fsync": find_pg_test_fsync}
    unknown = [p for p in peers if p not in finders]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(unknown)}: use fio and/or pg_test_fsync")
    return {p: finders[p]() for p in peers}


# -- fio -----------------------------------------------------------------------------------------

@dataclass
class FioRun:
    """What one fio job measured, from its JSON output."""

    command: list[str]
    version: str
    block_bytes: int
    writes: int
    runtime_ms: int
    #: writes per second over fio's runtime, which includes the syncs: fio's ``write.iops``
    #: counts writes only, so with --fdatasync=1 it is the same "op" as ours (write + sync)
    ops_per_sec: float
    syncs: int
    sync_lat_us: dict[str, float]          # fio's percentile keys ("99.000000") -> microseconds
    sync_lat_us_mean: float | None
    write_clat_us: dict[str, float]
    write_clat_us_mean: float | None

    def sync_p(self, p: float) -> float | None:
        return self.sync_lat_us.get(f"{p:.6f}")

    def write_p(self, p: float) -> float | None:
        return self.write_clat_us.get(f"{p:.6f}")


#: fio's options for each way it makes a write durable: an fdatasync after each write, or every write
#: synchronous because the file is opened O_DSYNC (fio 3.33's pvsync2 has no per-write RWF_DSYNC:
#: its flags are hipri, uncached and nowait), the latter optionally with O_DIRECT.
FIO_SYNC_OPTIONS = {
    "fdatasync": ["--fdatasync=1"],
    "dsync": ["--sync=dsync"],
    "direct_dsync": ["--direct=1", "--sync=dsync"],
}
#: With O_DIRECT, fio's file laid out by writing (``--overwrite=1``, then fsynced: fio's create_fsync);
#: the page-cache options of ``zero-fill`` (``--invalidate=0 --pre_read=1``) mean nothing to direct writes.
DIRECT_ZERO_FILL = ["--overwrite=1"]


def fio_command(fio: str, path: str, block_bytes: int, writes: int, sync: bool | str, prealloc: str) -> list[str]:
    """fio's command line for ``writes`` sequential writes of ``block_bytes``: ``sync`` False (none),
    True or "fdatasync" (an fdatasync after each), "dsync" (O_DSYNC) or "direct_dsync" (O_DIRECT|O_DSYNC)."""
    if prealloc not in PREALLOC_TO_FIO:
        raise ValueError(f"unknown preallocation {prealloc!r}: use one of {', '.join(PREALLOC_TO_FIO)}")
    sync = "fdatasync" if sync is True else sync
    if sync and sync not in FIO_SYNC_OPTIONS:
        raise ValueError(f"unknown fio sync {sync!r}: use one of {', '.join(FIO_SYNC_OPTIONS)}")
    cmd = [fio, "--name=fsyncstudy", f"--filename={path}", "--rw=write", "--ioengine=sync",
           f"--bs={block_bytes}", f"--size={block_bytes * writes}"]
    if sync:
        cmd += FIO_SYNC_OPTIONS[sync]
    layout = DIRECT_ZERO_FILL if sync == "direct_dsync" and prealloc == "zero-fill" else PREALLOC_TO_FIO[prealloc]
    return cmd + layout + ["--unlink=1", "--output-format=json"]


def parse_fio_json(text: str, command: list[str] | None = None) -> FioRun:
    """Read fio's JSON output (anything printed before the JSON object is skipped)."""
    start = text.find("{")
    if start < 0:
        raise PeerFailed(f"fio printed no JSON: {text[:300]!r}")
    try:
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        raise PeerFailed(f"fio's output is not JSON ({e}): {text[start:start + 300]!r}") from None
    try:
        job = data["jobs"][0]
    except (KeyError, IndexError, TypeError):
        raise PeerFailed("fio's JSON has no jobs") from None
    if job.get("error"):
        raise PeerFailed(f"fio job failed with error {job['error']}")
    w = job["write"]
    bs = int(job.get("job options", {}).get("bs", 0) or (w["io_bytes"] // max(1, w["total_ios"])))
    sync = job.get("sync") or {}
    slat = sync.get("lat_ns") or {}
    clat = w.get("clat_ns") or {}

    def us(pct: dict | None) -> dict[str, float]:
        return {k: v / 1e3 for k, v in (pct or {}).items()}
    runtime_ms = int(w["runtime"])
    writes = int(w["total_ios"])
    return FioRun(command=list(command or []), version=str(data.get("fio version", "")), block_bytes=bs,
                  writes=writes, runtime_ms=runtime_ms,
                  ops_per_sec=writes / (runtime_ms / 1e3) if runtime_ms else float(w.get("iops", 0.0)),
                  syncs=int(slat.get("N", 0) or 0), sync_lat_us=us(slat.get("percentile")),
                  sync_lat_us_mean=slat["mean"] / 1e3 if slat.get("N") else None,
                  write_clat_us=us(clat.get("percentile")),
                  write_clat_us_mean=clat["mean"] / 1e3 if clat.get("N") else None)


def run_fio(directory, block_bytes: int, writes: int, sync: bool | str = True, prealloc: str = "fallocate",
            fio: str | None = None, timeout_s: float = 600) -> FioRun:
    """Run one fio job in ``directory`` and parse it (``sync`` as ``fio_command``'s).  Its file is
    removed afterwards."""
    fio = fio or find_fio()
    path = os.path.join(os.fspath(directory), f".fsyncstudy-fio-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    cmd = fio_command(fio, path, block_bytes, writes, sync, prealloc)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    finally:
        Path(path).unlink(missing_ok=True)  # the peer's test file, also after a failure or timeout
    if out.returncode != 0:
        raise PeerFailed(f"fio exited with {out.returncode}: {out.stderr.strip()[:500]}")
    return parse_fio_json(out.stdout, cmd)


# -- pg_test_fsync -------------------------------------------------------------------------------

#: Section headers as pg_test_fsync prints them (LC_ALL=C), in order.
PG_SECTIONS = (
    "Compare file sync methods using one 8kB write:",
    "Compare file sync methods using two 8kB writes:",
    "Compare open_sync with different write sizes:",
    "Test if fsync on non-write file descriptor is honored:",
    "Non-sync'ed 8kB writes:",
)
# anything after "usecs/op" is ignored (fsyncstudy's pgtest appends its interval there)
_PG_OPS = re.compile(r"^\s+(?P<label>\S.*?)\s+(?P<ops>\d+(?:\.\d+)?) ops/sec\s+(?P<us>\d+) usecs/op(?:\s.*)?$")
_PG_NA = re.compile(r"^\s+(?P<label>\S.*?)\s+(?P<na>n/a\*?)\s*$")


@dataclass
class PgTestLine:
    section: int                 # 1..5, in PG_SECTIONS order
    label: str                   # "fdatasync", "1 * 16kB open_sync write", ...
    ops_per_sec: float | None    # None for n/a
    usecs_per_op: float | None
    na: str = ""                 # "n/a" (not on this platform) or "n/a*" (no direct I/O here)


@dataclass
class PgTestRun:
    command: list[str]
    version: str
    secs_per_test: int | None
    direct_io: str               # pg_test_fsync's O_DIRECT line
    lines: list[PgTestLine]

    def get(self, section: int, label: str) -> PgTestLine | None:
        return next((x for x in self.lines if x.section == section and x.label == label), None)


def parse_pg_test_fsync(text: str, command: list[str] | None = None, version: str = "") -> PgTestRun:
    """Read pg_test_fsync's report: every ``ops/sec  usecs/op`` (or n/a) line with its section."""
    section, lines, secs, direct = 0, [], None, ""
    for raw in text.splitlines():
        s = raw.strip()
        if not s:
            continue
        m = re.match(r"^(\d+) seconds? per test$", s)
        if m:
            secs = int(m.group(1))
            continue
        if "direct" in s.lower() and ("supported" in s or "not supported" in s):
            direct = s
            continue
        if s in PG_SECTIONS:
            section = PG_SECTIONS.index(s) + 1
            continue
        if not raw.startswith(" ") or not section:
            continue
        m = _PG_OPS.match(raw)
        if m:
            lines.append(PgTestLine(section, m.group("label").strip(), float(m.group("ops")), float(m.group("us"))))
            continue
        m = _PG_NA.match(raw)
        if m:
            lines.append(PgTestLine(section, m.group("label").strip(), None, None, m.group("na")))
    if not lines:
        raise PeerFailed(f"no 'ops/sec  usecs/op' lines in pg_test_fsync's output: {text[:300]!r}")
    return PgTestRun(command=list(command or []), version=version, secs_per_test=secs, direct_io=direct,
                     lines=lines)


def run_pg_test_fsync(directory, secs_per_test: int = 1, pg_test_fsync: str | None = None) -> PgTestRun:
    """Run pg_test_fsync's whole suite (-s secs) with its file in ``directory``, in the C locale."""
    exe = pg_test_fsync or find_pg_test_fsync()
    if not isinstance(secs_per_test, int) or secs_per_test < 1:
        raise ValueError(f"pg_test_fsync takes whole seconds per test (>= 1), got {secs_per_test!r}")
    path = os.path.join(os.fspath(directory), f".fsyncstudy-pgtest-{os.getpid()}-{uuid.uuid4().hex[:12]}.out")
    cmd = [exe, "-s", str(secs_per_test), "-f", path]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "LANGUAGE": ""}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=20 * secs_per_test + 120)
        ver = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env, timeout=30).stdout.strip()
    finally:
        Path(path).unlink(missing_ok=True)  # the peer's test file, also after a failure or timeout
    if out.returncode != 0:
        raise PeerFailed(f"pg_test_fsync exited with {out.returncode}: {(out.stderr or out.stdout).strip()[:500]}")
    return parse_pg_test_fsync(out.stdout, cmd, ver)
