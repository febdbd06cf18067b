"""The report: every notebook executed with papermill on one dataset, rendered with
nbconvert (input hidden) into self-contained HTML pages, plus an index page.

    python -m fsyncstudy report --dataset data/NAME [--out reports]

What is measured before (``make report``'s pipeline) is ``fsyncstudy.study``.
"""
from __future__ import annotations

import html
import os
import re
import tempfile
import sys
from pathlib import Path
from typing import NamedTuple

from .dataset import check
from .places import BUILD, REPO

NOTEBOOKS = REPO / "notebooks"
#: Script tags nbconvert's templates point at a CDN; the report has no JavaScript that needs them.
_CDN_SCRIPT = re.compile(r'<script[^>]+src="https?://[^"]+"[^>]*>\s*</script>\s*', re.I)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: papermill's tag on the banner and anchor cells it adds to a notebook that stopped.
_ERROR_TAG = "papermill-error-cell-tag"


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


def _title_and_question(nb) -> tuple[str, str]:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines = cell.source.splitlines()
            title = lines[0].lstrip("# ").strip() if lines else ""
            q = re.search(r"\*\*Question\.\*\*\s*(.+?)(?:\n\n|$)", cell.source, re.S)
            return title, " ".join(q.group(1).split()) if q else ""
    return "", ""


def _ipc_kernel_manager(directory: str):
    """A kernel manager whose kernel talks over Unix sockets in ``directory``: no TCP port is opened
    (and the kernel has no "running over TCP without encryption" to warn about)."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = os.path.join(directory, "kernel")

        async def start_kernel(self, **kw):
            # the kernel starts in notebooks/ (the pages' relative paths), given to the kernel's process
            # alone: papermill's cwd= changes this whole process's directory, and two pages executed at
            # once in threads restored each other's, leaving the command in notebooks/ (seen 2026-12-07:
            # a relative --dataset then named notebooks/data/...)
            kw["cwd"] = str(NOTEBOOKS)
            return await super()._async_start_kernel(**kw)
    return IPCKernelManager


class PageFailure(NamedTuple):
    """A notebook that stopped: where (``cell``, its execution count; None if it never ran a cell) and why,
    as one readable message (the exception's type and text, without the traceback)."""

    notebook: str
    cell: int | None
    message: str

    def line(self) -> str:
        where = f"stopped at cell [{self.cell}]" if self.cell is not None else "did not run"
        return f"{self.notebook} {where}: {self.message}"


class ReportIncomplete(Exception):
    """Raised by ``build_report`` after every page was rendered, when some notebook stopped."""

    def __init__(self, index: Path, failures: list[PageFailure]):
        self.index, self.failures = index, failures
        super().__init__(f"{len(failures)} of the report's pages stopped before their end (each says where, "
                         f"in {index}): " + "; ".join(f.line() for f in failures))


#: A failure's message on a page and on the terminal: enough to read, never a wall of text.
MESSAGE_CHARS = 1500


def _message(ename: str, evalue: str) -> str:
    text = _ANSI.sub("", str(evalue or "")).strip()
    if len(text) > MESSAGE_CHARS:
        text = text[:MESSAGE_CHARS] + " [...]"
    return f"{ename}: {text}" if text else ename


#: Notebooks executed at once: they only read datasets (nothing is measured while they run), and each
#: spends most of its time on one CPU, so on 2 cores two at a time take about half as long.
PARALLEL = max(1, min(2, os.cpu_count() or 1))


#: The longest one cell of a page may take in the report (the pages read datasets; measuring happens before).
CELL_TIMEOUT_S = 600


def execute(params: dict, build: Path, log=print, parallel: int = PARALLEL,
            cell_timeout_s: float = CELL_TIMEOUT_S) -> tuple[list[Path], list[PageFailure]]:
    """Run every notebook with papermill, giving each the parameters it declares, ``parallel`` at a time
    (each kernel on Unix sockets of its own).  A notebook that stops is kept as far as it ran (papermill
    writes it with the failing cell's output) and the others run: returns the executed notebooks, in
    order, and the failures.  A cell that runs longer than ``cell_timeout_s`` stops its page (after one
    more try of the page: a kernel can stop answering), so the report never waits forever."""
    from concurrent.futures import ThreadPoolExecutor

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    build.mkdir(parents=True, exist_ok=True)

    def one(nb: Path, sockets: str) -> PageFailure | None:
        target = build / nb.name
        target.unlink(missing_ok=True)   # a page from an earlier run must not stand in for this one
        declared = pm.inspect_notebook(str(nb))
        mine = {k: v for k, v in params.items() if k in declared and v is not None}
        log(f"executing {nb.name} with {', '.join(f'{k}={v}' for k, v in mine.items())}")
        os.makedirs(sockets, exist_ok=True)
        try:
            for attempt in (1, 2):
                try:
                    pm.execute_notebook(str(nb), str(target), parameters=mine, kernel_name="python3",
                                        progress_bar=False, kernel_manager_class=_ipc_kernel_manager(sockets),
                                        execution_timeout=cell_timeout_s)
                    return None
                except TimeoutError:
                    # a kernel that stopped answering (seen once, 2026-12-07: a widgets cell left "running"
                    # with its kernel idle, and the report waited for it forever): the page runs once more
                    if attempt == 2:
                        raise
                    log(f"{nb.name}: a cell did not finish within {cell_timeout_s:g} s; running the page again")
        except PapermillExecutionError as e:
            failure = PageFailure(nb.name, e.exec_count, _message(e.ename, e.evalue))
        except Exception as e:   # the kernel died, a timeout, a notebook that cannot be read
            failure = PageFailure(nb.name, None, _message(type(e).__name__, str(e)))
        log(f"page stopped: {failure.line()}")
        if not target.exists():
            import nbformat
            nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {nb.stem}")]), target)
        return failure

    books = notebooks()
    with tempfile.TemporaryDirectory(prefix="fsyncstudy-kernel-") as sockets, \
            ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results = list(pool.map(lambda nb: one(nb, os.path.join(sockets, nb.stem[:2])), books))
    return [build / nb.name for nb in books], [f for f in results if f is not None]


def _mark_failure(nb, failure: PageFailure) -> None:
    """Put the failure at the top of its page, as one readable message, and in place of the failing
    cell's traceback (papermill's own banner and anchor cells are dropped)."""
    import nbformat
    nb.cells = [c for c in nb.cells if _ERROR_TAG not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        outputs = cell.get("outputs", [])
        if any(o.get("output_type") == "error" for o in outputs):
            cell.outputs = [o for o in outputs if o.get("output_type") != "error"] + [nbformat.v4.new_output(
                "display_data", {"text/html": _failure_html(failure, "This cell stopped the page"),
                                 "text/plain": failure.line()})]
    banner = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("display_data", {
        "text/html": _failure_html(failure, "This page stopped before its end"), "text/plain": failure.line()})])
    at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
    nb.cells.insert(at, banner)


