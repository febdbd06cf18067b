"""The report: every notebook executed with papermill on one dataset, rendered with
nbconvert (input hidden) into self-contained HTML pages, plus an index page.

    python -m fsyncstudy report --dataset data/NAME [--out reports]
"""
from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

from .sweep import REPO

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


def execute(dataset: Path, build: Path, seed: int = 0, n_boot: int = 2000, log=print) -> list[Path]:
    import papermill as pm

    build.mkdir(parents=True, exist_ok=True)
    out = []
    for nb in notebooks():
        target = build / nb.name
        log(f"executing {nb.name} on {dataset}")
        pm.execute_notebook(str(nb), str(target), parameters={"dataset": str(dataset), "seed": seed, "n_boot": n_boot},
                            cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)
        out.append(target)
    return out


def render(executed: list[Path], out_dir: Path, dataset: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    entries = []
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        body, _ = exporter.from_notebook_node(nb)
        body = _CDN_SCRIPT.sub("", body)
        page = out_dir / (path.stem + ".html")
        page.write_text(body)
        entries.append((page.name, *_title_and_question(nb)))
    meta = json.loads((dataset / "meta.json").read_text())
    index = out_dir / "index.html"
    index.write_text(_index_html(entries, meta, dataset))
    return index


def _index_html(entries, meta: dict, dataset: Path) -> str:
    env = meta["environment"]
    rows = "".join(
        f'<li><a href="{html.escape(href)}">{html.escape(title)}</a><br><span>{html.escape(q)}</span></li>'
        for href, title, q in entries)
    targets = "".join(
        f"<tr><td>{html.escape(p)}</td><td>{html.escape(t['fstype'])}</td><td>{html.escape(str(t.get('block_device') or t['source']))}</td>"
        f"<td>{html.escape(t['durability'])}</td><td>{html.escape(t['reason'])}</td></tr>"
        for p, t in meta["target_descriptions"].items())
    prof = meta["profile"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fsyncstudy report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }}
li {{ margin: 0.8rem 0; }} li span {{ color: #555; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }} td, th {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }}
code {{ background: #f4f4f4; padding: 0 0.2rem; }}
</style></head><body>
<h1>fsyncstudy: what each fsync strategy costs</h1>
<p>Measured on <b>{html.escape(env['host'])}</b> (Linux {html.escape(env['kernel'])}, {html.escape(str(env['cpu']))},
{env['cores']} cores), profile <b>{html.escape(prof['name'])}</b>: {prof['trials']} trials per configuration after
{prof['warmup_rounds']} discarded warm-up round, randomized rounds (seed {meta['seed']}), started {html.escape(str(meta.get('created_at')))}.
Dataset: <code>{html.escape(dataset.name)}</code>; git {html.escape(str(env['git']['commit'])[:10])}.</p>
<ol>{rows}</ol>
<h2>Targets</h2>
<table><tr><th>directory</th><th>filesystem</th><th>device</th><th>verdict</th><th>why</th></tr>{targets}</table>
<p>Every figure states its n and its interval method. Definitions of the strategies: the table in the project's README.</p>
</body></html>
"""


def build_report(dataset: str | Path, out_dir: str | Path = REPO / "reports", build: str | Path = REPO / "build" / "notebooks",
                 seed: int = 0, n_boot: int = 2000, log=print) -> Path:
    dataset = Path(dataset).resolve()
    if not (dataset / "trials.csv").exists():
        raise FileNotFoundError(f"{dataset} holds no dataset (no trials.csv)")
    executed = execute(dataset, Path(build), seed=seed, n_boot=n_boot, log=log)
    return render(executed, Path(out_dir), dataset)


if __name__ == "__main__":  # pragma: no cover
    print(build_report(sys.argv[1]))
