"""Describing real mounts: the repository's filesystem and /dev/shm."""
import json
import os
import subprocess
import sys

import pytest

from fsyncstudy.places import pick_directory
from fsyncstudy.targets import describe, discover, mount_of
from conftest import REPO, SHM, needs_shm


def df_fstype(path) -> str:
    return subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True).stdout.split()[-1]


def test_the_repository_filesystem_is_described_like_df_sees_it():
    t = describe(REPO)
    assert t.fstype == df_fstype(REPO)
    assert t.mount_point == mount_of(REPO).mount_point and os.path.ismount(t.mount_point)
    assert t.free_bytes and t.free_bytes > 0
    assert t.durability in ("durable", "uncertain") and t.reason
    if t.block_device:
        assert os.path.exists(f"/sys/class/block/{t.block_device}")
        assert t.rotational in (True, False)


@needs_shm
def test_tmpfs_is_volatile_with_its_reason():
    t = describe(SHM)
    assert (t.fstype, t.durability) == ("tmpfs", "volatile")
    assert "no-op" in t.reason and not t.can_be_durable


def test_a_path_inside_a_mount_and_a_file_to_be_created_are_described(tmp_path):
    assert describe(tmp_path / "not-yet.log").mount_point == describe(tmp_path).mount_point


def test_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        describe(tmp_path / "a" / "b")


def test_discover_lists_writable_filesystems_and_not_pseudo_ones():
    found = {t.mount_point: t for t in discover()}
    assert "/" in found
    assert not any(mp.startswith(("/proc", "/sys")) for mp in found)
    if SHM.is_dir():
        assert found["/dev/shm"].durability == "volatile"


