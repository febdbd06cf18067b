import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def disk_dir(tmp_path_factory) -> Path:
    """A fresh directory on the repository's filesystem: real disk, not tmpfs."""
    base = REPO / "build" / "test-scratch"
    base.mkdir(parents=True, exist_ok=True)
    import tempfile
    d = Path(tempfile.mkdtemp(dir=base))
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in Path(d).iterdir() if p.name.startswith(".fsyncstudy-"))


SHM = Path("/dev/shm")
needs_shm = pytest.mark.skipif(not (SHM.is_dir() and os.access(SHM, os.W_OK)), reason="/dev/shm is not writable here")
