"""Control the lab's FUSE filesystems from any process, and start and stop their daemons.

``cut``, ``reset``, ``inject``, ``status`` and ``unsynced`` take the mount point (or
any path inside it); the daemon's control socket is found from the mount's source in
/proc/self/mountinfo.  Standard library only.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..targets import mount_of, mounts

FUSE_FSTYPE = "fuse.fsyncstudy"
SOURCE_PREFIX = "fsyncstudy-lab:"
#: How long a daemon may take to mount before we give up on it.
START_TIMEOUT_S = 20.0
#: How long a control request may take (a cut waits for syncs in flight).
REQUEST_TIMEOUT_S = 60.0

_UNCHANGED = object()


class LabError(OSError):
    """The lab cannot do what was asked; the message says what is missing or wrong.

    An OSError, so callers that handle a bad target directory handle this too."""


def _control_mount(path: str | os.PathLike):
    m = mount_of(path)
    if m.fstype != FUSE_FSTYPE or not m.source.startswith(SOURCE_PREFIX):
        raise LabError(f"{path} is not on a lab FUSE filesystem (it is {m.fstype} at {m.mount_point}); "
                       "cut and inject work on lab:powercut, lab:liar, lab:hdd-emulated and lab:ssd-emulated")
    return m


def socket_name(path: str | os.PathLike) -> str:
    """The abstract socket of the daemon serving the lab FUSE mount that holds ``path``."""
    m = _control_mount(path)
    token = m.source.rsplit(":", 1)[1]
    return "\0" + SOURCE_PREFIX + token


def daemon_pid(path: str | os.PathLike) -> int | None:
    """The pid of the FUSE daemon serving the lab mount that holds ``path`` (the peer of its control
    socket, SO_PEERCRED); None when it does not answer."""
    import struct
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(REQUEST_TIMEOUT_S)
            s.connect(socket_name(path))
            pid, _, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            return pid
    except (OSError, LabError, ValueError, IndexError):
        return None


def request(path: str | os.PathLike, cmd: str, timeout_s: float = REQUEST_TIMEOUT_S, **args):
    """Send one control request to the daemon behind ``path``; its result, or LabError."""
    name = socket_name(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(name)
        except OSError as e:
            raise LabError(f"the lab daemon for {path} does not answer ({e}); `python -m fsyncstudy lab status "
                           "--dir LAB_DIR` says whether its lab is still in use and what to do") from e
        with s.makefile("rwb") as f:
            f.write(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
            f.flush()
            line = f.readline()
    if not line:
        raise LabError(f"the lab daemon for {path} closed the connection without answering {cmd}")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise LabError(f"{cmd} on {path}: {reply.get('error')}")
    return reply["result"]


def cut(path: str | os.PathLike, tear: bool = False) -> dict:
    """Cut the power: drop every unsynced byte and freeze the mount (every operation fails
    with EIO) until ``reset``.  The backing directory then holds what a power loss keeps.
    ``tear``: tear the last unsynced write at its last page boundary instead of dropping it
    whole.  Returns what was dropped (``CutReport`` as a dict)."""
    return request(path, "cut", tear=tear)


def reset(path: str | os.PathLike) -> dict:
    """Power back on after a cut: the mount works again and shows the backing directory.
    File descriptors opened before the cut stay dead (EIO)."""
    return request(path, "reset")


def inject(path: str | os.PathLike, *, fsync_eio=_UNCHANGED, fsync_eio_after=_UNCHANGED,
           enospc_after_bytes=_UNCHANGED, sync_delay_ms=_UNCHANGED, sync_delay_dist=_UNCHANGED,
           sync_delay_spread_ms=_UNCHANGED, liar_window_ms=_UNCHANGED) -> dict:
    """Change the faults of a lab FUSE mount; arguments left out keep their value.

    ``fsync_eio``: None, "once" or "always" (file fsync/fdatasync and O_SYNC writes fail
    with EIO; the failed data is marked clean and never written, as Linux does);
    ``fsync_eio_after``: syncs that still succeed first; ``enospc_after_bytes``: writes
    fail with ENOSPC once this many more bytes were written (None: no limit);
    ``sync_delay_ms`` / ``sync_delay_dist`` (fixed, uniform, normal, exponential) /
    ``sync_delay_spread_ms``: the delay added to every sync; ``liar_window_ms`` (lab:liar only): how long
    an acknowledged sync stays in its volatile cache.  Returns the new faults.
    """
    given = {k: v for k, v in dict(fsync_eio=fsync_eio, fsync_eio_after=fsync_eio_after,
                                   enospc_after_bytes=enospc_after_bytes, sync_delay_ms=sync_delay_ms,
                                   sync_delay_dist=sync_delay_dist,
                                   sync_delay_spread_ms=sync_delay_spread_ms,
                                   liar_window_ms=liar_window_ms).items() if v is not _UNCHANGED}
    return request(path, "inject", **given)


def clear_faults(path: str | os.PathLike) -> dict:
    """No injected EIO or ENOSPC (the sync delay stays)."""
    return request(path, "inject", fsync_eio=None, fsync_eio_after=0, enospc_after_bytes=None)


def status(path: str | os.PathLike) -> dict:
    return request(path, "status")


def unsynced(path: str | os.PathLike) -> list[dict]:
    """Files whose data a cut would drop now."""
    return request(path, "unsynced")


# -- mounts and daemons ------------------------------------------------------------------

def is_mounted(mountpoint: str | os.PathLike) -> bool:
    mp = os.path.realpath(mountpoint)
    return any(m.mount_point == mp for m in mounts())


def run(cmd: list[str], timeout_s: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
    """Run a system tool; on failure raise LabError with its stderr."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError as e:
        raise LabError(f"{cmd[0]} not found") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{' '.join(cmd)} did not finish in {timeout_s:g} s") from e
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({p.returncode}): {(p.stderr or p.stdout).strip()}")
    return p


