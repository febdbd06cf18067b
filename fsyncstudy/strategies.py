"""The one definition of every fsync strategy: names, parsing and durability labels.

The README's strategy table is the prose form of this module; the engine in
``fsyncstudy.log`` implements exactly what is written here, and the protocol
node takes its labels from here.  Standard library only (the node imports it).

| name          | an entry is acknowledged                | the engine syncs                              | ops/sec is timed over                          | nominal loss window |
|---------------|-----------------------------------------|-----------------------------------------------|------------------------------------------------|---------------------|
| always        | after its write and its own sync return | after every write                             | first write until the last sync returns        | 0 ms                |
| batch_<N>ms   | as soon as its write() returns          | a background flusher every N ms while         | first write until the final covering sync      | N ms                |
|               |                                         | unsynced data exists (N=0: back to back);     | returns                                        |                     |
|               |                                         | one final sync covers the last entry          |                                                |                     |
| group_<N>ms   | after a sync that covers it returns     | a leader syncs for every writer waiting,      | first write until the last ack                 | 0 ms                |
|               |                                         | after waiting N ms for more to join           |                                                |                     |
| none          | as soon as its write() returns          | never                                         | first write until the last write returns       | OS dependent        |
"""
from __future__ import annotations

import re
from dataclasses import dataclass

#: Largest interval accepted for batch_<N>ms and group_<N>ms (one minute).
MAX_INTERVAL_MS = 60_000
#: Longest strategy name accepted (leading zeros are allowed, and repeated in the labels).
MAX_NAME_CHARS = 64

#: The sync methods a run can choose; fdatasync is Linux's default in PostgreSQL, etcd and Redis.
#: rwf_dsync: each write is pwritev2(RWF_DSYNC), writing and syncing its range in one call; direct_dsync:
#: the log opened O_DIRECT|O_DSYNC, written in whole aligned blocks (``fsyncstudy.writepaths``).
SYNC_METHODS = ("fdatasync", "fsync", "open_dsync", "open_sync", "rwf_dsync", "direct_dsync")
#: The methods whose every write syncs itself (no sync call follows it).
SELF_SYNCING_METHODS = ("open_dsync", "open_sync", "rwf_dsync", "direct_dsync")
#: How entries reach the kernel: a write() each (per-entry), or gathered in a user-space buffer and
#: written by the batch flusher or once the buffer is full (buffered: batch_<N>ms and none only).
WRITE_MODES = ("per-entry", "buffered")
#: How the log file is laid out before timing starts.
PREALLOCATIONS = ("append", "fallocate", "zero-fill")


class StrategyError(ValueError):
    """A strategy name that is not one of the defined strategies."""


