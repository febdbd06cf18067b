"""diskcheck: an observer and a writer in two processes on loopback, a SIGKILL standing in for the pulled
plug; what serve does with bad input; and the lab run, which must catch lab:liar and clear lab:powercut."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from fsyncstudy import dataset
from fsyncstudy.diskcheck import (ACK, ACK_FRAME, HEADER, HELLO_FRAME, MAGIC, MAX_CONNECTIONS, KIND, frame,
                                  verify)

ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}


def start_serve(out: Path):
    """``diskcheck serve`` on an ephemeral loopback port: (process, port)."""
    p = subprocess.Popen([sys.executable, "-m", "fsyncstudy", "diskcheck", "serve", "--listen", "127.0.0.1:0",
                          "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True)
    line = p.stderr.readline()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not m:
        p.kill()
        pytest.fail(f"serve did not start: {line}{p.stderr.read()}")
    return p, int(m.group(1))


def stop_serve(p) -> str:
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    return err


def ack_rows(out: Path) -> list[dict]:
    try:
        return [r for r in dataset.read_rows(out / "acks.csv") if r["event"] == "ack"]
    except FileNotFoundError:
        return []


def wait_for(cond, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_killed_writer_s_acknowledged_records_are_all_found_across_two_processes(disk_dir, tmp_path):
    out = tmp_path / "acks"
    serve, port = start_serve(out)
    try:
        writer = subprocess.Popen([sys.executable, "-m", "fsyncstudy", "diskcheck", "write", "--to",
                                   f"127.0.0.1:{port}", "--target", str(disk_dir), "--strategy", "always"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        try:
            wait_for(lambda: len(ack_rows(out)) >= 20)
        finally:
            writer.send_signal(signal.SIGKILL)   # the pulled plug (the page cache survives: no loss expected)
            writer.wait()
        time.sleep(0.2)                          # what was in flight reaches the observer
    finally:
        err = stop_serve(serve)
    assert "ended" in err and "Traceback" not in err
    acked = max(int(r["acked"]) for r in ack_rows(out))
    v = verify(disk_dir, out)
    assert v.pulls == 1 and v.acked == acked >= 20
    [s] = v.sessions
    assert s.recovered >= acked and s.lost == 0
    assert v.text.startswith("kept every acknowledged record in 1 pull")
    assert dataset.check(out, KIND).ok and dataset.read_meta(out)["runs"]   # a dataset, its run recorded

    # a log that lost its tail since is caught: the records, how many, how old
    log = Path(s.log)
    data = log.read_bytes()
    log.write_bytes(data[:len(data) // 2])
    lost = verify(disk_dir, out)
    assert lost.lost == acked - lost.sessions[0].recovered > 0
    assert lost.newest_lost_age_ms is not None and lost.newest_lost_age_ms >= 0
    assert "acknowledges flushes it does not keep" in lost.text
    log.unlink()


def closed_by_server(s: socket.socket) -> bool:
    """Whether the server closed the connection (an unread remainder makes that a reset)."""
    s.settimeout(10)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_serve_refuses_bad_input_with_a_line_each_and_keeps_serving_in_bounded_memory(disk_dir, tmp_path):
    out = tmp_path / "acks"
    serve, port = start_serve(out)
    addr = ("127.0.0.1", port)
    try:
        rss0 = rss_kib(serve.pid)
        with socket.create_connection(addr) as s:            # another protocol
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert closed_by_server(s)
        with socket.create_connection(addr) as s:            # a 1 GB frame announced, then data
            s.sendall(HEADER.pack(MAGIC, ACK_FRAME, 1 << 30) + b"\0" * 65536)
            assert closed_by_server(s)
        with socket.create_connection(addr) as s:            # half a frame, then the end
            s.sendall(frame(HELLO_FRAME, b'{"session": "x"}')[:7])
        with socket.create_connection(addr) as s:            # an acknowledgement before HELLO
            s.sendall(frame(ACK_FRAME, ACK.pack(5, 0)))
            assert closed_by_server(s)
        flood = [socket.create_connection(addr) for _ in range(MAX_CONNECTIONS + 10)]
        time.sleep(0.3)
        for s in flood:
            s.close()
        time.sleep(0.2)
        # still serving: a writer's session goes through
        subprocess.run([sys.executable, "-m", "fsyncstudy", "diskcheck", "write", "--to", f"127.0.0.1:{port}",
                        "--target", str(disk_dir), "--duration", "0.3"], env=ENV, check=True,
                       stdout=subprocess.DEVNULL, timeout=60)
        assert serve.poll() is None
        assert rss_kib(serve.pid) - rss0 < 16 * 1024          # nothing of the gigabyte was held
    finally:
        err = stop_serve(serve)
    assert "Traceback" not in err
    refusals = [line for line in err.splitlines() if "refused" in line]
    assert sum("not a diskcheck frame" in line for line in refusals) == 1
    assert sum("1,073,741,824 bytes announced" in line for line in refusals) == 1
    assert sum("closed mid-frame (7 bytes" in line for line in refusals) == 1
    assert sum("before HELLO" in line for line in refusals) == 1
    assert sum(f"{MAX_CONNECTIONS} connections are open already" in line for line in refusals) >= 10
    v = verify(disk_dir, out)
    assert v.pulls == 1 and v.acked > 0 and v.lost == 0
    for p in disk_dir.glob("diskcheck-*.log"):
        p.unlink()


def test_write_refuses_a_strategy_that_acknowledges_before_a_sync(disk_dir):
    p = subprocess.run([sys.executable, "-m", "fsyncstudy", "diskcheck", "write", "--to", "127.0.0.1:1",
                        "--target", str(disk_dir), "--strategy", "batch_10ms"], env=ENV, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "acknowledges before a sync" in p.stderr and "Traceback" not in p.stderr


# -- on one machine, with the lab's power switch ----------------------------------------------------

from fsyncstudy.lab import requirement  # noqa: E402

NEEDS = {t: requirement(t) for t in ("powercut", "liar")}


@pytest.mark.skipif(any(NEEDS.values()), reason=str(NEEDS))
def test_the_lab_run_clears_powercut_and_catches_the_liar_in_every_cut(tmp_path, monkeypatch):
    from fsyncstudy.diskcheck import recorded, run_lab
    monkeypatch.setenv("FSYNCSTUDY_LAB_DIR", str(REPO / "build" / "lab-test" / "diskcheck"))
    res = run_lab(2, tmp_path / "acks", seed=3)
    pc, liar = res.verdicts["lab:powercut"], res.verdicts["lab:liar"]
    assert pc.pulls == 2 and pc.acked > 0 and pc.lost == 0
    assert pc.zero_loss_upper == pytest.approx(1 - 0.05 ** 0.5)
    assert liar.pulls == 2 and liar.pulls_losing == 2 and 0 < liar.lost <= liar.acked
    assert all(c["lied_syncs"] > 0 for c in res.cuts["lab:liar"])
    # ages on the writer's clock, to when the cut returned: the newest lost was sent before the cut
    assert all(c.reference == "cut" and 0 <= c.newest_lost_age_ms <= c.oldest_lost_age_ms for c in liar.sessions)
    assert "acknowledges flushes it does not keep" in liar.text and pc.text.startswith("kept every")
    # the run's verdicts are in its dataset, readable once the lab and its logs are gone
    assert {t: v.as_dict() for t, v in recorded(tmp_path / "acks").items()} == \
        {t: v.as_dict() for t, v in res.verdicts.items()}


def test_refusals_are_one_line_with_rc_2_and_a_taken_address_leaves_no_dataset(tmp_path, disk_dir):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "fsyncstudy", "diskcheck", *args], env=ENV, capture_output=True,
                              text=True, timeout=60)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cases = {("serve", "--listen", f"127.0.0.1:{port}", "--out", str(tmp_path / "a")): "cannot listen on",
                 ("verify", "--target", str(disk_dir), "--acks", str(tmp_path / "none")): "does not exist",
                 (): "needs serve, write or verify, or --lab"}
        for args, said in cases.items():
            p = run(*args)
            assert p.returncode == 2 and said in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = run("write", "--to", f"127.0.0.1:{port}", "--target", str(disk_dir), "--duration", "1")
    assert p.returncode == 2 and "cannot reach the observer" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "a").exists() and not list(disk_dir.iterdir())
