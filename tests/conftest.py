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

# ``make test`` runs the test files two at a time (pytest-xdist, ``--dist loadfile``): each worker brings up
# its storage labs in a directory of its own, so that one worker's ``lab up``/``lab down`` never meets the
# other's (each run's lab is its own already; a lab brought up by name lives in the lab directory)
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    os.environ["FSYNCSTUDY_LAB_DIR"] = f"{os.environ.get('FSYNCSTUDY_LAB_DIR') or '/var/tmp/fsyncstudy-lab'}-{_WORKER}"


def _scratch_base() -> Path:
    """Where the tests' disk directories go: ``$FSYNCSTUDY_TEST_DIR``, else /var/tmp, else the
    repository's build/ (the first that is on disk, not tmpfs).  Outside the clone by default: a clone
    may sit in a directory closed to other users (mode 0700, as a home often is), and the database
    servers the tests start run as their own users.  Each session makes its own directory there
    (``fsyncstudy-tests-<pid>-*``, opened to other users) and removes it; one a killed session left
    (its pid gone) is removed by the next."""
    import shutil
    import tempfile

    from fsyncstudy.targets import describe
    given = os.environ.get("FSYNCSTUDY_TEST_DIR")
    for parent in ([Path(given)] if given else [Path("/var/tmp"), REPO / "build"]):
        try:
            parent.mkdir(parents=True, exist_ok=True)
            if not os.access(parent, os.W_OK | os.X_OK) or describe(parent).durability == "volatile":
                continue
        except OSError:
            continue
        for old in parent.glob("fsyncstudy-tests-*-*"):
            pid = old.name.split("-")[2]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(old, ignore_errors=True)
        base = Path(tempfile.mkdtemp(prefix=f"fsyncstudy-tests-{os.getpid()}-", dir=parent))
        base.chmod(0o755)
        return base
    raise RuntimeError(f"no directory on disk for the tests: set FSYNCSTUDY_TEST_DIR (tried {given or '/var/tmp, build/'})")


@pytest.fixture(scope="session")
def scratch_base():
    import shutil
    base = _scratch_base()
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def disk_dir(scratch_base) -> Path:
    """A fresh directory on disk (not tmpfs), outside the clone (see ``_scratch_base``)."""
    import tempfile
    d = Path(tempfile.mkdtemp(dir=scratch_base))
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


@pytest.fixture
def neighbour(scratch_base):
    """Another process writing 4 KiB and calling fdatasync, flat out, on the scratch directory's
    filesystem for the test's duration (``fsyncstudy.lab.neighbour``)."""
    from fsyncstudy.lab.neighbour import Neighbour
    with Neighbour(scratch_base) as n:
        yield n


@pytest.fixture(scope="session", autouse=True)
def neighbour_for_the_session(scratch_base):
    """``make test NEIGHBOUR=1`` (FSYNCSTUDY_TEST_NEIGHBOUR=1): a neighbour syncing on the tests' disk
    throughout, as on a machine that is not idle."""
    if os.environ.get("FSYNCSTUDY_TEST_NEIGHBOUR", "") in ("", "0"):
        yield None
        return
    from fsyncstudy.lab.neighbour import Neighbour
    with Neighbour(scratch_base) as n:
        yield n


def past_a_burst(run, ok, attempts: int = 3):
    """``run()`` until ``ok`` holds of its result, at most ``attempts`` times; the last result.  For a check
    that reads the shared disk's speed or its device-wide counters: a burst of other work (``make test`` runs
    two test files at a time) is run past, while a real fault fails every attempt."""
    for _ in range(attempts):
        got = run()
        if ok(got):
            break
    return got


def written_before_the_write_paths(pattern: str) -> list[Path]:
    """The committed datasets matching ``pattern`` (under data/) whose table has no write-path column."""
    from fsyncstudy import dataset
    return [d for d in sorted((REPO / "data").glob(pattern))
            if "write_mode" not in [c for c, _ in dataset.read_meta(d, formats=(2, dataset.FORMAT))["columns"]]]


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in Path(d).iterdir() if p.name.startswith(".fsyncstudy-"))


SHM = Path("/dev/shm")
needs_shm = pytest.mark.skipif(not (SHM.is_dir() and os.access(SHM, os.W_OK)), reason="/dev/shm is not writable here")


class Ran:
    """What a command printed and returned, as ``subprocess.run`` gives it."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_here(*args) -> Ran:
    """``python -m fsyncstudy ARGS`` in this process (``cli.main``, which is what that command runs), with
    its output captured: for refusals, where a subprocess would spend a second on imports for each case.
    SIGTERM's handler is put back as it was (the command installs its own)."""
    import contextlib
    import io
    import signal

    from fsyncstudy.cli import main
    out, err, handler = io.StringIO(), io.StringIO(), signal.getsignal(signal.SIGTERM)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        signal.signal(signal.SIGTERM, handler)
    return Ran(rc, out.getvalue(), err.getvalue())


#: The files that take longest (``--durations``, 2026-12-07), collected first: ``make test`` hands whole files
#: to its two workers in collection order, and a long file handed out last runs alone at the end.
_LONGEST_FIRST = ("test_report.py", "test_sweep.py", "test_realdb.py", "test_lab.py", "test_peers.py", "test_cli.py",
                  "test_fleet.py", "test_trial.py", "test_node_fuzz.py", "test_answer.py", "test_load.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: each file's tests keep their order
