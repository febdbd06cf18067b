"""The storage lab on real loop devices, real mounts and a real FUSE filesystem.

Each test skips with the reason when the machine lacks what its target needs (root,
/dev/fuse, a mkfs tool, libfuse3, mfusepy).  Where the machine has all of it, a target
that still fails to come up is a failure, not a skip.  Every mount and loop device is
torn down by fixtures, also when a test fails, and the module checks that none leaked.
"""
import errno
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from conftest import REPO, leftovers as log_leftovers
from fsyncstudy import read_log, run_trial
from fsyncstudy.engine import SyncFailed
from fsyncstudy.lab import (TARGET_NAMES, Lab, LabError, clear_faults, cut, down, inject, leftovers, requirement,
                            requirements, reset, resolve_target, status, unsynced)
from fsyncstudy.lab import core as lab_core
from fsyncstudy.log import Framer
from fsyncstudy.targets import describe, mounts
from fsyncstudy.trial import DurabilityWarning, payload_for

LOOP = ["ext4", "ext4-journal", "xfs", "btrfs"]
FUSE = ["powercut", "hdd-emulated", "ssd-emulated"]
REQ = requirements()
# this module's own: the machine checks below look for what is mounted under it, and the other files' labs
# (build/lab-test/*) may be up at the same time (make test runs two files at a time)
LAB_BASE = REPO / "build" / "lab-test" / "lab"


def need(*targets):
    """Skip unless the machine has what these targets need."""
    missing = {t: REQ[f"lab:{t}"] for t in targets if REQ[f"lab:{t}"]}
    return pytest.mark.skipif(bool(missing), reason="; ".join(f"lab:{t}: {r}" for t, r in missing.items()))


def fresh_dir(tag: str) -> Path:
    LAB_BASE.mkdir(parents=True, exist_ok=True)
    import tempfile
    return Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=LAB_BASE))


def assert_nothing_left(d: Path):
    assert leftovers(d) == {"mounts": [], "loop_devices": [], "daemons": []}
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(d) not in mounts
    assert not any(Path("/sys/block").glob("loop*/loop/backing_file")) or all(
        str(d) not in p.read_text() for p in Path("/sys/block").glob("loop*/loop/backing_file"))


def remove(d: Path):
    """Tear down whatever is left, then delete the directory (never while anything is mounted in it)."""
    if lab_core.load_state(d) is not None:
        down(d)
    if not any(leftovers(d).values()):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def lab():
    """One lab with every target this machine can build, for the whole module."""
    d = fresh_dir("shared")
    wanted = [t for t in TARGET_NAMES if REQ[f"lab:{t}"] is None]
    lab = Lab(d, targets=wanted, seed=7)
    try:
        lab.up()
        yield lab
    finally:
        try:
            lab.down()
        finally:
            assert_nothing_left(d)
            remove(d)


def target_dir(lab, name) -> Path:
    """The target's directory; a target that should have come up and did not is a failure,
    unless the machine forbids what it needs (a container's seccomp or device rules)."""
    reason = lab.skipped().get(f"lab:{name}")
    if reason and ("not permitted" in reason or "ermission denied" in reason):
        pytest.skip(f"lab:{name}: this machine forbids it: {reason}")
    if reason:
        pytest.fail(f"lab:{name} did not come up although nothing is missing: {reason}")
    return lab.directory(name)


@pytest.fixture
def pc(lab):
    """lab:powercut, powered on, without faults, with an empty backing directory; restored after the test."""
    mp = target_dir(lab, "powercut")
    yield mp
    reset(mp)
    clear_faults(mp)
    inject(mp, sync_delay_ms=0.0, sync_delay_dist="fixed", sync_delay_spread_ms=0.0)
    for p in mp.iterdir():
        p.unlink()


# -- loop-device filesystems ---------------------------------------------------------

