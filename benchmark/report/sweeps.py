"""The report's Sweeps section: each grid study (``benchmark sweep``) as a heatmap (2 parameters, the form of the
seed thesis' Table 4.2), a line with 95 % t-intervals over the folds (1 parameter, Table 4.1) or a table (more),
beside the thesis' figure of the same shape where the loss and parameters match.

The thesis' figures are test Recall@1 of a BN-Inception trunk on other splits; ours are validation MAP@R and P@1
over the folds. They are shown for the shape of the curve (where the optimum lies), not to compare values.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from html import escape

import pandas as pd
import plotly.graph_objects as go

from benchmark.report.collect import REFERENCE_DIR, StudyData
from benchmark.results import mean_and_ci
from benchmark.tuning.grid import FOLD_METRICS, SWEEP_ATTR, Grid, sweep_table

THESIS_TABLES = REFERENCE_DIR / "thesis_scale_tables.csv"
THESIS_SOURCE = ('master\'s thesis "Softmax 関数を用いた Deep Metric Learning における動的スケーリングパラメタに関する'
                 '研究" ("A study of dynamic scaling parameters in deep metric learning with the softmax function", '
                 'University of Tokyo, 2021); BN-Inception, 64-d embedding, test Recall@1')
# (loss, swept parameters in search-space order) -> the thesis table of that shape, and what it shows.
THESIS_FIGURES = {
    ("proxy_anchor", ("alpha", "margin")): ("4.2", "Proxy Anchor, scale alpha x margin, Cars196 (reproduced there "
                                                   "from Kim et al., CVPR 2020)"),
    ("soft_triple", ("la",)): ("4.1", "SoftTriple at constant scales la, CUB200 and Cars196"),
}

Embed = Callable[[go.Figure, str], str]


def sweeps_section(sweeps: list[StudyData], embed: Embed) -> str:
    if not sweeps:
        return ""
    out = ["<h2>Sweeps</h2>",
           '<p class="note">Grid studies (<code>benchmark sweep</code>): the mean over the folds of each grid '
           "point's best validation metrics; a line's error bars are the 95 % t-interval over the folds. Where the "
           "seed thesis has a figure of the same shape it is shown beside, for the shape only: it reports test "
           "Recall@1 of another trunk on other data.</p>"]
    out += [_sweep(s, embed) for s in sweeps]
    return "\n".join(out)


def _sweep(s: StudyData, embed: Embed) -> str:
    grid = Grid.from_attr(s.attrs[SWEEP_ATTR])
    names = list(grid.values)
    table = sweep_table(s.study)
    fixed = ", ".join(f"{k}={v}" for k, v in grid.fixed.items()) or "none"
    out = [f'<section class="sweep" id="sweep-{escape(s.name)}"><h3>{escape(s.loss)} on {escape(s.dataset)} '
           f"({escape(s.protocol)}) — sweep {escape(s.name)}</h3>",
           f"<p>Grid points trained {s.finished} / {s.total}. Swept: {escape(', '.join(names))}; fixed by "
           f"--param: {escape(fixed)}; every other parameter at its search-space default.</p>"]
    ours = []
    if len(names) == 2:
        ours = [embed(heatmap(table, names, metric), f"Sweep {s.name}: mean validation {label}")
                for metric, label in FOLD_METRICS.items()]
    elif len(names) == 1:
        ours = [embed(line_figure(table, names[0]), f"Sweep {s.name}: validation metrics vs {names[0]}")]
    reference = _reference(s.loss, tuple(names), embed)
    if ours or reference:
        # The reference beside our MAP@R figure, the one of the same shape.
        parts = ours[:1] + reference + ours[1:]
        out.append('<div class="sweep-figures" style="display:flex;flex-wrap:wrap;gap:1em">'
                   + "".join(f'<div style="flex:1 1 460px;min-width:0">{part}</div>' for part in parts)
                   + "</div>")
    out.append(_table(table, names))
    out.append("</section>")
    return "\n".join(out)


def heatmap(table: pd.DataFrame, names: list[str], metric: str) -> go.Figure:
    """Rows: the first parameter's values, columns: the second's; each cell's text is its mean."""
    rows, columns = names
    ys, xs = list(dict.fromkeys(table[rows])), list(dict.fromkeys(table[columns]))
    means = {(r[rows], r[columns]): _finite(r[f"{metric}/mean"]) for r in table.to_dict("records")}
    z = [[means[(y, x)] for x in xs] for y in ys]
    return _heatmap(z, xs, ys, columns, rows, FOLD_METRICS[metric])


