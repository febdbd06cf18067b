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

from .dataset import DatasetError, read_meta
from .places import BUILD, REPO

NOTEBOOKS = REPO / "notebooks"
#: Script tags nbconvert's templates point at a CDN; the report has no JavaScript that needs them.
_CDN_SCRIPT = re.compile(r'<script[^>]+src="https?://[^"]+"[^>]*>\s*</script>\s*', re.I)


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
    return IPCKernelManager


def execute(params: dict, build: Path, log=print) -> list[Path]:
    """Run every notebook with papermill, giving each the parameters it declares."""
    import papermill as pm

    build.mkdir(parents=True, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory(prefix="fsyncstudy-kernel-") as sockets:
        for nb in notebooks():
            target = build / nb.name
            declared = pm.inspect_notebook(str(nb))
            mine = {k: v for k, v in params.items() if k in declared and v is not None}
            log(f"executing {nb.name} with {', '.join(f'{k}={v}' for k, v in mine.items())}")
            pm.execute_notebook(str(nb), str(target), parameters=mine, cwd=str(NOTEBOOKS), kernel_name="python3",
                                progress_bar=False, kernel_manager_class=_ipc_kernel_manager(sockets))
            out.append(target)
    return out


def render(executed: list[Path], out_dir: Path, dataset: Path, load_dataset: Path | None = None) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    out_dir.mkdir(parents=True, exist_ok=True)
    from nbconvert.preprocessors import TagRemovePreprocessor
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    # the widgets' cells work in JupyterLab only; the static figures say the same in the report
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"explore"}), enabled=True)
    entries = []
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        body, _ = exporter.from_notebook_node(nb)
        body = _CDN_SCRIPT.sub("", body)
        page = out_dir / (path.stem + ".html")
        page.write_text(body)
        entries.append((page.name, *_title_and_question(nb)))
    from . import analysis, sweep
    df, meta = sweep.load(dataset)
    index = out_dir / "index.html"
    at_rate = []
    if load_dataset is not None:
        from . import loadstudy
        at_rate = analysis.at_rate_lines(loadstudy.load(load_dataset)[0])
    index.write_text(_index_html(entries, meta, dataset, analysis.headline_lines(analysis.headline(df)), at_rate))
    return index


def inline(text: str) -> str:
    """Escape text for HTML, with Markdown's `code` spans as <code> and **bold** as <b>."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def _index_html(entries, meta: dict, dataset: Path, answer: list[str], at_rate: list[str] = ()) -> str:
    from . import analysis
    plan = meta["plan"]
    rows = "".join(
        f'<li><a href="{html.escape(href)}">{html.escape(title)}</a><br><span>{inline(q)}</span></li>'
        for href, title, q in entries)
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
</style></head><body>
<h1>fsyncstudy: what each fsync strategy costs</h1>
<h2>The answer, per target that can be durable</h2>
<ul class="answer">{answer_html}</ul>
<p>Geometric means over trials with 95% t intervals on the log scale; ratios are paired by round (every configuration ran once in each
shuffled round) with the 95% t interval of the log ratios. Definitions of the strategies: the table in the
project's README.</p>
{at_rate_html}
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
                 realdb_crash_dataset: str | Path | None = None, seed: int = 0,
                 n_boot: int = 2000, log=print) -> Path:
    """Execute every notebook on ``dataset`` (and the crash and peers datasets) and render the HTML report."""
    paths = {}
    for name, path, kind in (("dataset", dataset, "sweep"), ("crash_dataset", crash_dataset, "crash"),
                             ("peers_dataset", peers_dataset, "peers"), ("load_dataset", load_dataset, "load"),
                             ("realdb_dataset", realdb_dataset, "realdb"),
                             ("realdb_crash_dataset", realdb_crash_dataset, "realdb-crash")):
        if path is not None:
            paths[name] = Path(path).resolve()
            found = read_meta(paths[name])["kind"]
            if found != kind:
                raise DatasetError(f"{paths[name]} holds a {found} dataset, not a {kind} dataset")
    params = {**{k: str(v) for k, v in paths.items()}, "seed": seed, "n_boot": n_boot}
    executed = execute(params, Path(build), log=log)
    return render(executed, Path(out_dir), paths["dataset"], paths.get("load_dataset"))


if __name__ == "__main__":  # pragma: no cover
    print(build_report(sys.argv[1]))
