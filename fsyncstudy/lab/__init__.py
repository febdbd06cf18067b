"""The storage lab: more devices on one machine, a power-cut filesystem, fault injection.

Targets (``TARGET_NAMES``), usable wherever a directory is, through ``resolve_target``:

- ``lab:ext4``, ``lab:ext4-journal`` (data=journal), ``lab:xfs``, ``lab:btrfs``: real kernel
  filesystems on loop devices backed by image files on the host disk;
- ``lab:powercut``: a FUSE filesystem that keeps unsynced data in its own cache, so a
  ``cut`` leaves its backing directory exactly as a power loss would;
- ``lab:hdd-emulated``, ``lab:ssd-emulated``: the same filesystem with a sync delay of a
  7200 rpm disk (4-12 ms) or an SSD (0.1 ms); emulations, labelled so everywhere;
- ``lab:liar`` (only when named): the same filesystem as a drive whose volatile write cache
  acknowledges syncs it does not keep: a cut loses the syncs of the last N ms (``lab.liar``).

::

    from fsyncstudy.lab import Lab, cut, reset, inject
    with Lab("/var/tmp/mylab", targets=["xfs", "powercut"]) as lab:
        lab.available(), lab.skipped()        # ['lab:xfs', 'lab:powercut'], {} (or the reasons)
        d = lab.directory("lab:powercut")
        ...write and fsync in d...
        cut("lab:powercut")                   # or cut(d); lab.backing("lab:powercut") = what survived
        reset("lab:powercut")

Needs root; the loop targets need mkfs tools, the FUSE targets /dev/fuse, libfuse3 and
mfusepy.  Nothing here is imported by ``fsyncstudy`` itself or by the protocol node.
"""
from __future__ import annotations

import os

from . import control as _control
from .control import LabError
from .core import (FUSE_TARGETS, TARGET_NAMES, Lab, backing_of, default_lab_dir, down, leftovers, load_state, requirement,
                   requirements, resolve_target)
from .loopfs import LOOP_TARGETS
from .powercut import PAGE, CutReport, Faults, Volume


def _where(target: str | os.PathLike, lab_dir=None):
    return resolve_target(target, lab_dir)


def cut(target: str | os.PathLike, tear: bool = False, lab_dir=None) -> dict:
    """Cut the power of a lab FUSE target (``lab:powercut`` or a path in its mount); see control.cut."""
    return _control.cut(_where(target, lab_dir), tear=tear)


def reset(target: str | os.PathLike, lab_dir=None) -> dict:
    """Power a cut lab FUSE target back on; see control.reset."""
    return _control.reset(_where(target, lab_dir))


def inject(target: str | os.PathLike, lab_dir=None, **faults) -> dict:
    """Set faults on a lab FUSE target; see control.inject for the keywords."""
    return _control.inject(_where(target, lab_dir), **faults)


def clear_faults(target: str | os.PathLike, lab_dir=None) -> dict:
    return _control.clear_faults(_where(target, lab_dir))


def status(target: str | os.PathLike, lab_dir=None) -> dict:
    return _control.status(_where(target, lab_dir))


def unsynced(target: str | os.PathLike, lab_dir=None) -> list[dict]:
    return _control.unsynced(_where(target, lab_dir))


__all__ = ["CutReport", "FUSE_TARGETS", "Faults", "LOOP_TARGETS", "Lab", "LabError", "PAGE", "TARGET_NAMES",
           "Volume", "backing_of", "clear_faults", "cut", "default_lab_dir", "down", "inject", "leftovers", "load_state",
           "requirement", "requirements", "reset", "resolve_target", "status", "unsynced"]
