"""Interactive exploration in JupyterLab: pick a target, a metric, a kind of strategy, a sync method
and a preallocation; the figure and the table follow.

``sweep_view`` is the pure part (frames in, a figure and a table out: tests call it); ``sweep``
wraps it in ipywidgets.  The report (static HTML) leaves the widget cells out: the notebooks'
static figures say the same.
"""
from __future__ import annotations

import pandas as pd

from . import stats
from .targets import strip_verdict

#: The metrics a reader can pick: column, axis label.
METRICS = {"ops_per_sec": "ops/sec", "ack_latency_us_p99": "ack latency p99 (µs)",
           "sync_latency_us_p50": "sync latency p50 (µs)", "exposure_ms_max": "worst exposure per trial (ms)"}
ANY = "any"


def choices(df: pd.DataFrame) -> dict[str, list]:
    """What there is to pick from in a sweep's trials."""
    return {"target": list(dict.fromkeys(df["target_label"].map(strip_verdict))), "metric": list(METRICS),
            "kind": [ANY, *dict.fromkeys(df["kind"])], "sync_method": [ANY, *sorted(set(df["sync_method"]))],
            "prealloc": [ANY, *sorted(set(df["prealloc"]))]}


def sweep_view(summ: pd.DataFrame, target: str, metric: str = "ops_per_sec", kind: str = ANY,
               sync_method: str = ANY, prealloc: str = ANY):
    """The chosen rows of a sweep's summary as (figure, table): the metric's mean per configuration
    with its 95% t interval, sorted by the interval N."""
    import matplotlib.pyplot as plt

    from .plots import PALETTE, _yerr
    w = stats.wide(summ, metric)
    w = w[w["target_label"].map(strip_verdict) == target]
    for col, want in (("kind", kind), ("sync_method", sync_method), ("prealloc", prealloc)):
        if want != ANY:
            w = w[w[col] == want]
    w = w.sort_values(["kind", "interval_ms", "writers", "prealloc"], na_position="first")
    table = w[["config_label", "n", "mean", "t_low", "t_high"]].rename(
        columns={"config_label": "configuration", "mean": METRICS[metric], "t_low": "95% t low", "t_high": "95% t high"})
    fig, ax = plt.subplots(figsize=(10, 0.3 * max(len(w), 3) + 1.2))
    ax.barh(range(len(w)), w["mean"], xerr=_yerr(w), color=[PALETTE[{"always": 0, "batch": 1, "group": 2,
                                                                       "none": 3}.get(k, 4)] for k in w["kind"]],
            capsize=2)
    ax.set_yticks(range(len(w)), w["config_label"], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel(METRICS[metric] + (" (log)" if metric == "ops_per_sec" else ""))
    if metric == "ops_per_sec" and len(w):
        ax.set_xscale("log")
    ax.set_title(f"{target}: {len(w)} configurations, mean with 95% t interval over trials", loc="left",
                 fontsize="small")
    fig.tight_layout()
    return fig, table.reset_index(drop=True)


def sweep(df: pd.DataFrame, summ: pd.DataFrame):
    """The widgets: dropdowns for target, metric, kind, sync method and preallocation over ``sweep_view``."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    c = choices(df)
    controls = {k: w.Dropdown(options=v, description=k.replace("_", " "), value=v[0]) for k, v in c.items()}
    out = w.Output()

    def show(*_):
        with out:
            out.clear_output(wait=True)
            fig, table = sweep_view(summ, **{k: v.value for k, v in controls.items()})
            display(fig)
            plt.close(fig)  # shown once, in the output, not again at the cell's end
            display(table.style.format({METRICS[controls["metric"].value]: "{:,.1f}", "95% t low": "{:,.1f}",
                                        "95% t high": "{:,.1f}"}).hide(axis="index"))
    for ctl in controls.values():
        ctl.observe(show, names="value")
    show()
    return w.VBox([w.HBox(list(controls.values())[:3]), w.HBox(list(controls.values())[3:]), out])
