"""What the notebooks open: the newest dataset unless asked to measure, parameters that work when changed."""
import json
import re

import pytest

from conftest import REPO
from fsyncstudy import catalog, dataset
from fsyncstudy.profiles import PROFILES, StudyProfile
from fsyncstudy.sweep import Profile

TINY = Profile("quick", trials=2, warmup_rounds=0, min_duration_s=0.02, min_intervals=2, batch_ms=(10,),
               group=(), prealloc_compare=())


@pytest.fixture
def places(tmp_path, monkeypatch):
    """data/, runs/ and build/ of our own, and a tiny quick profile."""
    monkeypatch.setattr(catalog, "DATA", tmp_path / "data")
    monkeypatch.setattr(catalog, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(catalog, "BUILD", tmp_path / "build")
    q = PROFILES["quick"]
    monkeypatch.setitem(PROFILES, "quick", StudyProfile("quick", TINY, q.crash, q.peers, q.load, q.realdb))
    return tmp_path


def test_changing_the_targets_measures_another_dataset_instead_of_refusing(places, disk_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    a = catalog.sweep_dataset(None, "quick", targets=[str(disk_dir)], progress=False)
    b = catalog.sweep_dataset(None, "quick", targets=[str(other)], progress=False)   # refused before: "different targets"
    assert a != b and a.parent == b.parent == places / "build"
    assert catalog.sweep_dataset(None, "quick", targets=[str(disk_dir)], progress=False) == a  # the same ones resume
    view = catalog.open_sweep(None, "quick", targets=[str(other)], n_boot=50)
    assert set(view.df["target"]) == {str(other)} and "Dataset" in view._repr_html_()


def test_by_default_the_newest_dataset_of_this_machine_else_the_committed_one(places, disk_dir, monkeypatch):
    first = catalog.sweep_dataset(None, "quick", targets=[str(disk_dir)], progress=False)
    assert catalog.sweep_dataset() == first
    meta = json.loads((first / "meta.json").read_text())
    meta["environment"]["fingerprint"]["machine_id"] = "another machine"
    (first / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(dataset.DatasetError, match="measure one"):
        catalog.sweep_dataset()   # nothing of this machine, nothing committed
    (places / "data").mkdir()
    first.rename(places / "data" / first.name)
    assert catalog.sweep_dataset() == places / "data" / first.name  # a committed one, from elsewhere


def test_a_dataset_that_is_not_there_is_an_error_listing_those_that_are(places, disk_dir):
    made = catalog.sweep_dataset(None, "quick", targets=[str(disk_dir)], progress=False)
    with pytest.raises(dataset.DatasetError, match=f"holds no dataset; the sweep datasets here: .*{made.name}"):
        catalog.existing(places / "data" / "standard-typo", "sweep")


def test_the_example_datasets_in_the_notebooks_exist():
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]-*.ipynb")):
        cell = "".join(json.loads(nb.read_text())["cells"][1]["source"])
        for name in re.findall(r'"(data/[^"]+)"', cell):
            assert (REPO / name / "meta.json").exists(), (nb.name, name)