def _failure_html(failure: PageFailure, title: str,
                  rest: str = "What follows this point did not run, and nothing on this page after it was computed.") -> str:
    where = f" (at cell [{failure.cell}])" if failure.cell is not None else ""
    return (f'<div class="fsyncstudy-failure" style="border:2px solid #b00020;padding:0.6rem 1rem;margin:0.8rem 0;'
            f'background:#fff4f4"><b>{html.escape(title)}</b>{html.escape(where)}. {html.escape(rest)}'
            f'<pre style="white-space:pre-wrap;margin:0.4rem 0 0">{html.escape(failure.message)}</pre></div>')


def render(executed: list[Path], out_dir: Path, dataset: Path, load_dataset: Path | None = None,
           failures: list[PageFailure] | None = None, crash_dataset: Path | None = None,
           diskcheck_dataset: Path | None = None) -> Path:
    """The pages and the index; ``failures``: the notebooks that stopped (``execute``), to which a failure
    of the index's own answer is added; ``crash_dataset``: the power cuts cited beside the advice;
    ``diskcheck_dataset``: the flush-honesty check (None: the newest there is, if any)."""
    failures = [] if failures is None else failures
    import nbformat
    from nbconvert import HTMLExporter

    out_dir.mkdir(parents=True, exist_ok=True)
    from nbconvert.preprocessors import TagRemovePreprocessor
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    # the widgets' cells work in JupyterLab only; the static figures say the same in the report
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"explore"}), enabled=True)
    stopped = {f.notebook: f for f in failures}
    entries = []
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        failure = stopped.get(path.name)
        if failure is not None:
            _mark_failure(nb, failure)
        body, _ = exporter.from_notebook_node(nb)
        body = _CDN_SCRIPT.sub("", body)
        page = out_dir / (path.stem + ".html")
        page.write_text(body)
        entries.append((page.name, *_title_and_question(nb), failure))
    from . import analysis, sweep
    df, meta = sweep.load(dataset)
    index = out_dir / "index.html"
    at_rate, stopped_here, answer_table, promise = [], None, None, []
    try:
        promise = _promise_lines(df, meta, diskcheck_dataset)
        rows = analysis.answer(df)
        answer = analysis.recommendation_lines(rows)
        answer_table = analysis.answer_table(rows)
        if load_dataset is not None:
            from . import loadstudy
            from .catalog import crash_cuts as _crash_cuts
            at_rate = analysis.at_rate_lines(loadstudy.load(load_dataset)[0], cuts=_crash_cuts(crash_dataset))
    except Exception as e:   # the pages are rendered: the index says where its own answer stopped
        stopped_here = PageFailure("index.html", None, _message(type(e).__name__, str(e)))
        failures.append(stopped_here)
        answer = []
    index.write_text(_index_html(entries, meta, dataset, answer, at_rate, stopped_here, answer_table, promise))
    return index


