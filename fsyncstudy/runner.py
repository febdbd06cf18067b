"""The one loop that fills a dataset, and the one summary of what it did.

Every study (the sweep, the crash experiment, the load study, the peers comparison, the real databases
and their power cuts, and the fleet's sweep and load study) opens its dataset, works out what is still to do, and hands the runner that list with a
function that runs one unit and returns its row::

    summary = runner.Summary(out=ds.path, planned=len(todo) + len(done), skipped=len(done))
    runner.fill(ds, summary, todo, run_one, label="quick load study", unit="trial",
                postfix=lambda item: ..., session=(key, open))

The runner never imports a study: it appends each row durably, counts what failed and why, shows
progress, turns Ctrl-C into a recorded, resumable stop, and can share one context between the units
that belong together (``session``: a fresh worker process for each round of the sweep, one database
for the cuts under one setting).  Where the units run is an executor's business: here, in order
(``in_process``), or on the hosts of a Dask cluster (``fleet.py``'s, which yields rows as they finish).
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generator, Iterable

from . import dataset


@dataclass
class Summary:
    """What a run of a study did, in one vocabulary for every study: ``planned`` units, ``skipped``
    (done by an earlier run), ``ran`` now, of which ``failed`` (``errors``: each error text, counted);
    ``lost_by_durable``: units where a strategy or setting durable at its acknowledgement lost one
    (a bug, or a disk that does not keep its promise); ``missing``: what could not run here, and why."""

    out: Path
    planned: int
    skipped: int
    ran: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    retried: int = 0                 # units whose earlier row said they failed, run again
    lost_by_durable: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0

    def count(self, ok: bool, error: str = "") -> None:
        """One more unit run, and its error if it failed."""
        self.ran += 1
        if not ok:
            self.failed += 1
            text = error or "failed (no error text)"
            self.errors[text] = self.errors.get(text, 0) + 1


def status_ok(row: dict) -> bool:
    """A row with a ``status`` column counts when it is "ok"."""
    return row["status"] == "ok"


def error_empty(row: dict) -> bool:
    """A row with only an ``error`` column counts when it is empty."""
    return row["error"] == ""


def in_process(run_one: Callable, session: tuple[Callable, Callable] | None = None) -> Callable:
    """The executor that runs each unit here, in order: ``run_one(item, context)``.  ``session`` =
    (key, open): consecutive items with the same ``key(item)`` share the context ``open(items)`` makes
    (a context manager: the sweep's worker process for a round, a database for a setting's cuts),
    closed before the next group starts; without it the context is None."""
    def execute(todo: list, starting: Callable) -> Generator[tuple[object, object], None, None]:
        groups: Iterable = itertools.groupby(todo, key=session[0]) if session else [(None, iter(todo))]
        for _, items in groups:
            items = list(items)
            with (session[1](items) if session else contextlib.nullcontext()) as context:
                for item in items:
                    starting(item)
                    yield item, run_one(item, context)
    return execute


def fill(ds: dataset.Dataset, summary: Summary, todo: list, run_one: Callable | None = None, *, label: str,
         unit: str, progress: bool = True, postfix: Callable | None = None, ok: Callable = status_ok,
         session: tuple[Callable, Callable] | None = None, after: Callable | None = None,
         execute: Callable | None = None) -> Summary:
    """Run each item of ``todo`` and append the row it gives to ``ds`` (``ok(row)``: whether it counts;
    a row that does not is run again on resume, and stays as history; a unit may give a list of rows,
    which counts as one unit, failed if any row is).  The units run in ``execute(todo, starting)``, an
    generator of (item, row) as they finish: by default ``in_process(run_one, session)``; the fleet's runs
    them on Dask workers (``fleet.py``).  ``after(item, row, summary)`` sees each row once it is recorded.
    Ctrl-C stops the loop, the dataset records the run, and KeyboardInterrupt is raised again with a
    message that says the same command resumes."""
    execute = execute or in_process(run_one, session)
    with dataset.filling(ds, summary, len(todo), label, unit, progress) as bar:
        def starting(item) -> None:
            if postfix is not None:
                bar.set_postfix_str(postfix(item))
        results = execute(todo, starting)
        try:
            for item, got in results:
                rows = got if isinstance(got, list) else [got]
                good = [ok(row) for row in rows]
                for row, g in zip(rows, good):
                    ds.append(row, ok=g)
                bad = [row for row, g in zip(rows, good) if not g]
                summary.count(not bad, str(bad[0].get("error") or "") if bad else "")
                if after is not None:
                    for row in rows:
                        after(item, row, summary)
                bar.update(1)
        finally:
            results.close()   # the executor's contexts (a worker, a database, Dask futures) end here, Ctrl-C or not
    if summary.interrupted:
        raise KeyboardInterrupt(f"{label} interrupted after {summary.ran} new {unit}s; "
                                f"{ds.path / ds.meta['table']} keeps every finished one and the same command resumes")
    return summary