@pytest.mark.parametrize("name", LOOP)
def test_each_loop_filesystem_is_a_real_mount_of_its_type_on_a_loop_device(lab, name):
    if REQ[f"lab:{name}"]:
        pytest.skip(f"lab:{name}: {REQ[f'lab:{name}']}")
    d = target_dir(lab, name)
    t = describe(d)
    assert t.mount_point == str(d) and t.fstype == {"ext4-journal": "ext4"}.get(name, name)
    assert t.block_device.startswith("loop") and t.loop_backing_file.endswith(f"fsyncstudy-lab-{name}.img")
    assert t.lab_target == f"lab:{name}" and not t.emulated
    assert t.mkfs.startswith(f"mkfs.{t.fstype} ") and t.mkfs.split(";")[0].endswith(" IMAGE")  # how it was made
    assert "loop device backed by a file on the host disk" in t.label
    assert t.durability == "uncertain" and "host" in t.reason
    if name == "ext4-journal":
        assert "data=journal" in t.mount_options
    with warnings.catch_warnings():
        warnings.simplefilter("error", DurabilityWarning)
        r = run_trial("always", entries=100, directory=d, verify=True)
    assert r.verified and r.syncs == 100 and r.target_fstype == t.fstype
    assert log_leftovers(d) == []


@need(*LOOP)
def test_the_loop_filesystems_are_separate_devices(lab):
    devices = {describe(target_dir(lab, n)).block_device for n in LOOP}
    assert len(devices) == len(LOOP)


# -- the power-cut filesystem ----------------------------------------------------------

