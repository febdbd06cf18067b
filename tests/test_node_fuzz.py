"""The node under a seeded fuzz of a few thousand lines (benchmarks/node_fuzz.py runs 30,000+)."""
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import node_fuzz  # noqa: E402

#: The node's peak resident memory must stay under this, whatever the lines hold (a 3 MB line included).
PEAK_RSS_MB = 64


def test_the_node_survives_thousands_of_bad_lines_and_answers_each_request_once_with_the_right_code(disk_dir):
    r = node_fuzz.run(3000, seed=7, directory=str(disk_dir), timeout_s=120)
    assert r["exit"] == 0, r["tail"]
    assert r["not_json"] == []                                  # stdout holds only JSON messages
    assert r["missing_or_extra"] == 0 and r["wrong"] == [], r   # exactly one reply each, in order, right code
    assert r["requests_answerable"] > 1500 and r["lines"] > 3000
    assert r["peak_rss_mb"] is not None and r["peak_rss_mb"] < PEAK_RSS_MB, r["peak_rss_mb"]


def test_the_fuzzer_knows_a_wrong_code_when_it_sees_one(disk_dir):
    # the check above can fail: a reply the generator did not expect is counted
    pairs = list(node_fuzz.generate(50, seed=3))
    assert any(e is None for _, e in pairs) and any(e and e[1] == 12 for _, e in pairs)
    assert any(e and e[1] == "fsync_benchmark_ok" for _, e in pairs)
