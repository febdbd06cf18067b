"""Describe storage targets: which filesystem and device a directory lives on, whether a
sync there can make anything durable at all, and whether a cache between us and the media
is likely (``plausibility``: the device's class against a measured sync latency).

Standard library only (the protocol node describes its target on every run).
Everything comes from /proc/self/mountinfo and /sys/block, so it describes what
the kernel sees, which may not be the physical truth (a virtual disk's flushes end
at the hypervisor; a drive may ignore flushes): the verdict says so.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Filesystems whose data lives only in RAM: fsync is a no-op there.
VOLATILE_FS = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs", "zram"}
#: Filesystems where a sync's promise depends on something we cannot see.
UNCERTAIN_FS = {
    "overlay", "aufs", "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "virtiofs", "ceph",
    "glusterfs", "lustre", "afs", "sshfs", "davfs", "vboxsf", "vmhgfs", "squashfs",
}
#: Pseudo filesystems nobody would measure; `devices` leaves them out.
PSEUDO_FS = {
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs", "securityfs",
    "pstore", "bpf", "configfs", "fusectl", "binfmt_misc", "autofs", "rpc_pipefs", "nsfs",
    "efivarfs", "selinuxfs", "hugetlbfs", "devtmpfs",
}
#: Block device name prefixes of virtual disks whose cache is the hypervisor's.
VIRTUAL_DISKS = ("vd", "xvd")
#: Words in a disk's model that name a hypervisor's emulated disk.
VIRTUAL_MODELS = ("QEMU", "VBOX", "VMware", "Virtual", "Msft", "Google", "Amazon Elastic", "Xen")
#: A spinning disk does not make a small append durable faster than this: the sector after the last
#: write has passed under the head, so the next one waits most of a turn (8.3 ms at 7200 rpm, 4 ms at
#: 15,000 rpm) or a seek.  A "rotational" disk syncing faster has a cache in front of its platters.
ROTATIONAL_MIN_SYNC_S = 1e-3
LIKELY_CACHE = "a cache between us and the media is likely"
NO_SIGN_OF_CACHE = "no sign of a cache between us and the media"
#: Storage-lab targets describe themselves in this extended attribute (JSON: target, label,
#: emulated, reason): on a lab FUSE mount's root, or on a lab loop device's image file.
LAB_LABEL_XATTR = "user.fsyncstudy.label"


@dataclass
class Mount:
    mount_point: str
    fstype: str
    source: str
    options: str
    major_minor: str


@dataclass
class Target:
    """What a directory is stored on, and the durability verdict with its reason."""

    path: str
    fstype: str
    mount_point: str
    mount_options: str
    source: str
    block_device: str | None = None
    rotational: bool | None = None
    write_cache: str | None = None
    model: str | None = None
    loop_backing_file: str | None = None
    free_bytes: int | None = None
    durability: str = "uncertain"  # volatile | uncertain | durable
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    #: A short name for tables and plots: "ext4 on /dev/vda", or a lab target's own description.
    label: str = ""
    #: True for a device emulation (the lab's hdd-/ssd-emulated): its timings are not hardware's.
    emulated: bool = False
    #: "lab:<name>" when the directory is on a storage-lab target (fsyncstudy.lab).
    lab_target: str | None = None
    #: The block device's I/O scheduler (the one in use), where there is one.
    scheduler: str | None = None
    #: How a storage-lab filesystem was made (its mkfs command), from its self-description.
    mkfs: str | None = None
    #: Whether the device takes writes with Force Unit Access (/sys/block/<dev>/queue/fua).
    fua: bool | None = None
    #: What makes the disk virtual ("virtio", "xen", or its model), None for a disk that does not say so.
    virtual: str | None = None
    #: A sync's latency here as measured in this process (``note_sync_s``, ``probe_sync_s``); describe
    #: never measures it.
    sync_probe_ms: float | None = None
    #: One line: whether a cache between us and the media is likely, with the evidence (``plausibility``).
    plausibility: str = ""

    @property
    def can_be_durable(self) -> bool:
        return self.durability != "volatile"

    def as_dict(self) -> dict:
        return asdict(self)


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return (text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    """Every mount the kernel lists, in mountinfo order (later mounts shadow earlier ones)."""
    out = []
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            if len(lf) < 6 or len(rf) < 2:
                continue
            out.append(Mount(mount_point=_unescape(lf[4]), fstype=rf[0], source=_unescape(rf[1]),
                             options=lf[5] + ("," + rf[2] if len(rf) > 2 else ""),
                             major_minor=lf[2]))
    return out


def mount_of(path: str | os.PathLike, table: list[Mount] | None = None) -> Mount:
    """The mount that holds path: the longest mount point that prefixes it, the last one listed."""
    real = os.path.realpath(path)
    best = None
    for m in table if table is not None else mounts():
        mp = m.mount_point
        if real == mp or real.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best.mount_point):
                best = m
    if best is None:
        raise FileNotFoundError(f"no mount holds {real}")
    return best


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _block_info(major_minor: str) -> dict:
    """Disk name, rotational flag, cache mode, model and loop backing file for a device number."""
    dev = Path("/sys/dev/block") / major_minor
    if not dev.exists():
        return {}
    sysdev = dev.resolve()
    disk = sysdev if (sysdev / "queue").exists() else sysdev.parent  # a partition's queue is its disk's
    info: dict = {"block_device": sysdev.name}
    rot = _read(disk / "queue" / "rotational")
    info["rotational"] = None if rot is None else rot == "1"
    info["write_cache"] = _read(disk / "queue" / "write_cache")
    fua = _read(disk / "queue" / "fua")
    info["fua"] = None if fua is None else fua == "1"
    vendor, model = _read(disk / "device" / "vendor"), _read(disk / "device" / "model")
    # virtio and NVMe put a PCI id in vendor; only a named model says what the drive is
    info["model"] = " ".join(x for x in (vendor, model) if x) if model else None
    info["virtual"] = _virtual(disk, info["model"])
    info["loop_backing_file"] = _read(disk / "loop" / "backing_file")
    sched = _read(disk / "queue" / "scheduler") or ""
    info["scheduler"] = next((w[1:-1] for w in sched.split() if w.startswith("[")), sched or None)
    info["disk"] = disk.name
    return info


def _virtual(disk: Path, model: str | None) -> str | None:
    """What says this disk is a hypervisor's: its name, its bus (virtio-blk, virtio-scsi), its model."""
    if disk.name.startswith("xvd"):
        return "xen"
    if disk.name.startswith("vd") or "/virtio" in str(disk):
        return "virtio"
    if model and any(w.lower() in model.lower() for w in VIRTUAL_MODELS):
        return model
    return None