def unmount(mountpoint: str | os.PathLike, timeout_s: float = 10.0) -> None:
    """Unmount; if it is busy, detach it lazily (it goes once the last file closes)."""
    mp = os.path.realpath(mountpoint)
    deadline = time.monotonic() + timeout_s
    while is_mounted(mp):
        try:
            # bounded: a FUSE mount whose daemon is stuck can hold umount for as long as it likes
            p = run(["umount", mp], timeout_s=max(1.0, deadline - time.monotonic()), check=False)
        except LabError as e:
            p = subprocess.CompletedProcess(["umount", mp], 1, "", str(e))
        if p.returncode == 0 or not is_mounted(mp):
            break
        if time.monotonic() > deadline or "busy" not in (p.stderr or ""):
            run(["umount", "-l", mp], timeout_s=30.0, check=False)
            if is_mounted(mp):
                raise LabError(f"cannot unmount {mp}: {p.stderr.strip()}")
            break
        time.sleep(0.1)


def daemon_alive(pid: int) -> bool:
    """Whether ``pid`` is a running lab FUSE daemon (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"fsyncstudy.lab.fusefs" in cmdline and state != "Z"


def stop_daemon(pid: int, grace_s: float = 5.0, timeout_s: float = 10.0) -> None:
    """Wait ``grace_s`` for the daemon to exit (it does once unmounted), then SIGTERM (libfuse
    unmounts and exits), then SIGKILL.  Only acts on a pid that is our daemon; reaps our child."""
    def gone() -> bool:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return True
        except ChildProcessError:
            pass
        return not daemon_alive(pid)

    for sig, wait in ((None, grace_s), (signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        if gone():
            return
        if sig is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if gone():
                return
            time.sleep(0.02)


class FuseMount:
    """One lab FUSE daemon: started in its own session so it outlives ``lab up``."""

    def __init__(self, name: str, backing: Path, mountpoint: Path, log_path: Path, pid_path: Path,
                 label: dict, backing_sync: bool = True, sync_delay_ms: float = 0.0,
                 sync_delay_dist: str = "fixed", sync_delay_spread_ms: float = 0.0, seed: int | None = None,
                 liar_window_ms: float | None = None):
        self.name, self.backing, self.mountpoint = name, Path(backing), Path(mountpoint)
        self.log_path, self.pid_path, self.label = Path(log_path), Path(pid_path), label
        self.backing_sync = backing_sync
        self.delay = (sync_delay_ms, sync_delay_dist, sync_delay_spread_ms)
        self.seed = seed
        self.liar_window_ms = liar_window_ms      # lab:liar's volatile window; None: an honest volume
        self.token = secrets.token_hex(8)
        self.pid: int | None = None

    def command(self) -> list[str]:
        ms, dist, spread = self.delay
        cmd = [sys.executable, "-m", "fsyncstudy.lab.fusefs", str(self.backing), str(self.mountpoint),
               "--name", self.name, "--token", self.token, "--label", json.dumps(self.label),
               "--backing-sync", "fsync" if self.backing_sync else "none",
               "--sync-delay-ms", repr(ms), "--sync-delay-dist", dist, "--sync-delay-spread-ms", repr(spread)]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        if self.liar_window_ms is not None:
            cmd += ["--liar-window-ms", repr(self.liar_window_ms)]
        return cmd

    def start(self) -> None:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # the daemon imports this very package, wherever it was imported from
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.log_path, "ab") as logf:
            proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                    start_new_session=True, env=env, close_fds=True)
        self.pid = proc.pid
        self.pid_path.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                if proc.poll() is not None:
                    raise LabError(f"the FUSE daemon for lab:{self.name} exited ({proc.returncode}) before "
                                   f"mounting: {self._log_tail()}")
                if self._mounted_by_us():
                    try:
                        request(self.mountpoint, "ping", timeout_s=5)
                        return
                    except LabError:
                        pass
                if time.monotonic() > deadline:
                    raise LabError(f"the FUSE daemon for lab:{self.name} did not mount {self.mountpoint} "
                                   f"within {START_TIMEOUT_S:g} s: {self._log_tail()}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def _mounted_by_us(self) -> bool:
        mp = os.path.realpath(self.mountpoint)
        return any(m.mount_point == mp and m.source.endswith(":" + self.token) for m in mounts())

    def _log_tail(self, n: int = 800) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return "(no log)"
        return text[-n:] or "(empty log)"

    def stop(self) -> None:
        if is_mounted(self.mountpoint):
            unmount(self.mountpoint)
        if self.pid is not None:
            stop_daemon(self.pid)
        self.pid_path.unlink(missing_ok=True)
