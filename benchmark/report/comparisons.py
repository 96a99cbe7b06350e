"""Configurations compared on the test set: one loss under several scale schedules, batch samplers or fixed
parameter values (``benchmark test --param ...``, ``--batch-sampler``), with their 95 % t-intervals side by side.

A comparison appears for every (dataset, preset, loss) that has test results for more than one configuration. The
intervals come from the reproductions of each configuration; overlapping intervals mean the runs do not tell the
configurations apart.
"""

from __future__ import annotations

from html import escape
from typing import Callable

import pandas as pd
import plotly.graph_objects as go

from benchmark.evaluation.registry import MODES, OBJECTIVE, metric_label
from benchmark.report.collect import configuration

_SHOWN = tuple((mode, metric) for mode in MODES for metric in (OBJECTIVE, "precision_at_1"))
# The figure keeps to MAP@R, MLRC's headline metric: four intervals per row would hide each other.
_PLOTTED = tuple((mode, OBJECTIVE) for mode in MODES)


def comparison_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The test summary with ``preset`` (protocol without its batch sampler) and ``configuration`` (what differs:
    the batch sampler and the fixed values), restricted to (dataset, preset, loss) groups of 2+ configurations."""
    if summary.empty:
        return summary
    frame = summary.assign(
        preset=summary["protocol"].str.split("+").str[0],
        configuration=[_describe(p, n) for p, n in zip(summary["protocol"], summary["study_name"])],
    )
    sizes = frame.groupby(["dataset", "preset", "loss"])["configuration"].transform("nunique")
    return frame[sizes > 1]


def _describe(protocol: str, study_name: str) -> str:
    sampler = protocol.split("+", 1)[1] if "+" in protocol else "m_per_class"
    values = configuration(study_name)
    return f"{sampler} batches, " + (values[1:-1].replace(",", ", ") if values else "best tuned parameters")


def comparisons_section(summary: pd.DataFrame, embed: Callable[[go.Figure, str], str]) -> str:
    frame = comparison_frame(summary)
    if frame.empty:
        return ""
    out = ['<h2 id="comparisons">Configurations compared</h2>',
           '<p class="note">Test metrics of one loss under different scale schedules, batch samplers or fixed '
           "parameters: mean [95 % t-interval] over n reproductions.</p>"]
    for (dataset, preset, loss), group in frame.groupby(["dataset", "preset", "loss"], sort=True):
        out.append(f"<h3>{escape(loss)} on {escape(dataset)} ({escape(preset)})</h3>")
        out.append(_table(group))
        out.append(embed(_figure(group), f"{loss} on {dataset} ({preset}): configurations, 95 % intervals"))
    return "\n".join(out)


def _table(group: pd.DataFrame) -> str:
    head = ["configuration", "n"] + [f"{MODES[m]} {metric_label(k)}" for m, k in _SHOWN]
    rows = []
    for name, rows_of in group.groupby("configuration", sort=True):
        by = rows_of.set_index(["mode", "metric"])
        n = int(by["n"].max())
        cells = [escape(name), str(n)]
        for key in _SHOWN:
            if key in by.index:
                r = by.loc[key]
                cells.append(f"{r['mean']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]")
            else:
                cells.append("-")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ('<table class="comparison"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _figure(group: pd.DataFrame) -> go.Figure:
    figure = go.Figure()
    for mode, metric in _PLOTTED:
        rows = group[(group["mode"] == mode) & (group["metric"] == metric)].sort_values("configuration")
        figure.add_trace(go.Scatter(
            x=rows["mean"], y=rows["configuration"], mode="markers", name=f"{MODES[mode]} {metric_label(metric)}",
            error_x={"type": "data", "symmetric": False, "array": rows["ci_high"] - rows["mean"],
                     "arrayminus": rows["mean"] - rows["ci_low"]},
        ))
    figure.update_layout(xaxis_title="test MAP@R", yaxis={"automargin": True})
    return figure
