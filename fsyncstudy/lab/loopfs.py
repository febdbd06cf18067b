"""Loop-device filesystems: an image file on the host disk, a loop device, a real kernel mount.

Each ``LoopFS`` makes a sparse image in ``<lab>/images``, formats it, attaches it to a
free loop device (with direct I/O to the image where the host allows it, so the host's
page cache does not sit between the filesystem and the file) and mounts it at
``<lab>/mnt/<name>``.  A flush on the loop device becomes an fsync of the image file,
so a sync on a lab filesystem costs a sync of the host disk plus what the filesystem
itself adds (journal commits, log writes, copy-on-write trees).  Needs root.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..targets import LAB_LABEL_XATTR, describe, device
from .control import LabError, is_mounted, run, unmount

#: Extended attribute on the image file: the target's self-description (see targets.describe).
IMAGE_PREFIX = "fsyncstudy-lab-"


@dataclass(frozen=True)
class LoopSpec:
    name: str
    fstype: str
    mkfs: tuple[str, ...]
    package: str
    what: str
    mount_options: str = ""


#: ext4's lazy init would write inode tables from a kernel thread during the first
#: minutes of a mount, in the middle of measurements: do it all at mkfs time.
_MKFS_EXT4 = ("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0")

LOOP_TARGETS: dict[str, LoopSpec] = {
    "ext4": LoopSpec("ext4", "ext4", _MKFS_EXT4, "e2fsprogs", "ext4, default journaling (data=ordered)"),
    "ext4-journal": LoopSpec("ext4-journal", "ext4", _MKFS_EXT4, "e2fsprogs",
                             "ext4 with data=journal (file data goes through the journal too)", "data=journal"),
    "xfs": LoopSpec("xfs", "xfs", ("mkfs.xfs", "-q", "-f"), "xfsprogs", "xfs"),
    "btrfs": LoopSpec("btrfs", "btrfs", ("mkfs.btrfs", "-q", "-f"), "btrfs-progs", "btrfs (copy-on-write)"),
}

#: xfs refuses filesystems under 300 MB; btrfs wants more than 109 MiB.
MIN_SIZE_MIB = 320


def loop_devices_under(directory: str | os.PathLike) -> list[tuple[str, str]]:
    """Loop devices whose backing file lies under ``directory``: [(device, backing file)]."""
    prefix = os.path.realpath(directory).rstrip("/") + "/"
    out = []
    for d in sorted(Path("/sys/block").glob("loop*")):
        try:
            backing = (d / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.endswith(" (deleted)"):
            backing = backing[:-len(" (deleted)")]
        if backing.startswith(prefix):
            out.append((f"/dev/{d.name}", backing))
    return out


def detach(device: str) -> None:
    # a busy device (lazily unmounted fs still in use) is marked autoclear and goes later
    run(["losetup", "-d", device], check=False)


class LoopFS:
    """One loop-device filesystem of the lab."""

    kind = "loop"

    def __init__(self, spec: LoopSpec, lab_dir: Path, size_mib: int = 512, direct_io: bool = True):
        if size_mib < MIN_SIZE_MIB:
            raise ValueError(f"lab images need at least {MIN_SIZE_MIB} MiB (xfs's minimum), got {size_mib}")
        self.spec, self.size_mib, self.direct_io = spec, size_mib, direct_io
        self.name = spec.name
        self.image = lab_dir / "images" / f"{IMAGE_PREFIX}{spec.name}.img"
        self.mountpoint = lab_dir / "mnt" / spec.name
        self.device: str | None = None
        self._made_image = False
        self.dio = False
        self.label: dict = {}

    def create(self) -> None:
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise

    def _create(self) -> None:
        self.image.parent.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.image, "xb") as f:      # never over a file that is there already
            self._made_image = True
            f.truncate(self.size_mib << 20)     # sparse: costs only what the filesystem writes
        run([*self.spec.mkfs, str(self.image)])
        self.device, self.dio = self._attach()
        opts = ["-o", self.spec.mount_options] if self.spec.mount_options else []
        run(["mount", "-t", self.spec.fstype, *opts, self.device, str(self.mountpoint)])
        host = describe(self.image.parent)
        self.label = {
            "target": f"lab:{self.name}",
            "label": f"lab:{self.name}: {self.spec.what} on a loop device backed by a file on the host disk",
            "emulated": False,
            "mkfs": " ".join([*self.spec.mkfs, "IMAGE"]) + (f"; mount -o {self.spec.mount_options}"
                                                             if self.spec.mount_options else ""),
            "reason": (f"loop device {self.device} backed by the file {self.image} on the host's "
                       f"{host.fstype} ({device(host)}"
                       f"{', virtual disk' if (host.block_device or '').startswith(('vd', 'xvd')) else ''})"
                       f"{', direct I/O' if self.dio else ', buffered through the host page cache'}: "
                       "a sync's flush becomes an fsync of that file, so it is as durable as the host disk"),
        }
        try:
            os.setxattr(self.image, LAB_LABEL_XATTR, json.dumps(self.label).encode())
        except OSError:
            pass                                # the host filesystem has no user xattrs: describe() falls back

    def _attach(self) -> tuple[str, bool]:
        if self.direct_io:
            p = run(["losetup", "--find", "--show", "--direct-io=on", str(self.image)], check=False)
            if p.returncode == 0:
                dev = p.stdout.strip()
                dio = _read(f"/sys/block/{os.path.basename(dev)}/loop/dio") == "1"
                return dev, dio
        p = run(["losetup", "--find", "--show", str(self.image)])
        return p.stdout.strip(), False

    def destroy(self) -> None:
        """Unmount, detach, delete the image.  Safe to call on a half-made filesystem."""
        errors = []
        try:
            if is_mounted(self.mountpoint):
                unmount(self.mountpoint)
        except LabError as e:
            errors.append(str(e))
        image = str(self.image.resolve())
        devices = {dev for dev, backing in loop_devices_under(self.image.parent) if backing == image}
        if self.device:
            devices.add(self.device)
        for dev in sorted(devices):
            detach(dev)
        self.device = None
        if self._made_image:
            self.image.unlink(missing_ok=True)
        if errors:
            raise LabError("; ".join(errors))

    def state(self) -> dict:
        return {"kind": self.kind, "mountpoint": str(self.mountpoint), "device": self.device,
                "image": str(self.image), "direct_io": self.dio, "fstype": self.spec.fstype,
                "mount_options": self.spec.mount_options, "label": self.label}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None