def line_figure(table: pd.DataFrame, name: str) -> go.Figure:
    """Each metric's mean over the folds vs the parameter, with the 95 % t-interval over the folds as error bars."""
    figure = go.Figure()
    for metric, label in FOLD_METRICS.items():
        stats = [mean_and_ci(values) for values in table[f"{metric}/folds"]]
        means = [_finite(mean) for mean, _, _ in stats]
        figure.add_trace(go.Scatter(
            x=list(table[name]), y=means, mode="lines+markers", name=label,
            error_y={"type": "data", "visible": True,
                     "array": [_finite(high - mean) for mean, _, high in stats],
                     "arrayminus": [_finite(mean - low) for mean, low, _ in stats]},
        ))
    figure.update_xaxes(title_text=name)
    figure.update_yaxes(title_text="validation metric (mean over folds)")
    return figure


def thesis_rows(table_id: str) -> list[dict]:
    with open(THESIS_TABLES, newline="") as f:
        return [row for row in csv.DictReader(f) if row["table"] == table_id]


def _reference(loss: str, names: tuple[str, ...], embed: Embed) -> list[str]:
    match = THESIS_FIGURES.get((loss, names))
    if match is None:
        return []
    table_id, what = match
    rows = thesis_rows(table_id)
    title = f"Reference, shape only: thesis Table {table_id}, {what}"
    if len(names) == 2:
        ys = list(dict.fromkeys(float(r["scale_start"]) for r in rows))
        xs = list(dict.fromkeys(float(r["margin"]) for r in rows))
        values = {(float(r["scale_start"]), float(r["margin"])): float(r["value"]) for r in rows}
        z = [[values.get((y, x)) for x in xs] for y in ys]
        figure = _heatmap(z, xs, ys, names[1], names[0], "test Recall@1")
    else:
        figure = go.Figure()
        for dataset in dict.fromkeys(r["dataset"] for r in rows):
            points = [r for r in rows if r["dataset"] == dataset]
            figure.add_trace(go.Scatter(x=[float(r["scale_start"]) for r in points],
                                        y=[float(r["value"]) for r in points], mode="lines+markers", name=dataset))
        figure.update_xaxes(title_text=names[0])
        figure.update_yaxes(title_text="test Recall@1")
    note = (f'<p class="note">Source: Table {escape(table_id)} of the {escape(THESIS_SOURCE)}. {escape(what)}. '
            "Another trunk, other data and another metric than this sweep: compare the shape, not the values.</p>")
    return [embed(figure, title) + note]


def _heatmap(z: list[list], xs: list, ys: list, x_name: str, y_name: str, label: str) -> go.Figure:
    text = [["-" if v is None else f"{v:.4f}" for v in row] for row in z]
    figure = go.Figure(go.Heatmap(z=z, x=[_label(x) for x in xs], y=[_label(y) for y in ys], text=text,
                                  texttemplate="%{text}", colorscale="Viridis", colorbar={"title": {"text": label}},
                                  hovertemplate=f"{x_name}=%{{x}}<br>{y_name}=%{{y}}<br>{label} %{{text}}"
                                                "<extra></extra>"))
    # Categorical axes: grid values are often log-spaced (4, 8, ..., 64) and each deserves a column of its own.
    figure.update_xaxes(title_text=x_name, type="category")
    figure.update_yaxes(title_text=y_name, type="category")
    return figure


def _table(table: pd.DataFrame, names: list[str]) -> str:
    head = [*names, "trial", "folds", *(f"val {label} (95 % CI over folds)" for label in FOLD_METRICS.values())]
    out = ['<table class="sweep-grid"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for row in table.to_dict("records"):
        cells = [_label(row[name]) for name in names]
        cells.append("-" if pd.isna(row["trial"]) else str(int(row["trial"])))
        cells.append(str(row["folds"]))
        for metric in FOLD_METRICS:
            mean, low, high = mean_and_ci(row[f"{metric}/folds"])
            cells.append("-" if math.isnan(mean) else f"{mean:.4f}"
                         + ("" if math.isnan(low) else f" ± {(high - low) / 2:.4f}"))
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _finite(value) -> float | None:
    """NaN (a point not trained yet, an interval from one fold) as None, which plotly leaves blank."""
    return None if value is None or not math.isfinite(float(value)) else float(value)
