"""The report: notebooks executed on a dataset and rendered to self-contained HTML."""
import re

import pytest

from fsyncstudy.loadstudy import LoadProfile, run_load_study
from fsyncstudy.report import build_report, notebooks
from fsyncstudy.profiles import PROFILES
from fsyncstudy.sweep import run_sweep


@pytest.mark.timeout(540)
def test_the_report_renders_every_notebook_self_contained(disk_dir, tmp_path):
    data = tmp_path / "data"
    run_sweep(data, profile=PROFILES["quick"].sweep, targets=[str(disk_dir)], progress=False)
    loads = tmp_path / "load"
    run_load_study(loads, LoadProfile("tiny", rates=(300, 3000), strategies=(("always", 1), ("batch_10ms", 1)), trials=2,
                                      duration_s=0.15), [str(disk_dir)], progress=False)
    index = build_report(data, out_dir=tmp_path / "reports", build=tmp_path / "build", load_dataset=loads,
                         log=lambda m: None, cell_timeout_s=150)   # a kernel that stops answering: its page runs again in time
    pages = sorted(p.name for p in index.parent.glob("*.html"))
    assert pages == sorted(["index.html"] + [nb.stem + ".html" for nb in notebooks()])
    text = index.read_text()
    for nb in notebooks():
        assert f'href="{nb.stem}.html"' in text
        page = (index.parent / f"{nb.stem}.html").read_text()
        assert "data:image/png;base64," in page                          # figures embedded
        assert not re.search(r'<script[^>]+src="https?://', page)         # nothing fetched from the web
        assert "from fsyncstudy import" not in page                       # input hidden (every notebook's code has it)
        assert "Traceback" not in page
    assert "Question" in (index.parent / "01-three-strategies.html").read_text()
    assert "Explore (in JupyterLab)" not in (index.parent / "02-interval-sweep.html").read_text()  # widgets: no
    assert "The answer, per target that can be durable" in text and "to lose nothing acknowledged: with one writer" in text
    assert "fastest that loses nothing" in text     # the table behind the recommendations
    assert "At 2,000 entries a second" in text and "advised" not in text
    assert "Latency from arrival against the offered rate" in (index.parent / "06-at-your-rate.html").read_text()
    # the write paths, beside their baselines on the disk the quick sweep ran them on
    paths = (index.parent / "10-write-paths.html").read_text()
    assert "always (rwf_dsync)" in paths and "batch_10ms (buffered)" in paths and "no write paths" not in paths
    # does the disk keep its promise: this sweep's target judged, and the committed flush-honesty check cited
    assert "<h2>Does the disk keep its promise</h2>" in text and "under the flush-honesty check" in text
    assert "Plausibility, per target" in (index.parent / "11-disk-promise.html").read_text()


def _notebook(path, *sources):
    import nbformat
    cells = [nbformat.v4.new_markdown_cell(sources[0])] + [nbformat.v4.new_code_cell(s) for s in sources[1:]]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_a_page_that_stops_is_rendered_where_it_stopped_and_the_others_still_are(disk_dir, tmp_path, monkeypatch):
    import pytest

    from fsyncstudy import report
    from fsyncstudy.sweep import Profile
    data = tmp_path / "data"
    run_sweep(data, profile=Profile("tiny", trials=1, warmup_rounds=0, min_duration_s=0.02, min_intervals=1,
                                    batch_ms=(1,), group=()), targets=[str(disk_dir)], progress=False)
    books = tmp_path / "notebooks"
    books.mkdir()
    _notebook(books / "01-first.ipynb", "# First\n\n**Question.** Does one stop?",
              "print('computed before the stop')",
              "from fsyncstudy import analysis\ncheck = analysis.Checks()\n"
              "check(False, 'a premise this page relies on', 'the detail of what failed')",
              "print('never runs')")
    _notebook(books / "02-second.ipynb", "# Second\n\n**Question.** Does the next one run?", "print('the second page ran')")
    monkeypatch.setattr(report, "NOTEBOOKS", books)
    with pytest.raises(report.ReportIncomplete) as stopped:
        build_report(data, out_dir=tmp_path / "reports", build=tmp_path / "build", log=lambda m: None)
    (failure,) = stopped.value.failures
    assert failure.notebook == "01-first.ipynb" and failure.cell == 2
    assert failure.message.startswith("AssertionError: a premise this page relies on: does not hold")
    assert "the detail of what failed" in failure.message and "Traceback" not in failure.message
    out = tmp_path / "reports"
    assert sorted(p.name for p in out.glob("*.html")) == ["01-first.html", "02-second.html", "index.html"]
    first = (out / "01-first.html").read_text()
    assert "computed before the stop" in first and "never runs" not in first
    assert first.count("This page stopped before its end") == 1 and "This cell stopped the page" in first
    assert "Traceback" not in first and "papermill-error-cell" not in first
    assert "the second page ran" in (out / "02-second.html").read_text()
    index = (out / "index.html").read_text()
    assert index.count("This page stopped before its end") == 1 and "01-first.ipynb stopped at cell [2]" in index


def test_a_cell_that_never_finishes_stops_its_page_within_the_timeout_after_one_more_try(tmp_path, monkeypatch):
    import time

    from fsyncstudy import report
    books = tmp_path / "notebooks"
    books.mkdir()
    # the first run of the page hangs; the second (a kernel that stopped answering, run again) finishes
    marker = tmp_path / "ran-once"
    _notebook(books / "01-hangs-once.ipynb", "# Hangs once",
              f"import pathlib, time\np = pathlib.Path({str(marker)!r})\n"
              "if not p.exists():\n    p.touch()\n    time.sleep(600)\nprint('second try finished')")
    _notebook(books / "02-always-hangs.ipynb", "# Always hangs", "import time\ntime.sleep(600)")
    monkeypatch.setattr(report, "NOTEBOOKS", books)
    said = []
    t0 = time.monotonic()
    executed, failures = report.execute({}, tmp_path / "build", log=said.append, cell_timeout_s=3)
    assert time.monotonic() - t0 < 120
    assert [f.notebook for f in failures] == ["02-always-hangs.ipynb"]
    assert any("01-hangs-once.ipynb: a cell did not finish within 3 s; running the page again" in m for m in said)
    assert "second try finished" in (tmp_path / "build" / "01-hangs-once.ipynb").read_text()


def test_the_index_renders_a_questions_emphasis_bold_and_code_and_leaves_a_codes_stars_alone():
    from fsyncstudy.report import inline
    got = inline("Beyond *when* to sync: **ext4** with `a*b` and `x<y`, 2 * 3 & *how*")
    assert got == ("Beyond <em>when</em> to sync: <b>ext4</b> with <code>a*b</code> and <code>x&lt;y</code>, "
                   "2 * 3 &amp; <em>how</em>")
