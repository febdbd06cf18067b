"""The lab: loop-device filesystems and FUSE filesystems brought up together, named
``lab:<name>``, and always torn down again.

``Lab`` is the context manager; ``down(lab_dir)`` cleans whatever a crashed run left
in a lab directory; ``resolve_target`` maps ``lab:<name>`` to a mounted directory.

The lab touches only what it made.  ``lab.json`` (the state file) is written before anything
else, and every path is recorded in it before it is made (write-ahead): directories that did
not exist, the image files, the FUSE backing directories, the pid files.  A path that exists
already is never claimed (an image or backing directory of that name is an error).  Teardown
unmounts, stops and detaches only what is recorded, removes only recorded paths inside the lab
directory, and refuses a directory without a state file.
"""
from __future__ import annotations

import ctypes.util
import importlib.util
import json
import os
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from ..log import raise_terminated
from ..targets import Target, describe, mounts
from .control import (FUSE_FSTYPE, FuseMount, LabError, daemon_alive, is_mounted, stop_daemon, unmount)
from .liar import DEFAULT_WINDOW_MS as LIAR_WINDOW_MS
from .loopfs import LOOP_TARGETS, LoopFS, detach, loop_devices_under

STATE_FILE = "lab.json"
DEFAULT_SIZE_MIB = 512


@dataclass(frozen=True)
class FuseSpec:
    name: str
    what: str
    backing_sync: bool
    sync_delay_ms: float = 0.0
    sync_delay_dist: str = "fixed"
    sync_delay_spread_ms: float = 0.0
    emulated: bool = False
    #: lab:liar: how long an acknowledged sync stays in its volatile cache (None: an honest volume)
    liar_window_ms: float | None = None


FUSE_TARGETS: dict[str, FuseSpec] = {
    "powercut": FuseSpec(
        "powercut", "power-cut FUSE filesystem over a directory on the host disk (Python, slow): "
                    "unsynced data lives in its cache until a cut drops it", backing_sync=True),
    # A 7200 rpm disk turns once in 8.3 ms: a flush waits a seek plus part of a turn.
    "hdd-emulated": FuseSpec(
        "hdd-emulated", "EMULATED 7200 rpm disk: FUSE filesystem adding 4-12 ms (mean 8 ms, uniform) to "
                        "every sync; not a real device", backing_sync=False, sync_delay_ms=8.0,
        sync_delay_dist="uniform", sync_delay_spread_ms=4.0, emulated=True),
    "ssd-emulated": FuseSpec(
        "ssd-emulated", "EMULATED SSD: FUSE filesystem adding 0.1 ms to every sync; not a real device",
        backing_sync=False, sync_delay_ms=0.1, emulated=True),
    # A drive with a volatile write cache that acknowledges a flush before the data is on the media.
    "liar": FuseSpec(
        "liar", "LIAR: FUSE filesystem that acknowledges every sync at once and keeps a synced write only "
                f"{LIAR_WINDOW_MS:g} ms after the sync returned: a cut loses the syncs of the last "
                f"{LIAR_WINDOW_MS:g} ms, as a volatile write cache that ignores flushes would; not a real device",
        backing_sync=False, emulated=True, liar_window_ms=LIAR_WINDOW_MS),
}

#: Targets that come up only when named: a device built to lose acknowledged data is never measured
#: by default (not by `lab up` without --targets, not in the study's sweep).
OPT_IN = ("liar",)
#: Every lab target the study uses, in the order it shows them.
TARGET_NAMES = tuple(n for n in (*LOOP_TARGETS, *FUSE_TARGETS) if n not in OPT_IN)
#: Every lab target there is.
ALL_TARGETS = (*TARGET_NAMES, *OPT_IN)

_ACTIVE: list["Lab"] = []


def default_lab_dir() -> Path:
    """``$FSYNCSTUDY_LAB_DIR``, else /var/tmp/fsyncstudy-lab (on disk: the images must not live in RAM)."""
    return Path(os.environ.get("FSYNCSTUDY_LAB_DIR") or "/var/tmp/fsyncstudy-lab")


#: Per-run lab directories (``Lab.for_run``): ``fsyncstudy-lab-run-<pid>-*`` beside the default one.
RUN_PREFIX = "fsyncstudy-lab-run-"