@need("powercut")
def test_a_file_written_and_synced_survives_a_power_cut_byte_for_byte(lab, pc):
    data = os.urandom(50_000)
    fd = os.open(pc / "synced", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.write(fd, b"unsynced tail")
    report = cut(pc)
    assert (lab.backing("powercut") / "synced").read_bytes() == data
    assert report["files_with_unsynced_data"] == ["/synced"]
    with pytest.raises(OSError) as e:
        os.write(fd, b"more")                 # a crashed disk: everything fails
    assert e.value.errno == errno.EIO
    os.close(fd)
    reset(pc)
    assert (pc / "synced").read_bytes() == data


@need("powercut")
def test_a_file_written_and_not_synced_is_gone_after_a_power_cut(lab, pc):
    (pc / "old").write_bytes(b"")             # a durable file whose new data is never synced
    fd = os.open(pc / "old", os.O_WRONLY)
    os.fsync(fd)
    os.write(fd, b"never synced")
    os.close(fd)
    with open(pc / "new", "wb") as f:         # a new file, neither it nor its directory synced
        f.write(b"never synced either")
    assert len(unsynced(pc)) == 2
    report = cut(pc)
    assert report["removed_unsynced_files"] == ["/new"]
    assert sorted(os.listdir(lab.backing("powercut"))) == ["old"]
    assert (lab.backing("powercut") / "old").read_bytes() == b""
    reset(pc)
    assert os.listdir(pc) == ["old"]


@need("powercut")
def test_a_torn_write_is_detected_by_the_log_reader(lab, pc):
    framer = Framer(payload_for(128))          # 144-byte records: record 28 spans offsets 4032..4176
    records = framer.frame_range(0, 29)
    for tear in (False, True):
        fd = os.open(pc / "t.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"".join(records[:28]))
        os.fdatasync(fd)
        dfd = os.open(pc, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        os.write(fd, records[28])
        report = cut(pc, tear=tear)
        scan = read_log(lab.backing("powercut") / "t.log")
        if tear:
            assert report["torn"] == {"path": "/t.log", "offset": 4032, "bytes": 144, "kept_bytes": 64,
                                      "lost_bytes": 80}
            assert scan.end == "torn" and scan.entries == 28 and scan.valid_bytes == 4032
        else:
            assert report["torn"] is None
            assert scan.end == "clean" and scan.entries == 28
        os.close(fd)
        reset(pc)
        os.unlink(pc / "t.log")


@need("powercut")
def test_injected_fsync_eio_reaches_the_writer_and_the_engine_does_not_retry(lab, pc):
    fd = os.open(pc / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.fsync(fd)
    inject(pc, fsync_eio="once")
    os.write(fd, b"lost")
    with pytest.raises(OSError) as e:
        os.fdatasync(fd)
    assert e.value.errno == errno.EIO
    os.fdatasync(fd)                          # the retry "succeeds": fsyncgate
    os.close(fd)
    cut(pc)
    assert (lab.backing("powercut") / "f").read_bytes() == bytes(4)
    reset(pc)

    inject(pc, fsync_eio="always", fsync_eio_after=1)   # the log file's preparation sync goes through
    with pytest.raises(SyncFailed) as e:
        run_trial("always", entries=50, directory=pc)
    assert e.value.errno == errno.EIO
    assert log_leftovers(pc) == []
    assert status(pc)["stats"]["failed_syncs"] >= 2


@need("powercut")
def test_injected_enospc_reaches_the_writer(lab, pc):
    inject(pc, enospc_after_bytes=1000)
    fd = os.open(pc / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    assert os.write(fd, b"a" * 600) == 600
    assert os.write(fd, b"b" * 600) == 400    # a filling disk: a short write, then ENOSPC
    with pytest.raises(OSError) as e:
        os.write(fd, b"c")
    assert e.value.errno == errno.ENOSPC
    os.close(fd)
    os.unlink(pc / "f")
    inject(pc, enospc_after_bytes=5000)
    with pytest.raises(OSError) as e:
        run_trial("always", entries=100, directory=pc)
    assert e.value.errno == errno.ENOSPC
    assert log_leftovers(pc) == []


@need("powercut")
@pytest.mark.parametrize("prealloc", ["append", "fallocate", "zero-fill"])
def test_the_log_writers_file_patterns_work_on_the_power_cut_filesystem(lab, pc, prealloc):
    for strategy in ("always", "batch_0ms", "group_0ms", "none"):
        r = run_trial(strategy, entries=300, directory=pc, prealloc=prealloc, verify=True,
                      writers=2 if strategy.startswith("group") else 1)
        assert r.verified, (strategy, r.verify_detail)
    for method in ("open_dsync", "open_sync", "fsync"):
        assert run_trial("always", entries=50, directory=pc, sync_method=method, prealloc=prealloc,
                         verify=True).verified
    assert log_leftovers(pc) == [] and unsynced(pc) == []


@need("powercut")
def test_a_trial_on_the_fuse_target_measures_its_daemons_cpu(lab, pc, disk_dir):
    # the writer sleeps in every call while the Python daemon works: its CPU is measured beside ours, so a
    # saturated daemon is called so, not "storage"
    r = run_trial("none", duration_s=0.5, directory=pc)
    assert r.daemon_cpu_share is not None and r.daemon_cpu_share > 0.05
    busy = r.cpu_share + (r.cpu_wait_share or 0)
    assert r.bound == ("cpu" if busy >= 0.8 else "fuse-daemon" if busy + r.daemon_cpu_share >= 0.8 else "storage")
    # none never syncs: the writer and the daemon between them are on a CPU nearly all the time, whatever
    # the storage under the daemon, unless other processes hold the CPUs (a busy machine: both then wait
    # to run, and only the writer's wait is measured); so at least one of three trials says so
    bounds = [r.bound] + [run_trial("none", duration_s=0.5, directory=pc).bound for _ in range(2) if r.bound == "storage"]
    assert set(bounds) & {"cpu", "fuse-daemon"}, bounds
    assert run_trial("none", duration_s=0.1, directory=disk_dir).daemon_cpu_share is None   # no daemon there
    assert log_leftovers(pc) == []


@need("powercut")
def test_many_cut_inspect_reset_cycles_on_one_mount(lab, pc):
    framer = Framer(payload_for(128))
    records = framer.frame_range(0, 200)
    backing = lab.backing("powercut") / "c.log"
    t0 = time.perf_counter()
    cycles = 40
    for i in range(cycles):
        fd = os.open(pc / "c.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        synced = 1 + i % 50
        os.write(fd, b"".join(records[:synced]))
        os.fdatasync(fd)
        os.write(fd, b"".join(records[synced:synced + 10]))
        cut(pc)
        scan = read_log(backing)
        assert scan.clean and scan.entries == synced, (i, scan)
        os.close(fd)
        reset(pc)
        os.unlink(pc / "c.log")
    per_cycle_ms = (time.perf_counter() - t0) / cycles * 1000
    print(f"\n{cycles} cut/inspect/reset cycles: {per_cycle_ms:.1f} ms each")
    assert status(pc)["generation"] >= cycles


@need("powercut")
def test_cut_and_inject_work_from_another_process(lab, pc):
    env = {**os.environ, "FSYNCSTUDY_LAB_DIR": str(lab.lab_dir)}
    fd = os.open(pc / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"x")
    run = lambda *a: subprocess.run([sys.executable, "-m", "fsyncstudy", "lab", *a], env=env, capture_output=True,
                                    text=True, timeout=60)
    p = run("inject", "lab:powercut", "--sync-delay-ms", "1.5")
    assert p.returncode == 0, p.stderr
    assert status(pc)["faults"]["sync_delay_ms"] == 1.5
    p = run("cut", "lab:powercut")
    assert p.returncode == 0 and '"cut"' in p.stdout, p.stderr
    assert status(pc)["frozen"]
    p = run("reset", "lab:powercut")
    assert p.returncode == 0 and not status(pc)["frozen"]
    os.close(fd)
    p = run("cut", str(target_dir(lab, "ext4"))) if "lab:ext4" in lab.available() else None
    if p is not None:
        assert p.returncode == 2 and "not on a lab FUSE filesystem" in p.stderr


# -- fault and latency injection -------------------------------------------------------

@need("hdd-emulated", "ssd-emulated")
def test_the_emulated_devices_sync_latency_shows_their_delay(lab):
    hdd, ssd = target_dir(lab, "hdd-emulated"), target_dir(lab, "ssd-emulated")
    r_hdd = run_trial("always", entries=40, directory=hdd)
    r_ssd = run_trial("always", entries=40, directory=ssd)
    print(f"\nsync latency p50: hdd-emulated {r_hdd.sync_latency_us_p50:.0f} us, "
          f"ssd-emulated {r_ssd.sync_latency_us_p50:.0f} us")
    assert r_hdd.sync_latency_us_p50 >= 4000           # the delay's floor: 8 ms +- 4 ms
    assert r_ssd.sync_latency_us_p50 >= 100
    assert r_hdd.sync_latency_us_p50 > r_ssd.sync_latency_us_p50 + 3000
    for d in (hdd, ssd):
        t = describe(d)
        assert t.emulated and t.label.startswith(f"{t.lab_target}: EMULATED")


@need("powercut")
def test_an_injected_fixed_delay_shows_in_measured_sync_latency(lab, pc):
    inject(pc, sync_delay_ms=20.0)
    r = run_trial("always", entries=15, directory=pc)
    assert r.sync_latency_us_p50 >= 20_000 and r.ack_latency_us_p50 >= 20_000
    inject(pc, sync_delay_ms=0.0)


# -- names, descriptions, what is missing ------------------------------------------------

@need("powercut")
def test_a_lab_name_works_wherever_a_directory_does(lab, pc):
    r = run_trial("always", entries=20, directory="lab:powercut")
    assert r.target_path == str(pc) and r.target_fstype == "fuse.fsyncstudy"
    env = {**os.environ, "FSYNCSTUDY_LAB_DIR": str(lab.lab_dir)}
    p = subprocess.run([sys.executable, "-m", "fsyncstudy", "bench", "--dir", "lab:powercut", "--entries", "50",
                        "--strategy", "always", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert '"target_fstype": "fuse.fsyncstudy"' in p.stdout
    env["FSYNCSTUDY_LAB_DIR"] = str(lab.lab_dir / "nowhere")
    p = subprocess.run([sys.executable, "-m", "fsyncstudy", "bench", "--dir", "lab:powercut", "--entries", "5"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "lab:powercut is not up" in p.stderr
    assert not Path("lab:powercut").exists()


@need("powercut")
def test_resolve_target_maps_lab_names_to_mounted_directories(lab):
    assert resolve_target("lab:powercut") == lab.directory("lab:powercut")
    assert resolve_target(lab.lab_dir) == lab.lab_dir           # a directory stays itself
    with pytest.raises(LabError, match="unknown lab target"):
        resolve_target("lab:zfs")
    state = lab_core.load_state(lab.lab_dir)
    assert "powercut" in state["targets"]


def test_resolve_target_says_how_to_bring_the_lab_up(tmp_path):
    with pytest.raises(LabError, match="lab up"):
        resolve_target("lab:xfs", lab_dir=tmp_path)


def test_a_missing_tool_skips_its_target_with_the_package_to_install(monkeypatch, tmp_path):
    if not os.path.exists("/dev/loop-control") or not lab_core._can_mount():
        pytest.skip("this machine lacks loop devices or the right to mount, which requirement() reports first")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(lab_core, "_which", lambda tool: None if tool == "mkfs.xfs" else "/bin/" + tool)
    assert requirement("lab:xfs") == "mkfs.xfs not found: install the Debian package xfsprogs"
    lab = Lab(tmp_path / "lab", targets=["xfs"]).up()   # no root needed: nothing gets built
    assert lab.available() == [] and lab.skipped() == {"lab:xfs": requirement("xfs")}
    with pytest.raises(LabError, match="xfsprogs"):
        lab.directory("lab:xfs")
    lab.down()


def test_without_root_every_target_is_skipped_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reasons = requirements()
    assert set(reasons) == {f"lab:{t}" for t in TARGET_NAMES}
    assert all("needs root" in r for r in reasons.values())


def test_without_libfuse3_the_fuse_targets_say_what_to_install(monkeypatch):
    import ctypes.util
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    if os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK):
        assert "fuse3 and libfuse3-3" in requirement("lab:powercut")


def test_the_lab_stays_off_the_nodes_start_up_path():
    code = ("import sys, fsyncstudy, fsyncstudy.node; "
            "print(sorted(m for m in sys.modules if m.startswith('fsyncstudy.lab') or m == 'mfusepy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- teardown always happens -------------------------------------------------------------

QUICK = [t for t in ("ext4", "powercut") if REQ[f"lab:{t}"] is None]
needs_quick = pytest.mark.skipif(not QUICK, reason=f"neither lab:ext4 nor lab:powercut can be built here: "
                                                   f"{REQ['lab:ext4']}; {REQ['lab:powercut']}")


@needs_quick
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_teardown_after_an_exception_or_ctrl_c_in_the_with_block(exc):
    d = fresh_dir("exc")
    try:
        with pytest.raises(exc):
            with Lab(d, targets=QUICK) as lab:
                assert lab.available() == [f"lab:{t}" for t in QUICK]
                assert any(leftovers(d).values())
                raise exc("boom")
        assert_nothing_left(d)
    finally:
        remove(d)


CHILD = """
import faulthandler, sys, time
faulthandler.enable()
from fsyncstudy.lab import Lab
with Lab(sys.argv[1], targets=sys.argv[2].split(",")) as lab:
    print("up", lab.available(), flush=True)
    # short sleeps: a signal handled just before a long sleep began would only act when it ends
    # (Python checks for signals between bytecodes, not before the sleep's system call)
    for _ in range(1200):
        time.sleep(0.1)
"""


def start_child(d: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(d), ",".join(QUICK)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith("up"), p.stderr.read()
    return p


@needs_quick
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_teardown_when_the_process_gets_ctrl_c_or_sigterm(sig):
    d = fresh_dir("sig")
    p = None
    try:
        p = start_child(d)
        assert any(leftovers(d).values())
        p.send_signal(sig)
        try:
            p.wait(timeout=90)
        except subprocess.TimeoutExpired:
            # say where it hung before failing: the child's stack (faulthandler on SIGABRT) and its output
            p.send_signal(signal.SIGABRT)
            _, err = p.communicate(timeout=30)
            pytest.fail(f"the lab did not tear down within 90 s of signal {sig}; leftovers {leftovers(d)}; "
                        f"child stderr: {err[-3000:]}")
        assert_nothing_left(d)
    finally:
        if p and p.poll() is None:
            p.kill()
        remove(d)


@needs_quick
def test_lab_down_cleans_up_after_a_crashed_run():
    d = fresh_dir("crash")
    p = None
    try:
        p = start_child(d)
        p.kill()                               # no teardown at all
        p.wait(timeout=30)
        left = leftovers(d)
        assert left["mounts"]
        with pytest.raises(LabError, match="lab down"):
            Lab(d, targets=QUICK).up()         # refuses to build over the remains
        out = subprocess.run([sys.executable, "-m", "fsyncstudy", "lab", "down", "--dir", str(d)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert_nothing_left(d)
    finally:
        if p and p.poll() is None:
            p.kill()
        remove(d)


@needs_quick
def test_a_lab_in_use_is_never_advised_down_and_never_taken_down_under_its_run():
    d = fresh_dir("inuse")
    p = None
    try:
        p = start_child(d)                     # a run with its lab up, still going
        with pytest.raises(LabError) as refused:
            Lab(d, targets=QUICK).up()
        text = str(refused.value)
        assert "in use" in text and f"pid {p.pid}" in text and "lab down" not in text
        with pytest.raises(LabError, match="in use"):
            down(d)                            # would pull the filesystem from under the run
        assert any(leftovers(d).values())      # nothing was touched
        out = subprocess.run([sys.executable, "-m", "fsyncstudy", "lab", "down", "--dir", str(d)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and "in use" in out.stderr and any(leftovers(d).values())
    finally:
        if p and p.poll() is None:
            p.terminate()
            p.wait(timeout=90)
        remove(d)


@needs_quick
def test_a_run_gets_a_lab_of_its_own_beside_one_brought_up_with_lab_up(monkeypatch):
    d = fresh_dir("shared-place")
    monkeypatch.setenv("FSYNCSTUDY_LAB_DIR", str(d))   # "the default place", where another user's lab is up
    up = subprocess.run([sys.executable, "-m", "fsyncstudy", "lab", "up", "--targets", ",".join(QUICK)],
                        capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        with pytest.raises(LabError) as refused:
            Lab(targets=QUICK).up()            # the default place is taken: said, and not advised down
        assert "brought up with `lab up`" in str(refused.value) and "lab down" not in str(refused.value)
        with Lab.for_run(targets=QUICK, parent=LAB_BASE) as a, Lab.for_run(targets=QUICK, parent=LAB_BASE) as b:
            assert a.lab_dir != b.lab_dir and a.available() == b.available() == [f"lab:{t}" for t in QUICK]
            assert d not in (a.lab_dir.parent, b.lab_dir.parent) and a.lab_dir.name.startswith(f"fsyncstudy-lab-run-{os.getpid()}-")
            mine = [a.lab_dir, b.lab_dir]
        assert not any(x.exists() for x in mine)                    # a run's lab directory goes with it
        assert lab_core.load_state(d)["targets"] and any(leftovers(d).values())   # the other lab is still up
    finally:
        subprocess.run([sys.executable, "-m", "fsyncstudy", "lab", "down", "--dir", str(d)], capture_output=True,
                       text=True, timeout=120)
        remove(d)


def on_the_machine(base: Path) -> dict[str, list[str]]:
    """Mounts, loop devices and lab FUSE daemons of labs under ``base`` (the module's shared lab left out),
    read from the machine itself: /proc/self/mountinfo, /sys/block and /proc/<pid>/cmdline."""
    prefix = str(base) + "/"

    def ours(path: str) -> bool:
        return path.startswith(prefix) and not path[len(prefix):].startswith("shared-")
    mounted = [m.mount_point for m in mounts() if ours(m.mount_point)]
    loops = [p.read_text().strip() for p in Path("/sys/block").glob("loop*/loop/backing_file")
             if ours(p.read_text().strip())]
    daemons = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = p.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "fsyncstudy.lab.fusefs" in argv and any(ours(a) for a in argv):
            daemons.append(p.parent.name)
    return {"mounts": mounted, "loop_devices": loops, "daemons": daemons}


@needs_quick   # with no lab target buildable, nothing ran that could leave anything
def test_nothing_of_the_teardown_tests_is_left_on_the_machine():
    """Runs after them (pytest keeps file order); the module's shared lab is checked at its own teardown."""
    assert on_the_machine(LAB_BASE) == {"mounts": [], "loop_devices": [], "daemons": []}


@needs_quick
def test_the_machine_check_sees_a_lab_that_is_up():
    d = fresh_dir("seen")
    try:
        with Lab(d, targets=QUICK):
            left = on_the_machine(LAB_BASE)
            assert left["mounts"] and (left["loop_devices"] or "ext4" not in QUICK) and \
                (left["daemons"] or "powercut" not in QUICK), left
        assert on_the_machine(LAB_BASE) == {"mounts": [], "loop_devices": [], "daemons": []}
    finally:
        remove(d)


# -- the lab touches only what it made -------------------------------------------------------------

def user_files(d: Path) -> dict[str, str]:
    """Files a user keeps where a lab would put its own, and their contents."""
    files = {"images/keep.img": "an image of mine", "backing/notes.txt": "my notes", "mnt/data/x": "mine",
             "run/other.pid": "1", "report.txt": "mine too"}
    for rel, text in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return files


def test_lab_down_refuses_a_directory_that_holds_no_lab(tmp_path):
    files = user_files(tmp_path)
    out = subprocess.run([sys.executable, "-m", "fsyncstudy", "lab", "down", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "holds no lab" in out.stderr and "Traceback" not in out.stderr
    assert {rel: (tmp_path / rel).read_text() for rel in files} == files
    with pytest.raises(LabError, match="holds no lab"):
        down(tmp_path)


def test_teardown_never_leaves_the_lab_directory_even_if_its_state_file_says_so(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep")
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    (lab_dir / "lab.json").write_text(json.dumps({"made": [{"path": str(victim), "what": "tree"},
                                                           {"path": str(lab_dir / ".." / "victim"), "what": "tree"},
                                                           {"path": str(lab_dir / "own"), "what": "dir"}]}))
    (lab_dir / "own").mkdir()
    down(lab_dir)
    assert (victim / "precious").read_text() == "keep" and not (lab_dir / "own").exists()


@needs_quick
def test_a_lab_in_a_directory_with_other_files_leaves_them_as_they_were():
    d = fresh_dir("userfiles")
    try:
        files = user_files(d)
        with Lab(d, targets=QUICK) as lab:
            assert lab.available() == [f"lab:{t}" for t in QUICK]
        assert {rel: (d / rel).read_text() for rel in files} == files
        assert_nothing_left(d)
        assert not (d / "lab.json").exists()
    finally:
        remove(d)


@needs_quick
def test_a_path_the_lab_would_make_that_exists_already_is_not_taken_over():
    d = fresh_dir("taken")
    try:
        name = QUICK[0]
        mine = d / ("images/fsyncstudy-lab-ext4.img" if name == "ext4" else "backing/powercut")
        mine.parent.mkdir(parents=True)
        (mine.write_text("mine") if name == "ext4" else mine.mkdir())
        with Lab(d, targets=[name]) as lab:
            assert lab.available() == [] and "exists already" in lab.skipped()[f"lab:{name}"]
        assert mine.exists() and (mine.read_text() == "mine" if name == "ext4" else mine.is_dir())
    finally:
        remove(d)


# -- open-loop load on an emulated disk --------------------------------------------------------------

@need("hdd-emulated")
def test_coordinated_omission_is_caught_on_the_emulated_disk(lab):
    from fsyncstudy.load import run_load_trial
    d = target_dir(lab, "hdd-emulated")   # syncs of 4-12 ms: always sustains about 120 entries/s
    seen = []
    over = run_load_trial("always", 300, duration_s=1.0, directory=d, on_timeline=seen.append)
    tl = seen[0]
    lat = [(a - i) / 1e6 for a, i in zip(tl.acks, tl.intended)]
    svc = [(a - s) / 1e6 for a, s in zip(tl.acks, tl.started)]
    third = len(lat) // 3
    # above capacity the wait from arrival grows through the trial, while each write + sync takes the same
    assert statistics.median(lat[-third:]) > 3 * statistics.median(lat[:third]), (lat[:5], lat[-5:])
    assert 3 <= statistics.median(svc) <= 20 and over.saturated and over.unserved > 0
    # at a fifth of capacity, latency from arrival stays near the service time
    light = run_load_trial("always", 24, duration_s=1.5, directory=d)
    assert not light.saturated
    assert light.latency_us_p50 <= 1.5 * light.service_us_p50 + 1000, (light.latency_us_p50, light.service_us_p50)
