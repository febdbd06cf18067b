"""The one computed answer (analysis.answer) on small synthetic sweeps: each rule it promises."""
import json
import math
import random
import subprocess
import sys

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as hs

from fsyncstudy import analysis
from conftest import REPO

LABELS = {"always": "always", "group_0ms": "group_0ms"}


def sweep(configs: dict, rounds: int = 5, target="/disk", label="ext4 on vda", fstype="ext4", bound="storage",
          noise=0.02, seed=0) -> pd.DataFrame:
    """configs: {(strategy, writers, prealloc): ops/s}; every configuration once per round."""
    rng = random.Random(seed)
    rows = []
    for r in range(rounds):
        for (strategy, w, prealloc), ops in configs.items():
            extra = [f"{w} writers"] if w > 1 else []
            extra += [prealloc] if prealloc != "append" else []
            rows.append({"round": r, "target": target, "target_label": label, "target_durability": "durable",
                         "target_fstype": fstype, "kind": strategy.split("_")[0], "writers": w, "prealloc": prealloc,
                         "config": f"{strategy}/w{w}/{prealloc}/fdatasync",
                         "config_label": strategy + (f" ({', '.join(extra)})" if extra else ""),
                         "ops_per_sec": ops * math.exp(rng.gauss(0, noise)), "bound": bound})
    return pd.DataFrame(rows)


def row(rows, writers):
    return next(r for r in rows if r["writers"] == writers)


def test_a_group_configuration_faster_only_with_16_writers_is_never_the_one_writer_answer():
    df = sweep({("always", 1, "append"): 7000, ("group_0ms", 1, "append"): 6000,
                ("group_0ms", 16, "append"): 15000, ("always", 16, "append"): 12000})
    rows = analysis.answer(df)
    one, sixteen = row(rows, 1), row(rows, 16)
    assert one["choice"] == "always/w1/append/fdatasync" and one["ratio"] == 1.0
    # at 16 writers group commit is compared with always at 16 writers, not with one
    assert sixteen["choice"] == "group_0ms/w16/append/fdatasync" and sixteen["like_with_like"]
    assert sixteen["baseline"] == "always/w16/append/fdatasync" and 1.15 < sixteen["ratio"] < 1.35


def test_without_always_at_the_same_writers_the_row_says_the_writers_differ():
    df = sweep({("always", 1, "append"): 7000, ("group_0ms", 4, "append"): 14000})
    r = row(analysis.answer(df), 4)
    assert (r["baseline_writers"], r["like_with_like"]) == (1, False)
    assert "the writers differ" in analysis.answer_lines([r])[0]


def test_preallocation_is_part_of_the_choice():
    df = sweep({("always", 1, "append"): 7000, ("always", 1, "zero-fill"): 10500})
    r = row(analysis.answer(df), 1)
    assert r["choice"] == "always/w1/zero-fill/fdatasync" and r["resolved"] and 1.4 < r["ratio"] < 1.6


@settings(max_examples=40, deadline=None)
@given(hs.integers(0, 10_000), hs.floats(0.0, 0.03))
def test_a_row_is_resolved_exactly_when_its_simultaneous_interval_against_the_runner_up_excludes_a_tie(seed, gap):
    # two candidates within a few percent of each other, with 10% noise over 3 rounds: never a winner
    df = sweep({("always", 1, "append"): 7000, ("always", 1, "zero-fill"): 7000 * (1 + gap)}, rounds=3,
               noise=0.10, seed=seed)
    r = row(analysis.answer(df), 1)
    runner = r["runner_up_low"], r["runner_up_high"]
    if r["resolved"]:
        assert runner[0] > 1.0          # resolved only when the simultaneous interval excludes a tie
    else:
        assert r["tied"] and (math.isnan(runner[0]) or runner[0] <= 1.0)


def test_identical_candidates_are_not_resolved():
    df = sweep({("always", 1, "append"): 7000, ("always", 1, "zero-fill"): 7000}, noise=0.05, seed=3)
    r = row(analysis.answer(df), 1)
    assert not r["resolved"] and r["tied"]
    assert "not resolved" in analysis.answer_lines([r])[0]


def test_a_fuse_target_that_is_not_cpu_bound_is_never_called_storage_bound():
    df = sweep({("always", 1, "append"): 3000}, label="lab:powercut", fstype="fuse.fsyncstudy")
    assert row(analysis.answer(df), 1)["bound"] == "fuse-daemon or storage"
    df = sweep({("always", 1, "append"): 3000}, bound="cpu")
    assert row(analysis.answer(df), 1)["bound"] == "cpu"
    # measured (daemon_cpu_share): a daemon busy the whole trial is the bound, and a quiet one is not
    busy = sweep({("none", 1, "append"): 20000}, label="lab:powercut", fstype="fuse.fsyncstudy", bound="fuse-daemon")
    assert analysis.choice._bound(busy.assign(daemon_cpu_share=0.9)) == "fuse-daemon"
    quiet = sweep({("always", 1, "append"): 3000}, label="lab:powercut", fstype="fuse.fsyncstudy")
    assert analysis.choice._bound(quiet.assign(daemon_cpu_share=0.3)) == "storage"


