import os
import signal
from pathlib import Path

import pytest

# A shell that starts a job in the background without job control starts it with SIGINT ignored, and
# that is inherited: Python then installs no KeyboardInterrupt handler, here or in the processes the
# tests start, and every Ctrl-C test would fail for a reason that is not the code's.  Tests of Ctrl-C
# need the default, so restore it (a caught handler is reset to the default across exec).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
