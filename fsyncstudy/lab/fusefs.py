"""The lab's FUSE daemon: serves a ``Volume`` (``fsyncstudy.lab.powercut``) at a mount point.

Run as its own process (``fsyncstudy.lab.control.FuseMount`` starts it)::

    python -m fsyncstudy.lab.fusefs BACKING MOUNTPOINT --name powercut --token T [options]

It mounts in the foreground with libfuse 3 through ``mfusepy`` and answers control
requests (cut, reset, inject, status, unsynced) on the abstract Unix socket
``fsyncstudy-lab:<token>``, whose token is also in the mount's source
(``fsyncstudy-lab:<name>:<token>``), so any process can find it from the mount point.
Only root or the daemon's own user may control it (SO_PEERCRED).

The kernel must not cache anything the daemon would have to take back at a cut:
``direct_io`` (every read and write reaches the daemon) and zero attribute and entry
timeouts (sizes come from the cache model, not from a stale kernel copy).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import json
import logging
import os
import socket
import struct
import sys
import threading

from ..targets import LAB_LABEL_XATTR
from .powercut import Faults, Volume

# LAB_LABEL_XATTR on the mount's root is the target's self-description, read by
# ``fsyncstudy.targets.describe`` (JSON: target, label, emulated, reason).
SOCKET_PREFIX = "fsyncstudy-lab:"

log = logging.getLogger("fsyncstudy.lab.fusefs")


def _import_mfusepy():
    # mfusepy prefers libfuse 2 when both are installed; our options need libfuse 3.
    if not os.environ.get("FUSE_LIBRARY_PATH"):
        lib = ctypes.util.find_library("fuse3")
        if lib:
            os.environ["FUSE_LIBRARY_PATH"] = lib
    import mfusepy
    return mfusepy


def make_operations(fuse, vol: Volume, label: dict):
    """The mfusepy Operations class over ``vol`` (built here: mfusepy is imported lazily)."""
    label_bytes = json.dumps(label).encode()

    class Ops(fuse.Operations):
        use_ns = True
        flag_nopath = True
        flag_nullpath_ok = True

        def init_with_config(self, conn, config):
            if config is not None:
                config.entry_timeout = 0
                config.negative_timeout = 0
                config.attr_timeout = 0
                config.hard_remove = 1        # unlink really unlinks, even with the file open
                config.direct_io = 1          # no kernel page cache between the writer and the model
                config.nullpath_ok = 1        # file-handle operations get no path: we go by handle

        def getattr(self, path, fh=None):
            return vol.stat(path, fh)

        def _own(self, path):
            # the daemon runs as root, so what it creates in the backing directory is root's: give
            # it to the caller, as a kernel filesystem would (PostgreSQL refuses a data directory
            # that is not its own)
            uid, gid, _ = fuse.fuse_get_context()
            if uid or gid:
                vol.chown(path, uid, gid)

        def statfs(self, path):
            return vol.statfs()

        def access(self, path, amode):
            vol.access(path, amode)
            return 0

        def readdir(self, path, fh):
            return vol.readdir(path, fh or None)

        def opendir(self, path):
            return vol.opendir(path)

        def releasedir(self, path, fh):
            vol.releasedir(fh)
            return 0

        def fsyncdir(self, path, datasync, fh):
            vol.fsyncdir(fh, bool(datasync))
            return 0

        def mkdir(self, path, mode):
            vol.mkdir(path, mode)
            self._own(path)
            return 0

        def rmdir(self, path):
            vol.rmdir(path)
            return 0

        def unlink(self, path):
            vol.unlink(path)
            return 0

        def rename(self, old, new):
            vol.rename(old, new)
            return 0

        def symlink(self, target, source):
            vol.symlink(target, source)
            self._own(target)
            return 0

        def link(self, target, source):
            vol.link(target, source)
            return 0

        def readlink(self, path):
            return vol.readlink(path)

        def mknod(self, path, mode, dev):
            vol.mknod(path, mode, dev)
            self._own(path)
            return 0

        def chmod(self, path, mode, fh=None):
            vol.chmod(path, mode, fh)
            return 0

        def chown(self, path, uid, gid, fh=None):
            vol.chown(path, uid, gid, fh)
            return 0

        def utimens(self, path, times=None, fh=None):
            vol.utimens(path, tuple(int(t) for t in times) if times else None, fh)
            return 0

        def truncate(self, path, length, fh=None):
            vol.truncate(path, length, fh)
            return 0

        def open(self, path, flags):
            return vol.open(path, flags)

        def create(self, path, mode, flags):
            fh = vol.create(path, mode, flags)
            self._own(path)
            return fh

        def read(self, path, size, offset, fh):
            return vol.read(fh, size, offset)

        def write(self, path, data, offset, fh, flags=0):
            return vol.write(fh, data, offset, flags)

        def fallocate(self, path, mode, offset, length, fh):
            vol.fallocate(fh, mode, offset, length)
            return 0

        def flush(self, path, fh):
            return 0                          # close(2) does not sync: nothing to do

        def release(self, path, fh):
            vol.release(fh)
            return 0

        def fsync(self, path, datasync, fh):
            vol.fsync(fh, bool(datasync))
            return 0

        def getxattr(self, path, name, position=0):
            if name == LAB_LABEL_XATTR and path == "/":
                return label_bytes
            raise fuse.FuseOSError(errno.ENODATA)

        def listxattr(self, path):
            return [LAB_LABEL_XATTR] if path == "/" else []

    return Ops


def make_fuse_class(fuse):
    """mfusepy's FUSE, passing the file handle to the setattr family (it drops it for libfuse 3)."""

    class LabFUSE(fuse.FUSE):
        def _fh(self, fip):
            return fip.contents.fh if fip else None

        def write(self, path, buf, size, offset, fip):
            # a write's own flags: pwritev2(RWF_DSYNC) on a file opened without O_DSYNC reaches a direct_io
            # FUSE filesystem as O_DSYNC in this write's flags only (no FUSE_FSYNC follows it), which
            # mfusepy drops: without them the lab would keep such a write in its cache and lose it at a cut
            return self.operations.write(self._path(path), ctypes.string_at(buf, size), offset,
                                         fip.contents.fh, fip.contents.flags)

        def _path(self, path):
            return None if path is None else path.decode(self.encoding, self.errors)

        def truncate_fuse_3(self, path, length, fip):
            return self.operations.truncate(self._path(path), length, self._fh(fip))

        def chmod_fuse_3(self, path, mode, fip):
            return self.operations.chmod(self._path(path), mode, self._fh(fip))

        def chown_fuse_3(self, path, uid, gid, fip):
            # mfusepy's _chown maps -1 (unchanged) through c_uint; keep that meaning
            uid = -1 if uid == 0xFFFFFFFF else uid
            gid = -1 if gid == 0xFFFFFFFF else gid
            return self.operations.chown(self._path(path), uid, gid, self._fh(fip))

        def utimens_fuse_3(self, path, buf, fip):
            times = None
            if buf:
                times = (fuse.time_of_timespec(buf.contents.actime, use_ns=True),
                         fuse.time_of_timespec(buf.contents.modtime, use_ns=True))
            return self.operations.utimens(self._path(path), times, self._fh(fip))

    return LabFUSE


