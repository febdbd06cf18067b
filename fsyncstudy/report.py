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


def execute(params: dict, build: Path, log=print) -> list[Path]:
    """Run every notebook with papermill, giving each the parameters it declares."""
    import papermill as pm

    build.mkdir(parents=True, exist_ok=True)
    out = []
    for nb in notebooks():
        target = build / nb.name
        declared = pm.inspect_notebook(str(nb))
        mine = {k: v for k, v in params.items() if k in declared and v is not None}
        log(f"executing {nb.name} with {', '.join(f'{k}={v}' for k, v in mine.items())}")
        pm.execute_notebook(str(nb), str(target), parameters=mine, cwd=str(NOTEBOOKS), kernel_name="python3",
                            progress_bar=False)
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
    skipped = "".join(f"<li><code>{html.escape(name)}</code>: {html.escape(why)}</li>"
                      for name, why in (meta.get("skipped_targets") or {}).items())
    skipped = (f"<p>Targets wanted but not measured here:</p><ul>{skipped}</ul>" if skipped
               else "<p>Every target that was asked for was measured.</p>")
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
{skipped}
<p>Every figure states its n and its interval method. Definitions of the strategies: the table in the project's README.</p>
</body></html>
"""


def build_report(dataset: str | Path, out_dir: str | Path = REPO / "reports", build: str | Path = REPO / "build" / "notebooks",
                 crash_dataset: str | Path | None = None, peers_dataset: str | Path | None = None, seed: int = 0,
                 n_boot: int = 2000, log=print) -> Path:
    """Execute every notebook on ``dataset`` (and the crash and peers datasets) and render the HTML report."""
    dataset = Path(dataset).resolve()
    if not (dataset / "trials.csv").exists():
        raise FileNotFoundError(f"{dataset} holds no dataset (no trials.csv)")
    if crash_dataset is not None:
        crash_dataset = Path(crash_dataset).resolve()
        if not (crash_dataset / "cuts.csv").exists():
            raise FileNotFoundError(f"{crash_dataset} holds no crash dataset (no cuts.csv)")
    params = {"dataset": str(dataset), "crash_dataset": str(crash_dataset) if crash_dataset else None,
              "peers_dataset": str(Path(peers_dataset).resolve()) if peers_dataset else None,
              "seed": seed, "n_boot": n_boot}
    executed = execute(params, Path(build), log=log)
    return render(executed, Path(out_dir), dataset)


def run_study(profile: str = "standard", targets: list[str] | None = None, use_lab: bool = True, seed: int = 0,
              progress: bool = True, log=print) -> tuple[Path, Path, Path]:
    """The measurements behind the report: the sweep, the crash experiment, the peers comparison.

    With ``use_lab`` (and a machine that allows it: root, loop devices, /dev/fuse, the mkfs
    tools) the storage lab comes up for the duration, its targets join the sweep, and the
    power cuts run on lab:powercut; whatever cannot come up is recorded with the reason.
    """
    from contextlib import nullcontext

    from .analysis import default_crash_out
    from .crash import run_crash
    from .sweep import DATA, default_out, default_targets, run_sweep

    skipped: dict[str, str] = {}
    lab = None
    if use_lab:
        try:
            from .lab import TARGET_NAMES, Lab, requirements
            needs = requirements(TARGET_NAMES)
            skipped = {t: r for t, r in needs.items() if r}
            if len(skipped) < len(needs):
                lab = Lab(targets=[t[4:] for t, r in needs.items() if not r])
        except ImportError as e:
            skipped = {"lab": f"the storage lab cannot be imported ({e})"}
    else:
        skipped = {"lab": "not asked for (--no-lab)"}
    with lab if lab is not None else nullcontext() as up:
        lab_targets = []
        if up is not None:
            skipped.update(up.skipped())
            lab_targets = up.available()
            log(f"lab up: {', '.join(lab_targets) or 'nothing'}" + (f"; skipped: {skipped}" if skipped else ""))
        chosen = targets or default_targets() + lab_targets
        dataset = default_out(profile)
        log(f"study: {profile} profile on {len(chosen)} targets into {dataset} (resumes if interrupted)")
        s = run_sweep(dataset, profile=profile, targets=chosen, seed=seed, progress=progress, skipped=skipped)
        log(f"{s.ran} trials run ({s.failed} failed), {s.skipped} already done, in {s.elapsed_s:.0f} s")
        kinds = ("power", "process") if "lab:powercut" in lab_targets else ("process",)
        crash_profile = "quick" if profile == "quick" else "standard"
        crash_out = default_crash_out(crash_profile, kinds, DATA)
        log(f"crash experiment: {crash_profile}, {' and '.join(kinds)} cuts into {crash_out}")
        c = run_crash(crash_out, kinds=kinds, profile=crash_profile, seed=seed, progress=progress,
                      lab_dir=up.lab_dir if up is not None else None,
                      note={} if "power" in kinds else {"power": skipped.get("lab:powercut", "the lab is not up")})
        log(f"{c.ran} cuts run, {c.skipped} already done, in {c.elapsed_s:.0f} s")
        for line in c.lost_by_durable:
            log(f"BUG: {line}")
    # the peers, on the default targets (not the lab's: fio and pg_test_fsync compare real devices)
    from .analysis import peers_dataset
    rounds = 3 if profile == "quick" else 5
    log(f"peers: fio and pg_test_fsync side by side with us, {rounds} rounds on each default target")
    peers_out = peers_dataset(None, rounds=rounds, peers=("fio", "pg_test_fsync"), parent=DATA, log=None)
    return dataset, crash_out, peers_out


if __name__ == "__main__":  # pragma: no cover
    print(build_report(sys.argv[1]))