def test_devices_command_prints_json_and_a_table():
    p = subprocess.run([sys.executable, "-m", "fsyncstudy", "devices", "--json"], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    doc = json.loads(p.stdout)
    rows = doc["devices"]
    assert doc["fsyncstudy"]["host"] and doc["fsyncstudy"]["kernel"]
    assert any(r["mount_point"] == "/" for r in rows)
    assert {"fstype", "rotational", "write_cache", "model", "free_bytes", "durability", "reason", "fua", "virtual",
            "sync_probe_ms", "plausibility"} <= rows[0].keys()
    root = next(r for r in rows if r["mount_point"] == "/")
    if root["block_device"] and not root["loop_backing_file"]:      # a disk: its sync was measured and weighed
        assert root["sync_probe_ms"] > 0 and root["advice"][0] == root["plausibility"]
        if root["block_device"].startswith("vd"):                   # this CI machine's virtio disk
            assert root["virtual"] == "virtio" and root["plausibility"].startswith(LIKELY_CACHE)
    p = subprocess.run([sys.executable, "-m", "fsyncstudy", "devices"], capture_output=True, text=True, cwd=REPO,
                       timeout=60)
    assert "verdict" in p.stdout and p.returncode == 0


@needs_shm
def test_the_default_directory_is_never_tmpfs_when_a_disk_is_writable(monkeypatch, tmp_path):
    monkeypatch.delenv("FSYNCSTUDY_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(SHM / f"fsyncstudy-test-{os.getpid()}"))
    monkeypatch.chdir(REPO)
    try:
        d = pick_directory()
        assert describe(d).durability != "volatile"
    finally:
        import shutil
        shutil.rmtree(SHM / f"fsyncstudy-test-{os.getpid()}", ignore_errors=True)


def test_explicit_and_environment_directories_win(monkeypatch, tmp_path):
    (tmp_path / "env").mkdir()
    (tmp_path / "flag").mkdir()
    monkeypatch.setenv("FSYNCSTUDY_DIR", str(tmp_path / "env"))
    assert pick_directory() == tmp_path / "env"
    assert pick_directory(tmp_path / "flag") == tmp_path / "flag"


def test_a_named_directory_that_does_not_exist_is_an_error_not_created(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pick_directory(tmp_path / "typo")
    monkeypatch.setenv("FSYNCSTUDY_DIR", str(tmp_path / "typo-env"))
    with pytest.raises(FileNotFoundError, match="FSYNCSTUDY_DIR .* does not exist"):
        pick_directory()
    assert list(tmp_path.iterdir()) == []


def test_advice_names_what_changes_results_and_can_be_changed():
    from fsyncstudy.targets import Target, advice, machine_advice
    t = Target(path="/d", fstype="ext4", mount_point="/d", mount_options="rw,nobarrier,commit=60,data=journal",
               source="/dev/vdb", block_device="vdb", write_cache="write back", scheduler="mq-deadline")
    text = " | ".join(advice(t))
    assert "I/O scheduler mq-deadline" in text and "commit=60 s, data=journal" in text
    assert "without barriers" in text and "hypervisor's cache mode" in text
    assert advice(Target(path="/m", fstype="tmpfs", mount_point="/m", mount_options="rw", source="tmpfs")) == []
    m = " | ".join(machine_advice())
    assert "CPU frequency governor" in m and "vm.dirty_expire_centisecs" in m


def test_devices_json_carries_the_advice():
    p = subprocess.run([sys.executable, "-m", "fsyncstudy", "devices", "--json"], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    doc = json.loads(p.stdout)
    root = next(d for d in doc["devices"] if d["mount_point"] == "/")
    assert isinstance(root["advice"], list) and doc["machine_advice"]
    if root["fstype"] == "ext4":
        assert any("commit=" in a for a in root["advice"])


# -- is a cache between us and the media likely ------------------------------------------------------

from dataclasses import replace  # noqa: E402

from fsyncstudy import targets  # noqa: E402
from fsyncstudy.targets import LIKELY_CACHE, NO_SIGN_OF_CACHE, Target, plausibility  # noqa: E402

SPINNING = Target(path="/d", fstype="ext4", mount_point="/d", mount_options="rw", source="/dev/sda1",
                  block_device="sda1", rotational=True, write_cache="write back", fua=False)


def test_a_rotational_disk_syncing_in_under_a_millisecond_has_a_cache_in_front_of_it():
    fast = plausibility(SPINNING, 125e-6)
    assert fast.startswith(LIKELY_CACHE) and "rotational, yet a sync took 0.125 ms" in fast
    slow = plausibility(SPINNING, 8.2e-3)
    assert slow.startswith(NO_SIGN_OF_CACHE) and "a sync took 8.2 ms" in slow and "diskcheck" in slow
    assert plausibility(SPINNING).startswith(NO_SIGN_OF_CACHE)           # no latency: the class says nothing
    assert plausibility(replace(SPINNING, rotational=False), 50e-6).startswith(NO_SIGN_OF_CACHE)  # an SSD may


def test_the_class_alone_makes_a_cache_likely_for_virtual_disks_ram_fuse_loop_and_no_barriers():
    cases = {"a virtual disk (/dev/vda, virtio)": replace(SPINNING, block_device="vda", virtual="virtio"),
             "no media below it": replace(SPINNING, fstype="tmpfs", block_device=None),
             "its daemon": replace(SPINNING, fstype="fuse.sshfs", block_device=None),
             "a loop device": replace(SPINNING, block_device="loop3", loop_backing_file="/var/img"),
             "without barriers": replace(SPINNING, mount_options="rw,nobarrier")}
    for evidence, t in cases.items():
        verdict = plausibility(t, 9e-3)
        assert verdict.startswith(LIKELY_CACHE) and evidence in verdict, verdict
    # the CI machine's disk, as the issue found it: both pieces of evidence, in one line
    ci = plausibility(replace(SPINNING, block_device="vda", virtual="virtio"), 125e-6)
    assert "virtual disk" in ci and "rotational, yet" in ci


def test_describe_never_measures_but_weighs_a_latency_measured_in_this_process(disk_dir, monkeypatch):
    monkeypatch.setattr(targets, "_SYNC_S", {})
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd)))
    t = describe(disk_dir)
    assert calls == [] and t.sync_probe_ms is None and t.plausibility == plausibility(t)
    s = targets.probe_sync_s(disk_dir)
    assert len(calls) == 8 and not list(disk_dir.iterdir())              # the probe's file is gone
    t = describe(disk_dir)
    assert t.sync_probe_ms == round(s * 1e3, 4) and t.plausibility == plausibility(t, s)
    if t.block_device:
        assert f"a sync took {s * 1e3:.3g} ms" in t.plausibility or "rotational, yet" in t.plausibility \
            or t.plausibility.startswith(LIKELY_CACHE)


def test_a_target_description_stored_before_the_new_fields_still_loads():
    old = {k: v for k, v in describe(REPO).as_dict().items()
           if k not in ("fua", "virtual", "sync_probe_ms", "plausibility")}
    t = Target(**old)
    assert t.plausibility == "" and t.sync_probe_ms is None
