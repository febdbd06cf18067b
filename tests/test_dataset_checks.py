"""Every load checks a dataset against its own metadata: corrupted copies of a small committed dataset
(tests/data/sweep-quick, a quick sweep measured on one disk) and of the committed datasets of the other
kinds are each refused in one line naming the file, the line or field and what is wrong (rc 2 from the
commands that read them), `check` lists every problem (rc 1), and a dataset short of its plan is read
with that fact attached and said wherever its numbers are shown."""
import csv
import io
import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, run_here
from fsyncstudy import catalog, dataset, sweep
from fsyncstudy.dataset import DatasetError

SMALL = REPO / "tests" / "data" / "sweep-quick"
OTHERS = {"crash": "crash-standard-power+process-vm-78139a10-abfaaf", "peers": "peers-fio+pg_test_fsync-r4-vm-78139a10-533b42",
          "load": "load-standard-vm-78139a10-145977", "realdb": "realdb-standard-vm-78139a10-7d0681",
          "realdb-crash": "realdb-crash-standard-vm-78139a10-687888", "fleet": "fleet-quick-vm-6b60e6aa-b82b3b"}


def subprocess_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fsyncstudy", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def cli(*args):
    return run_here(*args)   # one case goes through a real subprocess (subprocess_cli)


def copy(tmp_path, src=SMALL, name="copy"):
    dst = tmp_path / name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def table(d):
    return d / dataset.read_meta(d, formats=(2, dataset.FORMAT))["table"]


def records(d) -> list[list[str]]:
    return list(csv.reader(io.StringIO(table(d).read_text())))


def write_records(d, recs, resign=False):
    """Write the table back; ``resign``: recompute each row's checksum (an edit the checksum cannot see,
    so that the check behind it is the one tested)."""
    salt = dataset.read_meta(d, formats=(2, dataset.FORMAT))["created_at"]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(recs[0])
    for r in recs[1:]:
        w.writerow([*r[:-1], dataset.row_check(salt, r[:-1])] if resign else r)
    table(d).write_text(out.getvalue())


def col(d, name) -> int:
    return records(d)[0].index(name)