def _start_time(pid: int) -> str | None:
    """A process's start time (field 22 of /proc/<pid>/stat), to tell it from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner() -> dict:
    try:
        cmd = " ".join(Path("/proc/self/cmdline").read_bytes().decode(errors="replace").split("\0")).strip()
    except OSError:
        cmd = ""
    return {"pid": os.getpid(), "start": _start_time(os.getpid()), "command": cmd[:300]}


def in_use(lab_dir: str | os.PathLike, state: dict | None = None) -> str:
    """Why the lab in ``lab_dir`` is in use, or "" when nothing of it is: a lab brought up by ``lab up``
    that is still up, a lab whose run is still going, or a FUSE daemon alive in a lab that does not say
    who brought it up.  A lab whose run has ended (its owner's pid gone) is not in use, even if its
    daemons outlived it: ``down`` may remove it."""
    d = Path(lab_dir)
    state = load_state(d) if state is None else state
    left = leftovers(d)
    owner = (state or {}).get("owner") or {}
    pid = owner.get("pid")
    if isinstance(pid, int) and pid != os.getpid() and owner.get("start") and _start_time(pid) == owner["start"]:
        return f"the process that brought it up is still running (pid {pid}: {owner.get('command') or '?'})"
    if owner.get("persistent") and (left["mounts"] or left["daemons"]):
        return "it was brought up with `lab up` and is still mounted (it stays up until whoever brought it up takes it down)"
    if not owner and left["daemons"]:
        return f"its FUSE daemons are alive (pids {', '.join(map(str, left['daemons']))})"
    return ""


def _name(target: str) -> str:
    name = target[4:] if target.startswith("lab:") else target
    if name not in ALL_TARGETS:
        raise LabError(f"unknown lab target {target!r}; the lab has {', '.join('lab:' + n for n in ALL_TARGETS)}")
    return name


def _which(tool: str) -> str | None:
    # root's tools live in sbin, which a user's PATH may lack
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/local/sbin:/usr/sbin:/sbin"
    return shutil.which(tool, path=path)


def _can_mount() -> bool:
    """CAP_SYS_ADMIN in the effective set (what mount(2) and LOOP_CTL need)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 21 & 1)
    except (OSError, ValueError):
        pass
    return True


def requirement(target: str) -> str | None:
    """Why ``target`` cannot be built on this machine, or None if nothing is missing.

    Checks what can be checked without building anything: root, loop devices, /dev/fuse,
    the tools and libraries.  A target can still fail when it is built (say, a kernel
    without xfs); ``Lab.skipped()`` then has the error.
    """
    name = _name(target)
    if os.geteuid() != 0:
        return f"needs root to attach loop devices and mount filesystems (running as uid {os.geteuid()})"
    if not _can_mount():
        return "running as root without CAP_SYS_ADMIN (a container?): mounting is not allowed here"
    if name in LOOP_TARGETS:
        spec = LOOP_TARGETS[name]
        if not os.path.exists("/dev/loop-control"):
            return "no /dev/loop-control: this kernel or container offers no loop devices"
        for tool, pkg in (("losetup", "mount"), ("mount", "mount"), ("umount", "mount"),
                          (spec.mkfs[0], spec.package)):
            if not _which(tool):
                return f"{tool} not found: install the Debian package {pkg}"
        return None
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse: load the fuse module (modprobe fuse) or give the container the device"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable"
    if not ctypes.util.find_library("fuse3"):
        return "libfuse3 not found: install the Debian packages fuse3 and libfuse3-3"
    if importlib.util.find_spec("mfusepy") is None:
        return "the Python package mfusepy is missing: pip install 'fsyncstudy[lab]'"
    if not _which("umount"):
        return "umount not found: install the Debian package mount"
    return None


def requirements(targets=TARGET_NAMES) -> dict[str, str | None]:
    """``requirement`` for several targets: {"lab:<name>": reason or None}."""
    return {f"lab:{_name(t)}": requirement(t) for t in targets}


def leftovers(lab_dir: str | os.PathLike) -> dict[str, list]:
    """What of a lab is still on the machine: mounts, loop devices, daemons."""
    d = Path(lab_dir).resolve()
    mnt = str(d / "mnt") + "/"
    return {"mounts": sorted({m.mount_point for m in mounts() if m.mount_point.startswith(mnt)}),
            "loop_devices": [dev for dev, _ in loop_devices_under(d / "images")],
            "daemons": _live_daemons(sorted((d / "run").glob("*.pid")))}


