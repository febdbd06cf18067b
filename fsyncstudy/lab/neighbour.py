"""A neighbour: another process writing and syncing on the same filesystem, as on a machine that
is not idle (another database, another run of the study, a fuzzer's corpus).

A user's machine is rarely idle, so what the study and its tests check must hold with one:

    from fsyncstudy.lab.neighbour import Neighbour
    with Neighbour("/srv/data") as n:      # a 4 KiB write and an fdatasync, again and again
        ...                                 # n.syncs(): how many it has done so far

The neighbour is a child process (``python -m fsyncstudy.lab.neighbour DIR``) that the kernel kills
when its parent dies, so it is never left running; its file, ``.fsyncstudy-neighbour-<pid>``, is
removed when it stops.  ``make test NEIGHBOUR=1`` runs one beside the whole test suite.
Standard library only; needs no root.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PREFIX = ".fsyncstudy-neighbour-"
#: A write of this many bytes, then an fdatasync; the file starts over every ROLL writes.
WRITE_BYTES, ROLL = 4096, 4096


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG


class Neighbour:
    """Another process that writes ``WRITE_BYTES`` and calls fdatasync in ``directory``, flat out or
    every ``interval_ms``, until the ``with`` block ends."""

    def __init__(self, directory: str | os.PathLike, interval_ms: float = 0.0):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"the neighbour's directory {self.directory} does not exist")
        if not interval_ms >= 0:
            raise ValueError(f"interval_ms must be 0 or more, got {interval_ms!r}")
        self.interval_ms = interval_ms
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Neighbour":
        r, w = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-m", "fsyncstudy.lab.neighbour", str(self.directory),
                                      str(self.interval_ms), str(w)], pass_fds=(w,), preexec_fn=_die_with_parent,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        os.close(w)
        self._counter = os.fdopen(r, "rb", buffering=0)
        first = self._counter.read(1)   # it has opened its file and synced once
        if not first:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the neighbour in {self.directory} stopped before its first sync "
                               f"(exit {self.proc.wait()})")
        self._seen = 1
        return self

    def syncs(self) -> int:
        """Syncs the neighbour reported so far (it reports one byte every 64 after the first)."""
        os.set_blocking(self._counter.fileno(), False)
        try:
            got = self._counter.read()
        finally:
            os.set_blocking(self._counter.fileno(), True)
        self._seen += 64 * len(got or b"")
        return self._seen

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_counter", None) is not None:
            self._counter.close()
        if self.proc is not None:
            (self.directory / f"{PREFIX}{self.proc.pid}").unlink(missing_ok=True)   # if it was killed


def _main(directory: str, interval_ms: str, report_fd: str) -> None:  # pragma: no cover - the child
    path = Path(directory) / f"{PREFIX}{os.getpid()}"
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the terminal's Ctrl-C is for the parent, which stops us
    pause = float(interval_ms) / 1e3
    out = int(report_fd)
    os.set_blocking(out, False)   # a parent that does not read never stops us
    buf = os.urandom(WRITE_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        n = 0
        while not stop:
            if n and n % ROLL == 0:
                os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, buf)
            os.fdatasync(fd)
            n += 1
            if n == 1 or n % 64 == 0:
                try:
                    os.write(out, b".")
                except OSError:   # full (the parent reads when it asks) or closed
                    pass
            if pause:
                time.sleep(pause)   # the neighbour's own pace, not a stand-in for our I/O
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


if __name__ == "__main__":  # pragma: no cover
    _main(*sys.argv[1:4])