class ControlServer(threading.Thread):
    """JSON-lines requests on an abstract Unix socket: {"cmd": ..., "args": {...}} -> {"ok": ...}."""

    def __init__(self, vol: Volume, token: str):
        super().__init__(name="fsyncstudy-lab-control", daemon=True)
        self.vol = vol
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind("\0" + SOCKET_PREFIX + token)
        self.sock.listen(16)

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def allowed(self, conn: socket.socket) -> bool:
        _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return uid in (0, os.getuid())

    def serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            if not self.allowed(conn):
                f.write(b'{"ok": false, "error": "permission denied: only root or the lab\'s user may control it"}\n')
                return
            for line in f:
                try:
                    req = json.loads(line)
                    reply = {"ok": True, "result": self.handle(req.get("cmd"), req.get("args") or {})}
                except (ValueError, TypeError, OSError) as e:
                    reply = {"ok": False, "error": str(e)}
                f.write(json.dumps(reply).encode() + b"\n")
                f.flush()

    def handle(self, cmd: str, args: dict):
        vol = self.vol
        if cmd == "cut":
            return vol.cut(tear=bool(args.get("tear", False))).as_dict()
        if cmd == "reset":
            return vol.reset()
        if cmd == "inject":
            return vol.inject(**args).as_dict()
        if cmd == "status":
            return vol.status()
        if cmd == "unsynced":
            return vol.unsynced()
        if cmd == "ping":
            return "pong"
        raise ValueError(f"unknown control command {cmd!r}: cut, reset, inject, status, unsynced or ping")


def _tighten_timer_slack() -> None:
    """Sleep as exactly as the kernel can: the default 50 us timer slack would stretch the
    emulated SSD's 0.1 ms flush by half.  Per thread, inherited by libfuse's worker threads."""
    try:
        ctypes.CDLL(None).prctl(29, 1, 0, 0, 0)    # PR_SET_TIMERSLACK, 1 ns
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fsyncstudy.lab.fusefs",
                                 description="The lab's power-cut FUSE filesystem (runs in the foreground).")
    ap.add_argument("backing", help="the backing directory: what a power cut leaves")
    ap.add_argument("mountpoint")
    ap.add_argument("--name", required=True, help="the lab target's name, e.g. powercut")
    ap.add_argument("--token", required=True, help="names the control socket")
    ap.add_argument("--label", default="", help="the target's self-description (JSON)")
    ap.add_argument("--backing-sync", choices=("fsync", "none"), default="fsync")
    ap.add_argument("--sync-delay-ms", type=float, default=0.0)
    ap.add_argument("--sync-delay-dist", default="fixed")
    ap.add_argument("--sync-delay-spread-ms", type=float, default=0.0)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--liar-window-ms", type=float, help="serve lab:liar: syncs are kept only this long after "
                                                          "they return (fsyncstudy.lab.liar)")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    fuse = _import_mfusepy()
    _tighten_timer_slack()
    faults = Faults(sync_delay_ms=args.sync_delay_ms, sync_delay_dist=args.sync_delay_dist,
                    sync_delay_spread_ms=args.sync_delay_spread_ms)
    if args.liar_window_ms is None:
        vol = Volume(args.backing, backing_sync=args.backing_sync == "fsync", faults=faults, seed=args.seed)
    else:
        from .liar import LiarVolume
        vol = LiarVolume(args.backing, window_ms=args.liar_window_ms, backing_sync=args.backing_sync == "fsync",
                         faults=faults, seed=args.seed)
    label = json.loads(args.label) if args.label else {"target": f"lab:{args.name}", "label": f"lab:{args.name}"}
    ControlServer(vol, args.token).start()
    ops = make_operations(fuse, vol, label)()
    make_fuse_class(fuse)(ops, args.mountpoint, foreground=True, allow_other=os.getuid() == 0,
                          fsname=f"{SOCKET_PREFIX}{args.name}:{args.token}", subtype="fsyncstudy")
    vol.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