def _live_daemons(pid_files) -> list[int]:
    """The pids in these pid files that are running lab FUSE daemons."""
    pids = []
    for pf in pid_files:
        try:
            pid = int(Path(pf).read_text().strip())
        except (OSError, ValueError):
            continue
        if daemon_alive(pid):
            pids.append(pid)
    return pids


def _made(d: Path, state: dict) -> list[tuple[Path, str]]:
    """What the state file says the lab made, as (path, what): "dir" (removed if empty), "tree" (a FUSE
    backing directory, removed with its contents), "file".  Only paths inside the lab directory count.
    A state file of an older version lists its targets only: their paths are what it made."""
    made = state.get("made")
    if not isinstance(made, list):
        made = []
        for name, t in (state.get("targets") or {}).items():
            if t.get("kind") == "fuse":
                made += [{"path": t["backing"], "what": "tree"}, {"path": t["mountpoint"], "what": "dir"},
                         {"path": str(d / "run" / f"{name}.pid"), "what": "file"}]
            else:
                made += [{"path": t["image"], "what": "file"}, {"path": t["mountpoint"], "what": "dir"}]
    out = []
    for entry in made:
        try:
            path, what = Path(entry["path"]), entry["what"]
        except (KeyError, TypeError):
            continue
        real = Path(os.path.realpath(path))
        if what in ("dir", "tree", "file") and str(real).startswith(str(d) + "/"):
            out.append((real, what))
    return out


def _still_there(made: list[tuple[Path, str]]) -> dict[str, list]:
    """Of what the lab made: the mounts, the running daemons (by pid file), the loop devices (by image)."""
    images = {str(p) for p, what in made if what == "file" and p.suffix == ".img"}
    pids = _live_daemons(p for p, what in made if what == "file" and p.suffix == ".pid")
    loops = sorted({dev for p in {Path(i).parent for i in images} for dev, backing in loop_devices_under(p)
                    if backing in images})
    return {"mounts": sorted(str(p) for p, what in made if what in ("dir", "tree") and is_mounted(p)),
            "loop_devices": loops, "daemons": pids}


def down(lab_dir: str | os.PathLike | None = None, force: bool = False) -> dict[str, list]:
    """Tear down the lab in ``lab_dir``, also what a crashed run left behind: only what its state
    file says it made.

    Unmounts (lazily if busy), stops the FUSE daemons, detaches the loop devices, and deletes the
    images, backing directories, pid files and the directories the lab created (daemon logs stay,
    for a post-mortem).  A directory without the lab's state file is refused and left as it is.
    Returns what it found; raises LabError if something could not be removed (after trying
    everything else).  A lab whose run is still going (``in_use``, not one brought up by ``lab up``,
    which is what ``lab down`` is for) is refused unless ``force``.
    """
    d = Path(lab_dir or default_lab_dir()).resolve()
    state = load_state(d)
    if state is None:
        raise LabError(f"{d} holds no lab: it has no readable {STATE_FILE}, so nothing in it was made by the lab, "
                       "and nothing was touched")
    busy = in_use(d, state)
    if busy and not force and not (state.get("owner") or {}).get("persistent"):
        raise LabError(f"the lab in {d} is in use: {busy}; nothing was touched (it comes down when its run ends)")
    made = _made(d, state)
    found = _still_there(made)
    errors = []
    with _deferred_sigint():
        for mp in sorted(found["mounts"], key=len, reverse=True):
            try:
                unmount(mp)
            except LabError as e:
                errors.append(str(e))
        for pid in found["daemons"]:
            stop_daemon(pid)
        for dev in found["loop_devices"]:
            detach(dev)
        for path, what in reversed(made):  # the deepest were made last
            if is_mounted(path):
                errors.append(f"{path} is still mounted: left in place")
            elif what == "file":
                path.unlink(missing_ok=True)
            elif what == "tree":
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    path.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    pass  # not empty: it holds something the lab did not make (or the logs we keep)
        left = _still_there(made)
        if any(left.values()):
            errors.append(f"still there: {left}")
        else:
            (d / STATE_FILE).unlink(missing_ok=True)
    if errors:
        raise LabError(f"lab down in {d}: " + "; ".join(errors))
    return found