def _verdict(t: Target, disk: str | None) -> tuple[str, str]:
    fs = t.fstype
    if fs in VOLATILE_FS:
        return "volatile", f"{fs} keeps files in RAM: fsync is a no-op and a power cut loses everything"
    if fs in UNCERTAIN_FS or fs.startswith("fuse"):
        return "uncertain", (f"{fs}: a sync's promise depends on the layer below "
                             "(a FUSE daemon, an overlay's upper directory or a network server)")
    if t.loop_backing_file:
        return "uncertain", (f"loop device backed by the file {t.loop_backing_file}: a flush reaches "
                             "that file's filesystem, whose own durability decides")
    if disk and disk.startswith(VIRTUAL_DISKS) and t.write_cache == "write back":
        return "uncertain", (f"virtual disk /dev/{disk} with a write-back cache: flushes reach the "
                             "hypervisor, whose cache mode decides whether they reach media")
    if t.write_cache == "write back":
        return "durable", ("write-back drive cache: the kernel sends a cache flush on every sync; "
                           "durable if the drive honours flushes (check for power-loss protection)")
    if t.write_cache == "write through":
        return "durable", "write-through cache: a completed write is on stable media"
    return "durable", f"{fs} on a block device; its cache mode is unknown"


def describe(path: str | os.PathLike) -> Target:
    """Describe the storage under a directory (or the directory that would hold a file)."""
    p = Path(path)
    probe = p if p.exists() else p.parent
    if not probe.exists():
        raise FileNotFoundError(f"target directory {p} does not exist")
    m = mount_of(probe)
    t = Target(path=str(p.resolve()), fstype=m.fstype, mount_point=m.mount_point,
               mount_options=m.options, source=m.source)
    try:
        t.free_bytes = shutil.disk_usage(probe).free
    except OSError:
        pass
    major_minor = m.major_minor
    if major_minor.startswith("0:") and m.source.startswith("/dev/"):
        # btrfs gives its files an anonymous device number; the mount source names the disk
        try:
            rdev = os.stat(m.source).st_rdev
            major_minor = f"{os.major(rdev)}:{os.minor(rdev)}"
        except OSError:
            pass
    info = _block_info(major_minor) if not major_minor.startswith("0:") else {}
    disk = info.pop("disk", None)
    for k, v in info.items():
        setattr(t, k, v)
    t.durability, t.reason = _verdict(t, disk)
    if "sync" in m.options.split(","):
        t.notes.append("mounted with -o sync: every write is synchronous already")
    if "nobarrier" in m.options.split(",") or "barrier=0" in m.options.split(","):
        t.durability = "uncertain"
        t.reason = "mounted without write barriers: syncs do not flush the drive cache"
    t.label = f"{t.fstype} on {'/dev/' + t.block_device if t.block_device else t.source}"
    _lab_label(t)
    sync_s = _SYNC_S.get(t.mount_point)
    t.sync_probe_ms = None if sync_s is None else round(sync_s * 1e3, 4)
    t.plausibility = plausibility(t, sync_s)
    return t


