"""Proxy diagnostics in the report: how the cosine similarities between class proxies evolve during training.

One figure per (dataset, protocol, loss) with stored diagnostics: the mean and the variance of the proxy-pair
cosines at each validation epoch (averaged over folds and runs), one line per configuration, so a scale schedule
can be compared with the constant scale; and the distribution at the last validation of each configuration.
"""

from __future__ import annotations

from html import escape
from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchmark.report.collect import ReportData, configuration


def proxy_section(data: ReportData, embed: Callable[[go.Figure, str], str]) -> str:
    frame = data.proxy_diagnostics
    if frame.empty:
        return ""
    frame = frame.assign(configuration=[_label(kind, name) for kind, name in zip(frame["kind"], frame["study_name"])])
    out = ['<h2 id="proxy-diagnostics">Proxy diagnostics</h2>',
           '<p class="note">Cosine similarities between the learned proxies of different classes at each '
           "validation (the seed thesis' §5.1 analysis): a small softmax scale leaves the proxies close together, a "
           "large one spreads them. Mean over folds and runs; the histogram is the last validation of each "
           "configuration, summed over folds and runs.</p>"]
    for (dataset, protocol, loss), group in frame.groupby(["dataset", "protocol", "loss"], sort=True):
        out.append(f"<h3>{escape(str(loss))} on {escape(str(dataset))} ({escape(str(protocol))})</h3>")
        out.append(embed(_figure(group), f"Proxy cosine similarities: {loss} on {dataset} ({protocol})"))
    return "\n".join(out)


def _label(kind: str, study_name: str) -> str:
    """Runs of one configuration share a label: tuning trials, tests of the best, or tests of fixed values."""
    return {"trial": "tuning trials", "run": "runs"}.get(kind) or f"test {configuration(study_name) or '(best)'}"


def _figure(group: pd.DataFrame) -> go.Figure:
    figure = make_subplots(rows=1, cols=3, subplot_titles=("mean cosine", "variance", "last validation"))
    for index, (label, rows) in enumerate(group.groupby("configuration", sort=True)):
        colour = _COLOURS[index % len(_COLOURS)]
        by_epoch = rows.groupby("epoch", sort=True)[["mean", "variance"]].mean()
        for col, column in ((1, "mean"), (2, "variance")):
            figure.add_trace(go.Scatter(x=by_epoch.index, y=by_epoch[column], mode="lines+markers", name=label,
                                        legendgroup=label, showlegend=col == 1, line={"color": colour}),
                             row=1, col=col)
        last = rows.loc[rows.groupby(["run_id", "fold"])["epoch"].idxmax()]
        counts = np.sum([s["histogram"] for s in last["summary"]], axis=0, dtype=float)
        counts = counts / max(counts.sum(), 1.0)
        # The stored histograms have fixed, equal bins over [-1, 1] (benchmark.evaluation.proxy_diagnostics).
        centres = np.linspace(-1.0, 1.0, len(counts) + 1)[:-1] + 1.0 / len(counts)
        figure.add_trace(go.Scatter(x=centres, y=counts, mode="lines", name=label, legendgroup=label,
                                    showlegend=False, line={"color": colour, "shape": "hvh"}), row=1, col=3)
    figure.update_xaxes(title_text="epoch", row=1, col=1)
    figure.update_xaxes(title_text="epoch", row=1, col=2)
    figure.update_xaxes(title_text="cosine", range=[-1, 1], row=1, col=3)
    figure.update_yaxes(title_text="share of pairs", row=1, col=3)
    return figure


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
