"""Where to write: a path or a storage-lab name (``lab:<name>``) resolved to a directory, the
directory a run uses when the user names none, and the study's default targets.

Standard library only (the protocol node picks its directory here).  The lab is imported only
when a ``lab:`` name is asked for, so the node's start-up never imports it.
"""
from __future__ import annotations

import os
from pathlib import Path

from .targets import describe

#: The repository a development checkout runs from: the committed reference datasets live in its
#: data/; a user's own runs go to runs/ (ignored by git, so measuring never turns the checkout dirty,
#: and kept by ``make clean``), and the notebooks' own measurements to build/.
REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
RUNS = REPO / "runs"
BUILD = REPO / "build"


def resolve_directory(d: str | os.PathLike) -> Path:
    """A directory, or a storage-lab target (``lab:<name>``) resolved to its mount point.  An empty
    name (or only spaces) is refused: it names no directory, and must not measure the current one."""
    s = os.fspath(d)
    if not s.strip():
        raise ValueError(f"the target {s!r} is empty: name a directory or lab:NAME")
    if s.startswith("lab:"):
        from .lab import resolve_target  # only for lab names: the node's start-up never imports the lab
        return resolve_target(s)
    return Path(s)


def resolve_all(names: list[str]) -> list[str]:
    """Directories for target names: paths must exist and are made absolute, ``lab:NAME`` goes
    through the storage lab."""
    out = []
    for t in names:
        d = resolve_directory(t)
        if t.startswith("lab:"):
            out.append(str(d))
        else:
            p = d.expanduser()
            if not p.is_dir():
                raise FileNotFoundError(f"target {t} is not a directory")
            out.append(str(p.resolve()))
    return out


def default_targets() -> list[str]:
    """The filesystem that holds the checkout (its runs/ directory), and /dev/shm as the volatile
    reference."""
    RUNS.mkdir(parents=True, exist_ok=True)
    out = [str(RUNS)]
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        out.append("/dev/shm")
    return out


def _writable_dir(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return d.is_dir() and os.access(d, os.W_OK | os.X_OK)


def pick_directory(explicit: str | os.PathLike | None = None, log=None) -> Path:
    """Where to write logs when the user did not say: durable storage that we can write.

    Order: ``explicit``, then ``$FSYNCSTUDY_DIR`` (either may be a lab target, ``lab:<name>``;
    either must be an existing directory: a typo must not measure another disk; an empty ``explicit``
    is refused, an empty ``$FSYNCSTUDY_DIR`` counts as unset), then the
    user's cache directory (created if need be), the current directory and /var/tmp, skipping
    any that is volatile (tmpfs) or not writable; last the temp directory, with a warning
    through ``log`` (a callable).
    """
    for given, origin in ((explicit, "--dir"), (os.environ.get("FSYNCSTUDY_DIR") or None, "FSYNCSTUDY_DIR")):
        if given is not None:   # an empty --dir is refused, not taken for "none given"
            d = resolve_directory(given)
            if not d.is_dir():
                raise FileNotFoundError(f"{origin} {d} does not exist (or is not a directory): create it, or "
                                        "name one that exists")
            if not os.access(d, os.W_OK | os.X_OK):
                raise PermissionError(f"{origin} {d} is not a directory we can write")
            return d
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fsyncstudy"
    for d in (cache, Path.cwd(), Path("/var/tmp")):
        try:
            if _writable_dir(d) and describe(d).durability != "volatile":
                return d
        except OSError:
            continue
    import tempfile  # only for this last resort: it is not on the node's usual start-up path
    d = Path(tempfile.gettempdir())
    if log:
        log(f"warning: no durable writable directory found; writing to {d} ({describe(d).fstype})")
    return d