def quote(value, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error message never echoes a huge input back."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 20] + f"... ({len(text):,} chars)"


@dataclass(frozen=True)
class Kind:
    """One row of the table above: what a kind of strategy promises.

    ``durability`` and ``data_loss_window`` are the task's labels; ``{n}`` stands for the
    interval's digits as the name spells them (``batch_010ms`` -> ``every_010ms``).
    ``window`` is the nominal loss window: ``"zero"``, ``"interval"`` (N ms) or ``"os"``
    (the kernel decides).
    """

    name: str
    acks_durable: bool        # acknowledged only after a sync covering the entry returned
    has_interval: bool        # named <kind>_<N>ms
    durability: str
    data_loss_window: str
    window: str


#: The strategy table as rows; everything below reads it instead of restating it.
KINDS = {k.name: k for k in (
    Kind("always", acks_durable=True, has_interval=False, durability="every_write", data_loss_window="0ms",
         window="zero"),
    Kind("batch", acks_durable=False, has_interval=True, durability="every_{n}ms", data_loss_window="{n}ms",
         window="interval"),
    Kind("group", acks_durable=True, has_interval=True, durability="group_commit", data_loss_window="0ms",
         window="zero"),
    Kind("none", acks_durable=False, has_interval=False, durability="os_dependent", data_loss_window="seconds",
         window="os"),
)}

# ASCII digits only, the whole name (re's $ would also match before a trailing newline)
_INTERVAL = re.compile(rf"({'|'.join(k.name for k in KINDS.values() if k.has_interval)})_([0-9]+)ms")


@dataclass(frozen=True)
class Strategy:
    """A parsed strategy name.

    ``kind`` is one of ``always``, ``batch``, ``group``, ``none``; ``interval_ms``
    is N for ``batch_<N>ms`` and ``group_<N>ms`` and None otherwise.
    """

    name: str
    kind: str
    interval_ms: int | None = None

    @property
    def row(self) -> Kind:
        return KINDS[self.kind]

    @property
    def acks_durable(self) -> bool:
        """True when an acknowledgement means a sync covering the entry has returned."""
        return self.row.acks_durable

    @property
    def durability(self) -> str:
        """The task's ``durability`` label."""
        return self.row.durability.format(n=self._digits)

    @property
    def data_loss_window(self) -> str:
        """The task's ``data_loss_window`` label: the nominal window, not a measurement."""
        return self.row.data_loss_window.format(n=self._digits)

    @property
    def nominal_loss_window_ms(self) -> float | None:
        """The promised loss window in ms; None for ``none`` (the kernel decides)."""
        return {"zero": 0.0, "interval": float(self.interval_ms or 0), "os": None}[self.row.window]

    def span_s(self, intervals: int) -> float:
        """How long ``intervals`` of this strategy's N ms last (0 without an interval): a trial of
        batch_<N>ms or group_<N>ms shorter than a few of them measures no flusher or no group."""
        return intervals * (self.interval_ms or 0) / 1000

    @property
    def _digits(self) -> str:
        # The label repeats the digits as the request spelled them (batch_010ms -> every_010ms).
        return self.name.split("_", 1)[1][:-2] if self.row.has_interval else ""


def parse(name: object) -> Strategy:
    """Parse a strategy name, or raise StrategyError saying what is accepted."""
    if not isinstance(name, str):
        raise StrategyError(f"strategy must be a string, got {type(name).__name__} {quote(name)}")
    if name in KINDS and not KINDS[name].has_interval:
        return Strategy(name, name)
    if len(name) > MAX_NAME_CHARS:
        raise StrategyError(f"strategy {quote(name)} is longer than {MAX_NAME_CHARS} characters: use always, none, "
                            f"batch_<N>ms or group_<N>ms with N an integer 0..{MAX_INTERVAL_MS}")
    m = _INTERVAL.fullmatch(name)
    if m:
        digits = m.group(2).lstrip("0") or "0"
        if len(digits) > len(str(MAX_INTERVAL_MS)) or int(digits) > MAX_INTERVAL_MS:
            raise StrategyError(f"{quote(name)}: the interval must be 0..{MAX_INTERVAL_MS} ms")
        return Strategy(name, m.group(1), int(digits))
    raise StrategyError(
        f"unknown strategy {quote(name)}: use always, none, batch_<N>ms or group_<N>ms "
        f"with N an integer 0..{MAX_INTERVAL_MS}"
    )


def check_sync_method(method: str) -> str:
    if method not in SYNC_METHODS:
        raise ValueError(f"unknown sync method {quote(method)}: use one of {', '.join(SYNC_METHODS)}")
    return method


def check_write_mode(mode: str) -> str:
    if mode not in WRITE_MODES:
        raise ValueError(f"unknown write mode {quote(mode)}: use one of {', '.join(WRITE_MODES)}")
    return mode


def check_preallocation(prealloc: str) -> str:
    if prealloc not in PREALLOCATIONS:
        raise ValueError(f"unknown preallocation {quote(prealloc)}: use one of {', '.join(PREALLOCATIONS)}")
    return prealloc