class _deferred_sigint:
    """Ctrl-C during teardown would leak what is not yet torn down: hold it until the end."""

    def __enter__(self):
        self.pending = False
        self.old = None
        if threading.current_thread() is threading.main_thread():
            try:
                self.old = signal.signal(signal.SIGINT, self._hold)
            except ValueError:
                self.old = None
        return self

    def _hold(self, signum, frame):
        self.pending = True

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            if self.pending and exc[0] is None:
                raise KeyboardInterrupt
        return False


class Lab:
    """Lab filesystems for the duration of a ``with`` block (or between ``up()`` and ``down()``).

    ``targets``: names from ``TARGET_NAMES`` (with or without ``lab:``); a target this
    machine cannot build is skipped with the reason (``skipped()``), the others come up.
    Teardown always happens: normal exit, exception, Ctrl-C, SIGTERM.
    """

    def __init__(self, lab_dir: str | os.PathLike | None = None, targets=TARGET_NAMES,
                 size_mib: int = DEFAULT_SIZE_MIB, loop_direct_io: bool = True, seed: int | None = None,
                 persistent: bool = False):
        self.lab_dir = Path(lab_dir or default_lab_dir()).resolve()
        #: brought up by ``lab up`` to stay up after this process (``lab down`` takes it down)
        self.persistent = persistent
        self._own_dir = False
        self.names = [_name(t) for t in targets]
        self.size_mib, self.loop_direct_io, self.seed = size_mib, loop_direct_io, seed
        self._up: dict[str, LoopFS | FuseMount] = {}
        self._skipped: dict[str, str] = {}
        self._made: list[dict] = []
        self._old_sigterm = None

    @classmethod
    def for_run(cls, targets=TARGET_NAMES, parent: str | os.PathLike | None = None, **kw) -> "Lab":
        """A lab in a directory of its own for one run (``<parent>/fsyncstudy-lab-run-<pid>-*``; parent:
        the default lab directory's, /var/tmp), removed when the lab comes down: two runs, or a run and
        a lab someone brought up with ``lab up``, never share one.  Labs of earlier runs whose process
        is gone are taken down first."""
        import tempfile
        base = Path(parent or default_lab_dir().parent)
        base.mkdir(parents=True, exist_ok=True)
        for old in sorted(base.glob(RUN_PREFIX + "*")):
            pid = old.name[len(RUN_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists() and old.is_dir():
                try:
                    if load_state(old) is not None:
                        down(old)
                    if not any(leftovers(old).values()):
                        shutil.rmtree(old, ignore_errors=True)
                except (LabError, OSError):
                    pass   # it stays; `lab status --dir` shows it
        d = tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-", dir=base)
        os.chmod(d, 0o755)   # as a directory made with mkdir: servers running as their own users reach the mounts
        lab = cls(d, targets=targets, **kw)
        lab._own_dir = True
        return lab

    # -- lifecycle -------------------------------------------------------------------

    def up(self) -> "Lab":
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        left = leftovers(self.lab_dir)
        state = load_state(self.lab_dir)
        if any(left.values()) or state is not None:
            busy = in_use(self.lab_dir, state)
            if busy:
                raise LabError(f"a lab is up in {self.lab_dir} and in use: {busy}. Choose another lab directory "
                               "(--dir, or FSYNCSTUDY_LAB_DIR)")
            raise LabError(f"a run that has ended left a lab in {self.lab_dir} ({left}), and nothing of it is in use: "
                           f"remove it with `python -m fsyncstudy lab down --dir {self.lab_dir}`, or choose another "
                           "lab directory")
        if describe(self.lab_dir).durability == "volatile":
            raise LabError(f"{self.lab_dir} is in RAM ({describe(self.lab_dir).fstype}): lab images and backing "
                           "directories must be on disk; set FSYNCSTUDY_LAB_DIR or pass lab_dir")
        _ACTIVE.append(self)
        try:
            self._save()  # first: from here on, lab down finds everything this lab makes
            for name in self.names:
                reason = requirement(name)
                if reason:
                    self._skipped[name] = reason
                    continue
                try:
                    thing = self._make(name)
                except LabError as e:
                    self._skipped[name] = f"could not be built: {e}"
                    continue
                try:
                    thing.create() if isinstance(thing, LoopFS) else thing.start()
                except (LabError, OSError) as e:
                    self._skipped[name] = f"could not be built: {e}"
                    continue
                self._up[name] = thing
                self._save()
            self._save()
        except BaseException:
            self.down()
            raise
        return self

    def _record(self, path: Path, what: str) -> None:
        self._made.append({"path": str(path), "what": what})
        self._save()

    def _dir(self, path: Path) -> None:
        """A directory the lab needs; recorded (and so removed at teardown) only if the lab makes it."""
        if path.is_dir():
            return
        self._record(path, "dir")
        path.mkdir()

    def _fresh(self, path: Path, what: str) -> None:
        """A path the lab will make (an image, a backing directory, a pid file): it must not exist yet."""
        if path.exists() or path.is_symlink():
            raise LabError(f"{path} exists already and the lab did not make it: move it away, or choose "
                           "another lab directory")
        self._record(path, what)

    def _make(self, name: str):
        d = self.lab_dir
        if name in LOOP_TARGETS:
            thing = LoopFS(LOOP_TARGETS[name], d, self.size_mib, self.loop_direct_io)
            for sub in (d / "images", d / "mnt", thing.mountpoint):
                self._dir(sub)
            self._fresh(thing.image, "file")
            return thing
        for sub in (d / "backing", d / "mnt", d / "mnt" / name, d / "logs", d / "run"):
            self._dir(sub)
        self._fresh(d / "backing" / name, "tree")
        self._fresh(d / "run" / f"{name}.pid", "file")
        spec = FUSE_TARGETS[name]
        label = {"target": f"lab:{name}", "label": f"lab:{name}: {spec.what}", "emulated": spec.emulated,
                 "reason": (f"lab FUSE filesystem over {self.lab_dir / 'backing' / name}: "
                            + ("a sync writes the file's cached data through and fsyncs the backing file"
                               if spec.backing_sync else
                               "a sync writes the file's cached data to the backing file without fsync "
                               "and waits the emulated delay, so it is durable only within the emulation"))}
        return FuseMount(name, self.lab_dir / "backing" / name, self.lab_dir / "mnt" / name,
                         self.lab_dir / "logs" / f"{name}.log", self.lab_dir / "run" / f"{name}.pid", label,
                         backing_sync=spec.backing_sync, sync_delay_ms=spec.sync_delay_ms,
                         sync_delay_dist=spec.sync_delay_dist, sync_delay_spread_ms=spec.sync_delay_spread_ms,
                         seed=self.seed, liar_window_ms=spec.liar_window_ms)

    def _save(self) -> None:
        state = {"lab_dir": str(self.lab_dir), "owner": {**_owner(), "persistent": self.persistent},
                 "made": list(self._made), "targets": {}, "skipped": dict(self._skipped)}
        for name, thing in self._up.items():
            if isinstance(thing, LoopFS):
                state["targets"][name] = thing.state()
            else:
                state["targets"][name] = {"kind": "fuse", "mountpoint": str(thing.mountpoint),
                                          "backing": str(thing.backing), "pid": thing.pid,
                                          "label": thing.label}
        tmp = self.lab_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.lab_dir / STATE_FILE)

    def down(self) -> None:
        """Tear down what this lab built, then anything else left in its directory."""
        errors = []
        with _deferred_sigint():
            for name in reversed(list(self._up)):
                thing = self._up.pop(name)
                try:
                    thing.destroy() if isinstance(thing, LoopFS) else thing.stop()
                except (LabError, OSError) as e:
                    errors.append(f"lab:{name}: {e}")
            try:
                if load_state(self.lab_dir) is not None:  # nothing was made before the state file
                    down(self.lab_dir)
            except LabError as e:
                errors.append(str(e))
            if self in _ACTIVE:
                _ACTIVE.remove(self)
            if self._own_dir and not errors and not any(leftovers(self.lab_dir).values()) and \
                    not any(m.mount_point.startswith(str(self.lab_dir) + "/") for m in mounts()):
                shutil.rmtree(self.lab_dir, ignore_errors=True)   # the run's own directory (daemon logs too)
        if errors:
            raise LabError("; ".join(errors))

    def __enter__(self) -> "Lab":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            # SIGTERM's default kills without unwinding: make it unwind so __exit__ tears down
            self._old_sigterm = signal.signal(signal.SIGTERM, raise_terminated)
        try:
            return self.up()
        except BaseException:
            self._restore_sigterm()
            raise

    def __exit__(self, *exc) -> None:
        try:
            self.down()
        finally:
            self._restore_sigterm()

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    # -- what is up --------------------------------------------------------------------

    def available(self) -> list[str]:
        """The targets that are up, as ``lab:<name>``, in the order asked for."""
        return [f"lab:{n}" for n in self.names if n in self._up]

    def skipped(self) -> dict[str, str]:
        """{"lab:<name>": why it is not up}."""
        return {f"lab:{n}": r for n, r in self._skipped.items()}

    def _thing(self, target: str):
        name = _name(target)
        if name in self._up:
            return self._up[name]
        if name in self._skipped:
            raise LabError(f"lab:{name} was skipped: {self._skipped[name]}")
        raise LabError(f"lab:{name} is not part of this lab (it has {', '.join(self.available()) or 'nothing'})")

    def directory(self, target: str) -> Path:
        """Where to write on ``target`` (its mount point)."""
        return Path(self._thing(target).mountpoint)

    def backing(self, target: str) -> Path:
        """A FUSE target's backing directory: after a cut, what the power loss kept."""
        thing = self._thing(target)
        if not isinstance(thing, FuseMount):
            raise LabError(f"{target} is a loop filesystem; only the FUSE targets have a backing directory")
        return thing.backing

    def describe(self, target: str) -> Target:
        return describe(self.directory(target))

    def descriptions(self) -> dict[str, Target]:
        return {t: self.describe(t) for t in self.available()}


def resolve_target(target: str | os.PathLike, lab_dir: str | os.PathLike | None = None) -> Path:
    """A directory for ``target``: ``lab:<name>`` becomes its mount point, anything else a Path.

    Looks in the labs of this process first (only the one in ``lab_dir`` if given), then
    in ``lab_dir`` (default ``default_lab_dir()``), where ``python -m fsyncstudy lab up``
    keeps its state.
    """
    s = os.fspath(target)
    if not s.startswith("lab:"):
        return Path(s)
    name = _name(s)
    wanted = Path(lab_dir).resolve() if lab_dir else None
    for lab in reversed(_ACTIVE):
        if name in lab._up and wanted in (None, lab.lab_dir):
            return lab.directory(name)
    d = Path(lab_dir or default_lab_dir())
    state = load_state(d)
    if state and name in state["targets"]:
        entry = state["targets"][name]
        mp = entry["mountpoint"]
        if is_mounted(mp) and (entry["kind"] != "fuse" or any(m.mount_point == os.path.realpath(mp)
                                                               and m.fstype == FUSE_FSTYPE for m in mounts())):
            return Path(mp)
        busy = in_use(d, state)
        raise LabError(f"lab:{name} is listed in {d / STATE_FILE} but not mounted"
                       + (f"; the lab is in use ({busy}): ask its user, or use another lab directory" if busy else
                          f" (a run that has ended left it): run `python -m fsyncstudy lab down --dir {d}` "
                          "and `lab up` again"))
    if state and name in state.get("skipped", {}):
        raise LabError(f"lab:{name} was skipped when the lab in {d} went up: {state['skipped'][name]}")
    raise LabError(f"lab:{name} is not up: run `python -m fsyncstudy lab up` (as root), or use "
                   "`with fsyncstudy.lab.Lab(...) as lab:` in this process")


def backing_of(target: str, lab_dir: str | os.PathLike | None = None) -> Path:
    """A FUSE target's backing directory (what survives a cut), found as ``resolve_target`` finds its mount."""
    name = _name(target)
    wanted = Path(lab_dir).resolve() if lab_dir else None
    for lab in reversed(_ACTIVE):
        if name in lab._up and wanted in (None, lab.lab_dir):
            return lab.backing(name)
    resolve_target(target, lab_dir)  # raises the right LabError when it is not up
    entry = load_state(lab_dir)["targets"][name]
    if entry.get("kind") != "fuse":
        raise LabError(f"lab:{name} is a loop filesystem; only the FUSE targets have a backing directory")
    return Path(entry["backing"])


def load_state(lab_dir: str | os.PathLike | None = None) -> dict | None:
    """The state ``lab up`` left in a lab directory, or None."""
    try:
        return json.loads((Path(lab_dir or default_lab_dir()) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