def _promise_lines(df, meta: dict, diskcheck_dataset: Path | None) -> list[str]:
    """The index's "Does the disk keep its promise": each target's plausibility, the check's verdicts."""
    from . import analysis, catalog, diskcheck
    path = catalog.diskcheck_dataset(diskcheck_dataset)
    checks = analysis.diskcheck_table(diskcheck.recorded(path)) if path is not None else None
    lines = analysis.promise_lines(analysis.plausibility_table(df, meta), checks)
    if path is not None:
        lines.append(f"(The check's dataset: `{path.name}`; page 11 has the evidence per target.)")
    return lines


def inline(text: str) -> str:
    """Escape text for HTML, with Markdown's `code` spans as <code>, **bold** as <b> and *emphasis* as <em>
    (outside code spans: a `*` there is the code's)."""
    out = []
    for part in re.split(r"(`[^`]+`)", text):
        if len(part) > 1 and part[0] == part[-1] == "`":
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        part = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", html.escape(part))
        out.append(re.sub(r"(?<![\w*])\*([^*\s](?:[^*]*[^*\s])?)\*(?![\w*])", r"<em>\1</em>", part))
    return "".join(out)


def _index_html(entries, meta: dict, dataset: Path, answer: list[str], at_rate: list[str] = (),
                stopped: PageFailure | None = None, answer_table=None, promise: list[str] = ()) -> str:
    from . import analysis
    plan = meta["plan"]
    rows = "".join(
        f'<li><a href="{html.escape(href)}">{html.escape(title or href)}</a><br><span>{inline(q)}</span>'
        + (f'<br><b class="stopped">This page stopped before its end</b> ({html.escape(failure.line().splitlines()[0])}): '
           "what it shows up to there was computed; the rest did not run (the page shows the whole message)."
           if failure is not None else "")
        + "</li>" for href, title, q, failure in entries)
    machine = "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                                  for k, v in analysis.machine_table(meta)["value"].items()) + "</table>"
    targets = analysis.targets_table(meta).to_html(border=0, index=False, na_rep="")
    prof = plan["profile"]
    from .analysis import DEFAULT_RATE
    at_rate_html = (f"<h2>At {DEFAULT_RATE:,} entries a second</h2><p>From the load study (open loop: latency timed from "
                    "each entry's intended arrival; page 06):</p><ul class=\"answer\">"
                    + "".join(f"<li>{inline(line)}</li>" for line in at_rate) + "</ul>") if at_rate else ""
    answer_html = "".join(f"<li>{inline(line)}</li>" for line in answer) or \
        "<li>No target in this dataset can make data durable: every number in it measures the CPU, not storage.</li>"
    table_html = answer_table.to_html(border=0, index=False) if answer_table is not None and len(answer_table) else ""
    caveat = analysis.targets_caveat(meta)
    if table_html and caveat:
        table_html += f"<p>{inline(caveat)}</p>"
    from .dataset import shortfall_text
    short = shortfall_text(meta.get("checked"))
    if short:
        answer_html += (f"<li><b>Short of its plan</b>: {html.escape(short)}, so its intervals there are wider than "
                        "planned.</li>")
    promise_html = ("<h2>Does the disk keep its promise</h2><p>Every number here assumes that data is durable when a "
                    "sync returns. Whether a cache between us and the media is likely, from each device's class and "
                    "the sync latency measured (no power cut needed), and what the flush-honesty check found where it "
                    "ran (<code>python -m fsyncstudy diskcheck</code>):</p><ul>"
                    + "".join(f"<li>{inline(line)}</li>" for line in promise) + "</ul>") if promise else ""
    if stopped is not None:
        answer_html = f"<li>{_failure_html(stopped, 'The answer could not be computed', 'The pages below were rendered.')}</li>"
        table_html = ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fsyncstudy report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }}
