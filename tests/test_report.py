"""The report: notebooks executed on a dataset and rendered to self-contained HTML."""
import re

from fsyncstudy.loadstudy import LoadProfile, run_load_study
from fsyncstudy.report import build_report, notebooks
from fsyncstudy.study import PROFILES
from fsyncstudy.sweep import run_sweep


def test_the_report_renders_every_notebook_self_contained(disk_dir, tmp_path):
    data = tmp_path / "data"
    run_sweep(data, profile=PROFILES["quick"].sweep, targets=[str(disk_dir)], progress=False)
    loads = tmp_path / "load"
    run_load_study(loads, LoadProfile("tiny", rates=(300, 3000), strategies=(("always", 1), ("batch_10ms", 1)), trials=2,
                                      duration_s=0.15), [str(disk_dir)], progress=False)
    index = build_report(data, out_dir=tmp_path / "reports", build=tmp_path / "build", load_dataset=loads,
                         log=lambda m: None)
    pages = sorted(p.name for p in index.parent.glob("*.html"))
    assert pages == sorted(["index.html"] + [nb.stem + ".html" for nb in notebooks()])
    text = index.read_text()
    for nb in notebooks():
        assert f'href="{nb.stem}.html"' in text
        page = (index.parent / f"{nb.stem}.html").read_text()
        assert "data:image/png;base64," in page                          # figures embedded
        assert not re.search(r'<script[^>]+src="https?://', page)         # nothing fetched from the web
        assert "analysis.dataset(" not in page                            # input hidden
        assert "Traceback" not in page
    assert "Question" in (index.parent / "01-three-strategies.html").read_text()
    assert "Explore (in JupyterLab)" not in (index.parent / "02-interval-sweep.html").read_text()  # widgets: no
    assert "The answer, per target that can be durable" in text and "sustains" in text
    assert "At 2,000 entries a second" in text and "advised" not in text
    assert "Latency from arrival against the offered rate" in (index.parent / "06-at-your-rate.html").read_text()
