"""The one loop that fills a dataset: every row recorded, failures counted by their error, one context
per group of units, and Ctrl-C a recorded stop that the same call resumes."""
import pytest

from fsyncstudy import dataset, runner

SCHEMA = [["group", "str"], ["n", "int"], ["status", "str"], ["error", "str"]]


def _open(out):
    return dataset.open_or_resume(out, "runner-test", {"units": 6}, SCHEMA, "rows.csv")


def test_the_runner_records_counts_shares_one_context_per_group_and_resumes_after_ctrl_c(tmp_path):
    out = tmp_path / "d"
    todo = [("a", 0), ("a", 1), ("b", 2), ("b", 3), ("c", 4), ("c", 5)]
    opened, closed = [], []

    class Session:
        def __init__(self, items):
            self.group = items[0][0]

        def __enter__(self):
            opened.append(self.group)
            return self

        def __exit__(self, *exc):
            closed.append(self.group)

    def run_one(item, session):
        group, n = item
        assert session.group == group and closed.count(group) == 0    # its group's context, still open
        if n == 4:
            raise KeyboardInterrupt
        return {"group": group, "n": n, "status": "ok" if n != 1 else "error", "error": "" if n != 1 else "E: one"}

    ds = _open(out)
    s = runner.Summary(out=ds.path, planned=len(todo), skipped=0)
    with pytest.raises(KeyboardInterrupt, match="interrupted after 4 new units; .*rows.csv keeps every finished one"):
        runner.fill(ds, s, todo, run_one, label="test", unit="unit", progress=False,
                    session=(lambda item: item[0], Session))
    assert opened == closed == ["a", "b", "c"] and s.interrupted
    assert (s.ran, s.failed, s.errors) == (4, 1, {"E: one": 1})
    rows = dataset.read_rows(out / "rows.csv")
    assert [int(r["n"]) for r in rows] == [0, 1, 2, 3]

    ds = _open(out)                                   # the same call resumes: only what did not count runs
    done = ds.done(lambda r: int(r["n"]), runner.status_ok)
    todo2 = [t for t in todo if t[1] not in done]
    s2 = runner.Summary(out=ds.path, planned=len(todo), skipped=len(done))
    seen = []
    runner.fill(ds, s2, todo2, lambda item, _: seen.append(item) or {"group": item[0], "n": item[1], "status": "ok",
                                                                     "error": ""},
                label="test", unit="unit", progress=False, after=lambda item, row, s: s.notes.append(item[1]))
    assert seen == [("a", 1), ("c", 4), ("c", 5)] and s2.notes == [1, 4, 5]
    assert (s2.skipped, s2.ran, s2.failed, s2.interrupted) == (3, 3, 0, False)