li {{ margin: 0.6rem 0; }} li span {{ color: #555; }}
table {{ border-collapse: collapse; font-size: 0.88rem; margin: 0.5rem 0 1rem; }}
td, th {{ border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }}
th {{ background: #f6f6f6; }}
code {{ background: #f4f4f4; padding: 0 0.2rem; }}
.answer li {{ font-size: 1.02rem; }}
.stopped {{ color: #b00020; }}
</style></head><body>
<h1>fsyncstudy: what each fsync strategy costs</h1>
<h2>The answer, per target that can be durable</h2>
<ul class="answer">{answer_html}</ul>
<p>For each writer count measured, the fastest configuration that acknowledges only after a covering sync
(<code>always</code> or group commit, any preallocation, sync method or write path), against <code>always</code> with the same writers, each
syncing its own entries. Ratios are paired by round (every configuration ran once in each shuffled round): the
geometric mean of the per-round ratios with the 95% t interval of the log ratios. <i>Resolved</i>: faster than
every other candidate at those writers with simultaneous 95% intervals (Bonferroni); otherwise the tied ones are
named. <i>Bound</i>: what most of the choice's trials waited for: the CPU, the writer and a lab FUSE daemon busy on CPUs together nearly the whole trial (the daemon's CPU is measured beside ours), or storage. The machine's
own disks first, then the lab's filesystems, then its emulations. <code>python -m fsyncstudy answer --json</code>
gives the same rows. Definitions of the strategies: the table in the project's README.</p>
{table_html}
{at_rate_html}
{promise_html}
<h2>The pages</h2>
<ol>{rows}</ol>
<h2>Where it was measured</h2>
<p>Dataset <code>{html.escape(dataset.name)}</code>, profile <b>{html.escape(prof['name'])}</b>: {prof['trials']}
trials per configuration after {prof['warmup_rounds']} discarded warm-up round, randomized rounds (seed
{plan['seed']}).</p>
{machine}
<h2>Targets</h2>
{targets}
</body></html>
"""


def build_report(dataset: str | Path, out_dir: str | Path = REPO / "reports", build: str | Path = BUILD / "notebooks",
                 crash_dataset: str | Path | None = None, peers_dataset: str | Path | None = None,
                 load_dataset: str | Path | None = None, realdb_dataset: str | Path | None = None,
                 realdb_crash_dataset: str | Path | None = None, diskcheck_dataset: str | Path | None = None,
                 seed: int = 0, n_boot: int = 2000, log=print, cell_timeout_s: float = CELL_TIMEOUT_S) -> Path:
    """Execute every notebook on ``dataset`` (and the crash and peers datasets) and render the HTML report.

    Every page is rendered, also when a notebook stops (the page shows where and why); then
    ``ReportIncomplete`` is raised, naming each one."""
    paths = {}
    for name, path, kind in (("dataset", dataset, "sweep"), ("crash_dataset", crash_dataset, "crash"),
                             ("peers_dataset", peers_dataset, "peers"), ("load_dataset", load_dataset, "load"),
                             ("realdb_dataset", realdb_dataset, "realdb"),
                             ("realdb_crash_dataset", realdb_crash_dataset, "realdb-crash"),
                             ("diskcheck_dataset", diskcheck_dataset, "diskcheck")):
        if path is not None:
            paths[name] = Path(path).resolve()
            from .catalog import SCHEMAS
            got = check(paths[name], kind, schema=SCHEMAS.get(kind))   # refused here, before any page runs
            if got.problems:
                raise got.error()
    params = {**{k: str(v) for k, v in paths.items()}, "seed": seed, "n_boot": n_boot}
    executed, failures = execute(params, Path(build), log=log, cell_timeout_s=cell_timeout_s)
    index = render(executed, Path(out_dir), paths["dataset"], paths.get("load_dataset"), failures,
                   paths.get("crash_dataset"), paths.get("diskcheck_dataset"))
    if failures:
        raise ReportIncomplete(index, failures)
    return index


if __name__ == "__main__":  # pragma: no cover
    print(build_report(sys.argv[1]))