def test_the_answer_command_on_the_committed_sweep():
    p = subprocess.run([sys.executable, "-m", "fsyncstudy", "answer", "--dataset", "data/standard-vm-6b60e6aa-4b661b",
                        "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["answers"]
    assert rows and all(list(r) == list(analysis.ANSWER_FIELDS) for r in rows)
    # the machine's own disk first, every writer count measured, and no one-writer answer with 16 writers
    assert rows[0]["target_label"] == "ext4 on vda" and {r["writers"] for r in rows} == {1, 4, 16}
    assert all(r["choice"].split("/")[1] == f"w{r['writers']}" for r in rows)
    assert all(r["like_with_like"] == (r["baseline_writers"] == r["writers"]) for r in rows)


def test_targets_are_said_for_what_they_are():
    meta = {"environment": {"targets": {
        "/d": {"fstype": "ext4", "source": "/dev/vda", "label": "ext4 on vda"},
        "/l": {"fstype": "xfs", "source": "/dev/loop0", "loop_backing_file": "/img", "lab_target": "lab:xfs"},
        "/p": {"fstype": "fuse.fsyncstudy", "source": "x", "lab_target": "lab:powercut"},
        "/h": {"fstype": "fuse.fsyncstudy", "source": "y", "emulated": True, "lab_target": "lab:hdd-emulated"}}}}
    kinds = [analysis.target_nature(t) for t in meta["environment"]["targets"].values()]
    assert kinds == ["device", "nested", "fuse", "emulated"]
    text = analysis.targets_caveat(meta)
    assert "lab:xfs is nested" in text and "lab:powercut is FUSE" in text and "lab:hdd-emulated emulates" in text
    assert "the lab's layering, not the filesystems'" in text
    only_disk = {"environment": {"targets": {"/d": meta["environment"]["targets"]["/d"]}}}
    assert analysis.targets_caveat(only_disk) == ""


def _committed(kind: str) -> str:
    """The newest dataset of ``kind`` committed in data/ (not this machine's runs: the test reads what CI has)."""
    from fsyncstudy import catalog
    return str(next(p for p, _ in catalog.datasets(kind) if p.parent == catalog.DATA).relative_to(REPO))


def test_answer_and_advise_hold_their_rules_on_the_newest_committed_datasets():
    p = subprocess.run([sys.executable, "-m", "fsyncstudy", "answer", "--dataset", _committed("sweep"), "--json"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["answers"]
    # measured since always runs with W writers: every row is like with like
    assert rows and all(r["like_with_like"] and r["baseline_writers"] == r["writers"] for r in rows)
    assert all(r["resolved"] == (not r["tied"]) for r in rows)
    load, crash = _committed("load"), _committed("crash")
    # the command once, for its JSON fields; the rules over rates and budgets in-process (the same function)
    p = subprocess.run([sys.executable, "-m", "fsyncstudy", "advise", "--rate", "2000", "--loss-budget-ms", "0",
                        "--dataset", load, "--crash-dataset", crash, "--json"], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["crash_dataset"].endswith(crash.split("/")[-1])
    fields = {"knee_per_s", "writers", "advised", "resolved", "tied", "power_cuts", "window_ms"}
    assert all(fields <= set(c) for c in out["candidates"] if c.get("config"))
    from fsyncstudy import crash as crash_mod
    from fsyncstudy import loadstudy
    df, cuts = loadstudy.load(REPO / load)[0], crash_mod.load(REPO / crash)[0]
    for rate in (500, 2000, 5000):
        for budget in (0, 20):
            adv = analysis.advise(df, rate, budget, cuts=cuts).dropna(subset=["config"])
            assert len(adv)
            for c in adv[adv["advised"]].to_dict("records"):
                # never above the knee, never over the loss budget, a durable zero backed by power cuts
                assert c["knee_per_s"] is not None and rate <= c["knee_per_s"], c
                assert c["window_ms"] is not None and c["window_ms"] <= budget, c
                assert c["window_ms"] > 0 or c["power_cuts"] >= 1, c
                assert c["resolved"] == (not c["tied"]), c


def test_a_writer_and_its_fuse_daemon_busy_together_are_the_bound_not_storage():
    from fsyncstudy.trial import bound_of
    # none on lab:powercut, 2026-12-07: the writer 24% on a CPU, the daemon 80%: each write a round trip
    assert bound_of(0.24, 0.0, 0.80) == "fuse-daemon"
    assert bound_of(0.56, None, 0.44) == "fuse-daemon"      # group commit, 16 writers: the pair still busy
    assert bound_of(0.10, 0.0, 0.54) == "storage"           # always: the daemon waits on the host's fsync
    assert bound_of(0.85, 0.0, 0.10) == "cpu" and bound_of(0.5, 0.35) == "cpu"
    assert bound_of(0.3, 0.0, None) == "storage" and bound_of(0.3, 0.0, float("nan")) == "storage"


def test_a_dataset_reads_with_todays_bound_from_the_shares_it_measured():
    from fsyncstudy import sweep as sweep_mod
    df, _ = sweep_mod.load(REPO / "data" / "standard-vm-78139a10-762866")
    fuse = df[(df["target_label"] == "lab:powercut") & (df["strategy"] == "none")]
    # measured under the daemon-alone rule, several of these trials said storage; their shares say otherwise
    assert len(fuse) == 5 and (fuse["bound"] == "fuse-daemon").all()
    assert ((fuse["cpu_share"] + fuse["daemon_cpu_share"]) >= 0.8).all()
