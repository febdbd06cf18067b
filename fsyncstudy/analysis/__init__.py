"""Tables the notebooks show, computed from a dataset's frames: the shapes between statistics
and figures.  Pure: frames (and meta dicts) in, tables out; nothing here measures or reads files.

The notebooks call these and stay short; anything a notebook would compute twice lives here.
One module per topic, and ``text`` for the sentences built from their tables:

- ``sweep``: a sweep dataset (notebooks 01-03, the report's index): machine, targets, the task's
  table, interval curves, preallocation, the durability/throughput frontier;
- ``crash``: the power cuts' loss windows (notebooks 03-04);
- ``peers``: ours against fio and pg_test_fsync (notebook 05);
- ``tworuns``: two runs side by side: the C loop's write ceiling beside a sweep, run B against run A
  (notebooks 01-02, 07);
- ``choice``: the one computed answer per durable target and writer count (the index, notebook 01,
  ``python -m fsyncstudy answer``);
- ``load``: at your rate: the open-loop load study's latencies, knees and advice (notebook 06);
- ``realdb``: real databases against their predictions, and what their power cuts lost (notebook 08);
- ``fleet``: hosts side by side (notebook 09);
- ``writepaths``: the write paths beside their baselines, their tails and what each kept (notebook 10);
- ``promise``: does the disk keep its promise: plausibility per target, the flush-honesty check (notebook 11);
- ``text``: sentences, and ``Checks``, the invariants a notebook asserts.

Every name is re-exported here, so ``from fsyncstudy import analysis; analysis.answer(df)`` is the
way to call them; the topic modules import only from lower layers and from each other, ``text`` last.
"""
from .choice import (FIELDS as ANSWER_FIELDS, answer, answer_json, answer_lines, answer_table, group_against_always,
                     recommendation_lines)
from .crash import crash_table, loss_windows
from .fleet import FLEET_METHOD, fleet_cells, fleet_hosts, fleet_outlier, fleet_roles, fleet_spread, fleet_variance
from .load import (DEFAULT_LOSS_BUDGETS_MS, DEFAULT_RATE, KNEE_FACTOR, KNEE_FLOOR_US, LOAD_METHOD, advise,
                   busy_summary, geomean, keeps_up, knees, load_summary)
from .peers import peers_summary
from .promise import diskcheck_table, measured_sync_s, plausibility_table, promise_lines
from .realdb import (PREDICT_MARGIN, QUIET_FLUSHES_PER_COMMIT, prediction_verdict, realdb_at_rate, realdb_losses,
                     realdb_predictions)
from .sweep import (BASELINE, CRASH_TARGET, TASK, display_label, frontier_points, interval_curves, machine_table,
                    none_vs_batch, prealloc_table, reference_rows, rendering_commit, summary, target_nature, targets_caveat, targets_table,
                    task_table, writeback_applies)
from .claim import Claim
from .text import (CPU_SHARE_TEXT, Checks, advice_lines, at_rate_lines, ceiling_text, cpu_bound_text, flush_attribution,
                   frontier_claims, interval_claims, knee_claims, peers_claims,
                   fmt_ratio, prediction_why, ratio_text, span, writeback_phrase)
from .tworuns import ceiling_ratios, diff_runs, diff_sorted, diff_summary, n_text, pair_targets, write_ceiling

__all__ = [
    "ANSWER_FIELDS", "BASELINE", "CPU_SHARE_TEXT", "Claim", "frontier_claims", "group_against_always", "interval_claims", "knee_claims", "peers_claims", "answer", "answer_json", "answer_lines", "answer_table", "recommendation_lines", "CRASH_TARGET", "Checks", "DEFAULT_LOSS_BUDGETS_MS", "DEFAULT_RATE", "FLEET_METHOD",
    "KNEE_FACTOR", "KNEE_FLOOR_US", "LOAD_METHOD", "PREDICT_MARGIN", "QUIET_FLUSHES_PER_COMMIT", "prediction_verdict", "TASK", "advice_lines", "advise",
    "at_rate_lines", "busy_summary", "ceiling_ratios", "ceiling_text", "cpu_bound_text", "crash_table", "diff_runs", "diff_sorted", "diff_summary", "n_text",
    "display_label", "fleet_cells", "fleet_hosts", "fleet_outlier", "fleet_roles", "fleet_spread", "fleet_variance",
    "flush_attribution", "fmt_ratio", "frontier_points", "geomean", "interval_curves", "keeps_up",
    "knees", "load_summary", "loss_windows", "machine_table", "none_vs_batch", "pair_targets", "peers_summary",
    "prealloc_table", "prediction_why", "ratio_text", "realdb_at_rate", "realdb_losses", "realdb_predictions",
    "reference_rows", "rendering_commit", "span", "summary", "target_nature", "targets_caveat", "targets_table", "task_table", "write_ceiling",
    "writeback_applies", "writeback_phrase",
]