def one_line_refusal(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in err, (n, err)
    return err


# -- the small committed dataset is sound -----------------------------------------------------------

def test_the_small_committed_dataset_passes_every_check_and_was_measured_from_a_clean_commit():
    got = dataset.check(SMALL, schema=sweep.SCHEMA)
    assert got.ok and got.rows and not got.short and not got.torn_tail
    git = dataset.read_meta(SMALL)["environment"]["git"]
    assert git["commit"] and git["dirty"] is False
    r = cli("check", str(SMALL))
    assert r.returncode == 0 and "no problem found" in r.stdout


# -- corruption that used to be read without a word -------------------------------------------------

def test_every_row_duplicated_is_refused_by_diff_and_listed_by_check(tmp_path):
    d = copy(tmp_path)
    recs = records(d)
    write_records(d, [recs[0], *[r for r in recs[1:] for _ in (0, 1)]])
    err = one_line_refusal(subprocess_cli("diff", str(SMALL), str(d)), f"{d}/trials.csv, line 3:",
                           "counts already (line 2)", "more problems")
    assert "a unit counts once" in err
    r = subprocess_cli("check", str(d), "--json")
    got = json.loads(r.stdout)
    assert r.returncode == 1 and not got["ok"] and len(got["problems"]) == sum(
        rr[col(d, "status")] == "ok" for rr in recs[1:])
    assert got["problems"][0]["line"] == 3 and got["problems"][0]["file"].endswith("trials.csv")


def test_a_hand_edited_number_fails_its_checksum(tmp_path):
    d = copy(tmp_path)
    recs = records(d)
    k = col(d, "ops_per_sec")
    recs[5][k] = "-" + recs[5][k]
    write_records(d, recs)
    one_line_refusal(cli("diff", str(SMALL), str(d)), "line 6, field 'row_check'", "checksum does not match")


@pytest.mark.parametrize("value, words", [("-1799.5", "is negative"), ("inf", "not a finite number"),
                                          ("nan", "not a finite number"), ("1_000", "not a number"),
                                          ("0", "must be above 0"), ("", "must be above 0")])
def test_a_measured_value_out_of_range_is_refused_even_with_a_matching_checksum(tmp_path, value, words):
    d = copy(tmp_path)
    recs = records(d)
    row = next(i for i, r in enumerate(recs) if i and r[col(d, "status")] == "ok")
    recs[row][col(d, "ops_per_sec")] = value
    write_records(d, recs, resign=True)
    one_line_refusal(cli("diff", str(SMALL), str(d)), f"line {row + 1}, field 'ops_per_sec'", words)


def test_a_field_that_is_not_its_columns_type_is_named(tmp_path):
    d = copy(tmp_path)
    recs = records(d)
    recs[2][col(d, "round")] = "x"
    write_records(d, recs, resign=True)
    one_line_refusal(cli("diff", str(SMALL), str(d)), "line 3, field 'round'", "'x' is not an integer")


def test_nul_bytes_in_the_middle_of_the_table_are_refused_naming_the_line(tmp_path):
    d = copy(tmp_path)
    data = table(d).read_bytes()
    at = data.index(b"\n", len(data) // 2) + 1
    table(d).write_bytes(data[:at] + b"\0" * 100 + data[at:])
    line = data[:at].count(b"\n") + 1
    one_line_refusal(cli("diff", str(SMALL), str(d)), f"line {line}:", "NUL bytes")


def test_random_bytes_are_refused_in_one_line(tmp_path):
    d = copy(tmp_path)
    table(d).write_bytes(bytes(range(256)) * 40)
    one_line_refusal(cli("diff", str(SMALL), str(d)), "trials.csv")


@pytest.mark.parametrize("change, words", [
    (lambda h: h.remove("ops_per_sec"), "missing ops_per_sec"),
    (lambda h: h.__setitem__(h.index("ops_per_sec"), "ops"), "not declared: ops"),
])
def test_a_header_that_disagrees_with_meta_json_is_named_not_reported_as_nothing_in_common(tmp_path, change, words):
    d = copy(tmp_path)
    lines = table(d).read_text().split("\n", 1)
    header = lines[0].split(",")
    change(header)
    table(d).write_text(",".join(header) + "\n" + lines[1])
    err = one_line_refusal(cli("diff", str(SMALL), str(d)), "line 1:", "header is not the columns meta.json declares",
                           words)
    assert "in common" not in err


def test_meta_json_that_retypes_the_columns_is_refused(tmp_path):
    d = copy(tmp_path)
    meta = json.loads((d / "meta.json").read_text())
    meta["columns"] = [[c, "str"] for c, _ in meta["columns"]]
    (d / "meta.json").write_text(json.dumps(meta))
    one_line_refusal(cli("diff", str(SMALL), str(d)), "meta.json", "round as str (this version: int)")


def test_a_deeply_nested_or_huge_meta_json_is_refused_before_it_is_parsed(tmp_path):
    d = copy(tmp_path)
    (d / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    one_line_refusal(cli("diff", str(SMALL), str(d)), "meta.json", "nests deeper than")
    (d / "meta.json").write_text(" " * (dataset.MAX_META_BYTES + 1))
    one_line_refusal(cli("diff", str(SMALL), str(d)), "meta.json", "more than a meta.json holds")


def test_a_table_or_meta_that_is_a_symlink_out_of_the_dataset_is_refused(tmp_path):
    d = copy(tmp_path)
    elsewhere = tmp_path / "elsewhere.csv"
    shutil.move(table(d), elsewhere)
    (d / "trials.csv").symlink_to(elsewhere)
    before = elsewhere.read_bytes()
    one_line_refusal(cli("diff", str(SMALL), str(d)), "trials.csv", "symbolic link")
    with pytest.raises(DatasetError, match="symbolic link"):
        dataset.Table(d / "trials.csv", ["a"])            # and never appended to
    assert elsewhere.read_bytes() == before


# -- every kind, every reader -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(OTHERS))
def test_every_kind_refuses_a_duplicated_unit_and_a_negative_measure(tmp_path, kind):
    d = copy(tmp_path, REPO / "data" / OTHERS[kind])
    recs = records(d)
    write_records(d, [*recs, recs[-1]])
    with pytest.raises(DatasetError, match=rf"line {len(recs) + 1}: the unit .* counts already"):
        dataset.load(d)
    got = dataset.check(d)
    assert len(got.problems) == 1
    numeric = next(c for c, t in dataset.read_meta(d)["columns"]
                   if t in ("int", "float") and recs[1][col(d, c)] and float(recs[1][col(d, c)]) > 0)
    recs[1][col(d, numeric)] = "-" + recs[1][col(d, numeric)]
    write_records(d, recs, resign=True)
    with pytest.raises(DatasetError, match=rf"line 2, field '{numeric}': .* is negative"):
        dataset.load(d)


def test_advise_and_report_refuse_a_corrupt_dataset_in_one_line(tmp_path):
    d = copy(tmp_path, REPO / "data" / OTHERS["load"])
    recs = records(d)
    write_records(d, [*recs, recs[-1]])
    one_line_refusal(cli("advise", "--dataset", str(d), "--rate", "1000", "--loss-budget-ms", "0"),
                     "load.csv", "counts already")
    s = copy(tmp_path, name="sweep")
    recs = records(s)
    write_records(s, [*recs, recs[-1]])
    one_line_refusal(cli("report", "--dataset", str(s), "--out", str(tmp_path / "out")), "trials.csv",
                     "counts already")
    assert not (tmp_path / "out").exists()     # refused before any page was rendered


def test_a_resume_never_counts_a_duplicate_as_done(disk_dir, tmp_path):
    from test_dataset import TINY
    out = tmp_path / "study"
    sweep.run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False, limit=2)
    recs = records(out)
    write_records(out, [*recs, *recs[1:]])
    with pytest.raises(DatasetError, match="counts already"):
        sweep.run_sweep(out, profile=TINY, targets=[str(disk_dir)], progress=False)
    r = cli("sweep", "--profile", "quick", "--out", str(out), "--target", str(disk_dir), "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr


# -- short of its plan ------------------------------------------------------------------------------

def test_a_dataset_cut_short_is_read_with_n_of_planned_said_by_diff_check_and_the_pages(tmp_path):
    d = copy(tmp_path)
    data = table(d).read_bytes()
    table(d).write_bytes(data[:int(len(data) * 0.45)])     # cut mid-row, as a copy that stopped early
    df, meta = sweep.load(d)
    planned = dataset.read_meta(SMALL)["plan"]["profile"]["trials"]
    assert meta["checked"]["planned"] == planned and meta["checked"]["short"]
    assert all(s["n"] < planned for s in meta["checked"]["short"])
    r = cli("diff", str(SMALL), str(d))
    assert r.returncode == 0 and f"of {planned} planned" in r.stdout and "Run B is short of its plan" in r.stdout
    r = cli("check", str(d))
    assert r.returncode == 0 and "torn" in r.stdout and f"of {planned} planned" in r.stdout
    assert "Short of its plan" in catalog.shortfall(meta) and catalog.shortfall(sweep.load(SMALL)[1]) == ""
    view = catalog.SweepView(d, df, meta, None)._repr_html_()
    assert "Short of its plan" in view and f"of {planned} planned" in view


# -- upgrade ----------------------------------------------------------------------------------------

def test_upgrade_gives_a_format_2_dataset_its_checksums_and_refuses_a_corrupt_one(tmp_path):
    d = copy(tmp_path)
    recs = records(d)
    meta = json.loads((d / "meta.json").read_text())
    meta["format"] = 2
    (d / "meta.json").write_text(json.dumps(meta))
    write_records(d, [r[:-1] for r in recs])                 # format 2: no checksum column
    one_line_refusal(cli("diff", str(SMALL), str(d)), "format 2", "upgrade")
    dup = tmp_path / "dup"
    shutil.copytree(d, dup)
    write_records(dup, [r[:-1] for r in [*recs, recs[-1]]])
    assert cli("upgrade", str(dup)).returncode == 2          # an upgrade blesses no duplicate
    assert json.loads((dup / "meta.json").read_text())["format"] == 2
    r = cli("upgrade", str(d))
    assert r.returncode == 0, r.stderr
    assert records(d) == recs and dataset.check(d).ok is True


# -- provenance -------------------------------------------------------------------------------------

def test_provenance_says_clean_or_which_diff_of_the_measuring_code():
    from fsyncstudy import analysis
    assert dataset.provenance_text({"commit": "420ca20122a3", "dirty": False}) == "git 420ca20122 (clean)"
    assert "outside the measuring code" in dataset.provenance_text({"commit": "abc", "dirty": True, "diff_sha256": None})
    assert "(diff sha256 0123456789ab): no commit reproduces it" in dataset.provenance_text(
        {"commit": "abc", "dirty": True, "diff_sha256": "0123456789ab"})
    table = analysis.machine_table(dataset.read_meta(SMALL))["value"]
    assert table["fsyncstudy"].endswith("(clean))")


def test_the_digest_of_an_uncommitted_change_to_the_measuring_code_is_recorded(monkeypatch):
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        out = {"rev-parse": "abc\n", "status": " M fsyncstudy/engine.py\n", "diff": "-old\n+new\n"}[cmd[3]]
        return subprocess.CompletedProcess(cmd, 0, out, "")
    monkeypatch.setattr(dataset.subprocess, "run", fake_run)
    git = dataset.git_state()
    assert git["dirty"] and git["diff_sha256"] == __import__("hashlib").sha256(b"-old\n+new\n").hexdigest()[:12]
    assert any("engine.py" in " ".join(c) for c in calls if c[3] == "diff")   # the diff of the measuring code only


def test_make_report_on_a_dirty_tree_says_so_before_it_measures(monkeypatch):
    from fsyncstudy import study
    monkeypatch.setattr(dataset, "git_state", lambda: {"commit": "abc1234567", "dirty": True, "diff_sha256": "feed"})

    def stop(*a, **kw):
        raise KeyboardInterrupt("stopped before measuring")
    monkeypatch.setattr(study, "run_study", stop)
    r = run_here("report", "--quiet")
    assert r.returncode == 130
    assert "note: measuring from git abc1234567, uncommitted changes to the measuring code (diff sha256 feed)" in r.stderr