# -- is a cache between us and the media likely ----------------------------------------------------

#: Sync latencies measured in this process, by mount point: describe() reads them (it is called per
#: trial, so it never measures); ``note_sync_s`` and ``probe_sync_s`` fill them.
_SYNC_S: dict[str, float] = {}


def note_sync_s(path: str | os.PathLike, sync_s: float) -> None:
    """Remember a sync latency measured under ``path`` (a probe, a trial), for describe()'s verdict."""
    _SYNC_S[mount_of(path).mount_point] = float(sync_s)


def probe_sync_s(directory: str | os.PathLike, n: int = 8) -> float:
    """The median of ``n`` small appends each followed by fdatasync, in a fresh file in ``directory``
    (removed after), remembered for describe().  The same probe as ``trial.probe_sync_s``, here because
    ``devices`` (``discover``) needs it and this layer may not import the trial's."""
    from .log import LogFile
    with LogFile(directory, "fdatasync", "append", 0) as log:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            os.write(log.fd, b"\0" * 144)
            os.fdatasync(log.fd)
            times.append(time.perf_counter() - t)
    s = sorted(times)[n // 2]
    note_sync_s(directory, s)
    return s


def plausibility(t: Target, sync_s: float | None = None) -> str:
    """Whether a cache between us and the media is likely, in one line with the evidence: the device's
    class (RAM, FUSE, a network or overlay filesystem, a loop device, a virtual disk, no barriers) and,
    given a measured sync latency, whether the class allows it (a rotational disk cannot sync in under
    ``ROTATIONAL_MIN_SYNC_S``).  Without evidence either way on a block device: no sign of one (only a
    power cut settles it).  "" where nothing is known."""
    ev = []
    fs, dev = t.fstype, f"/dev/{t.block_device}" if t.block_device else t.source
    if fs in VOLATILE_FS:
        ev.append(f"{fs} keeps files in RAM: there are no media below it")
    elif fs.startswith("fuse"):
        ev.append(f"{fs} is a FUSE filesystem: its daemon, between us and the media, decides what a sync does")
    elif fs in UNCERTAIN_FS:
        ev.append(f"{fs}: another layer (a server, an overlay's upper directory) sits between us and the media")
    if t.loop_backing_file:
        ev.append(f"a loop device: the file {t.loop_backing_file}, its filesystem and the host's page cache sit "
                  "between us and the media")
    if t.virtual:
        ev.append(f"a virtual disk ({dev}, {t.virtual}): a flush ends at the hypervisor, whose cache mode decides "
                  "whether it reaches media (QEMU's cache=unsafe drops flushes)")
    opts = t.mount_options.split(",")
    if "nobarrier" in opts or "barrier=0" in opts:
        ev.append("mounted without barriers: a sync does not flush the drive's cache")
    if sync_s is not None and t.rotational and sync_s < ROTATIONAL_MIN_SYNC_S:
        ev.append(f"{dev} says it is rotational, yet a sync took {sync_s * 1e3:.3g} ms: no spinning disk makes a "
                  f"write durable in under {ROTATIONAL_MIN_SYNC_S * 1e3:g} ms (a 7200 rpm disk turns once in 8.3 ms)")
    if ev:
        return f"{LIKELY_CACHE}: " + "; ".join(ev)
    if not t.block_device:
        return ""
    seen = [f"a sync took {sync_s * 1e3:.3g} ms" if sync_s is not None else "no sync latency measured",
            f"{'rotational' if t.rotational else 'non-rotational' if t.rotational is False else 'kind unknown'}",
            f"{t.write_cache or 'unknown'} cache" + ("" if t.fua is None else f", FUA {'yes' if t.fua else 'no'}")]
    return (f"{NO_SIGN_OF_CACHE} ({', '.join(seen)}); whether the drive keeps its flushes only a power cut "
            "tells: python -m fsyncstudy diskcheck")


def _lab_label(t: Target) -> None:
    """A storage-lab target's self-description, where it has one (read, never imported)."""
    if t.fstype == "fuse.fsyncstudy":
        where = t.mount_point
    elif t.loop_backing_file:
        where = t.loop_backing_file
    else:
        return
    try:
        lab = json.loads(os.getxattr(where, LAB_LABEL_XATTR))
    except (OSError, ValueError):
        return
    t.lab_target = lab.get("target")
    t.label = lab.get("label") or t.label
    t.emulated = bool(lab.get("emulated"))
    t.mkfs = lab.get("mkfs")
    if lab.get("reason") and t.durability != "volatile":
        t.durability, t.reason = "uncertain", lab["reason"]


def _probe_worthy(t: Target) -> bool:
    """A block-device filesystem that is not the lab's, nor read-only: where a sync's latency can tell
    something about the device (the class alone decides for RAM, FUSE, network and loop filesystems)."""
    return bool(t.block_device) and not t.lab_target and not t.loop_backing_file and t.durability != "volatile" \
        and t.fstype not in UNCERTAIN_FS and not t.fstype.startswith("fuse") and "ro" not in t.mount_options.split(",")


def discover(include_pseudo: bool = False, probe: bool = True) -> list[Target]:
    """The mounted filesystems a user could measure, one per mount point (shadowed ones left out).
    ``probe``: measure a sync on each block-device filesystem first (``probe_sync_s``; eight small
    fdatasyncs, a few ms on most disks), so each verdict weighs its latency."""
    seen: dict[str, Mount] = {}
    for m in mounts():
        if not include_pseudo and m.fstype in PSEUDO_FS:
            continue
        if m.mount_point.startswith(("/proc", "/sys", "/run/credentials")):
            continue
        seen[m.mount_point] = m
    out = []
    for mp in sorted(seen):
        try:
            if not os.access(mp, os.W_OK):
                continue
            t = describe(mp)
            if probe and t.mount_point not in _SYNC_S and _probe_worthy(t):
                try:
                    probe_sync_s(mp)
                    t = describe(mp)
                except OSError:
                    pass    # a full or read-only filesystem: its verdict goes without the latency
            out.append(t)
        except OSError:
            continue
    return out


def device(t: Target) -> str:
    """The block device's name, or the mount's source where there is none."""
    return t.block_device or t.source


def one_line(t: Target) -> str:
    """A target in one line, as commands print it before their results."""
    return f"{t.path} ({t.fstype} on {device(t)}), {t.durability}: {t.reason}"


def table_label(t: Target) -> str:
    """A short name for tables and plots: the lab name, or the filesystem and its device.  (The
    verdict has its own column; datasets written before kept it in the label: ``strip_verdict``.)"""
    if t.lab_target:
        return t.lab_target + (" (EMULATED)" if t.emulated else "")
    return f"{t.fstype} on {device(t)}"


def strip_verdict(label: str) -> str:
    """A label as ``table_label`` writes it now, from one that ends in ", <verdict>"."""
    for verdict in ("durable", "uncertain", "volatile"):
        if label.endswith(", " + verdict):
            return label[:-len(verdict) - 2]
    return label


def _sysctl(name: str) -> str | None:
    return _read(Path("/proc/sys/vm") / name)


def machine_advice() -> list[str]:
    """What on this machine changes results and can be changed, with what to do (as ``pyperf system``)."""
    out = []
    govs = sorted({g for g in (_read(p) for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor"))
                   if g})
    if not govs:
        out.append("CPU frequency governor: not exposed here (a virtual machine, or no cpufreq driver): the host "
                   "decides; expect more noise than on bare metal")
    elif govs != ["performance"]:
        out.append(f"CPU frequency governor: {', '.join(govs)}: `cpupower frequency-set -g performance` makes the "
                   "CPU-bound numbers (batch, none) steadier")
    else:
        out.append("CPU frequency governor: performance: good for measuring")
    exp, wb = _sysctl("dirty_expire_centisecs"), _sysctl("dirty_writeback_centisecs")
    if exp and wb:
        out.append(f"vm.dirty_expire_centisecs={exp}, vm.dirty_writeback_centisecs={wb}: unsynced data (`none`) is "
                   f"written back within about {(int(exp) + int(wb)) / 100:g} s on disk filesystems; lowering them "
                   "shortens what `none` can lose and makes its writes compete with syncs")
    ratio, bg = _sysctl("dirty_ratio"), _sysctl("dirty_background_ratio")
    if ratio and bg:
        out.append(f"vm.dirty_ratio={ratio}%, vm.dirty_background_ratio={bg}%: above these, writers are throttled "
                   "or writeback starts: long `none`/`batch` runs can hit them")
    return out


def advice(t: Target) -> list[str]:
    """What about this target changes results and can be changed; first, whether a cache between us and
    the media is likely (``t.plausibility``)."""
    out = [t.plausibility] if t.plausibility else []
    opts = t.mount_options.split(",")
    if t.scheduler:
        out.append(f"I/O scheduler {t.scheduler}" + (": `none` avoids scheduling overhead on fast SSD/NVMe and "
                                                      "virtual disks" if t.scheduler not in ("none", "noop") else
                                                      ": requests go straight to the device"))
    if t.fstype == "ext4":
        commit = next((o.split("=", 1)[1] for o in opts if o.startswith("commit=")), "5")
        data = next((o.split("=", 1)[1] for o in opts if o.startswith("data=")), "ordered")
        out.append(f"ext4 commit={commit} s, data={data}: a sync of a growing file also commits the journal; "
                   "data=journal writes file data twice")
    if "nobarrier" in opts or "barrier=0" in opts:
        out.append("mounted without barriers: syncs do not flush the drive's cache, so they measure no durability")
    if "sync" in opts:
        out.append("mounted with -o sync: every write is synchronous already, so the strategies do not differ")
    if t.write_cache == "write back" and (t.block_device or "").startswith(VIRTUAL_DISKS):
        out.append("virtual disk with a write-back cache: the hypervisor's cache mode (QEMU cache=none, writeback, "
                   "unsafe) decides what a flush means; it is not visible from inside the guest")
    elif t.write_cache == "write back":
        out.append("drive write cache on: flushes reach the drive; check it has power-loss protection")
    return out
