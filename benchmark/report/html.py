"""One self-contained HTML report: leaderboards, per-loss tuning plots, the other sections' modules. Opens offline.

plotly.js is embedded once, at the top; each figure is its JSON in a ``<script>`` (with ``</`` escaped, so a
study or parameter named ``</script>`` cannot end the script) and a ``Plotly.newPlot`` call. Every text taken
from the database goes through ``html.escape``.
"""

from __future__ import annotations

import logging
import math
from html import escape

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import TrialState
from plotly.subplots import make_subplots

from benchmark.config import label_not_comparable
from benchmark.evaluation.registry import MODES, OBJECTIVE, metric_label
from benchmark.report.collect import (
    PUBLISHED_PROTOCOL,
    PUBLISHED_SOURCE,
    PUBLISHED_SUFFIX,
    REFERENCE_DATASETS,
    REFERENCE_SOURCE,
    ReportData,
    StudyData,
    leaderboard,
)
from benchmark.report.compute import compute_section, duration, run_costs
from benchmark.report.perf import perf_section
from benchmark.report.retrieval import STYLE as RETRIEVAL_STYLE
from benchmark.report.retrieval import retrieval_section
from benchmark.report.comparisons import comparisons_section
from benchmark.report.diagnostics import proxy_section
from benchmark.report.environment import STYLE as ENVIRONMENT_STYLE
from benchmark.report.environment import environment_section
from benchmark.report.sweeps import sweeps_section
from benchmark.report.collect import differences
from benchmark.report.tables import (DIFFERENCE_HEAD, LEGEND, NOT_COMPARABLE_NOTE, best_rows, columns,
                                     difference_rows, groups, head_labels, loss_text, reference, row_cells)
from benchmark.tuning.studies import NONFINITE_SCORE

logger = logging.getLogger(__name__)

# A parameter whose optimum lies within this fraction of its search range from a bound (log scale for log
# parameters): the search may have wanted to go further.
BOUND_FRACTION = 0.01
MIN_TRIALS_FOR_IMPORTANCE = 10
# One colour per fold, the same in every panel (plotly's default sequence, folds 1-4 and beyond).
_FOLD_COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer}
td.best{font-weight:bold;background:#e6f4e6}
tr.published td{font-style:italic;color:#555}
td.unlearned{color:#999}
.note{color:#666;font-size:.9em}
.bound{color:#b00;font-weight:bold}
section.loss{border-top:2px solid #ddd;margin-top:2em}
.plot{width:100%;max-width:1000px;height:420px}
table.leaderboard{width:100%;font-size:.9em}
.wide{max-width:100%;overflow-x:auto}
"""

# Click a header to sort by it (numbers by their data-sort value); a second click reverses.
_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, index){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.dataset.dir === 'desc' ? 1 : -1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
      rows.sort(function(a, b){
        var x = a.cells[index].dataset.sort, y = b.cells[index].dataset.sort;
        var nx = parseFloat(x), ny = parseFloat(y);
        if (isNaN(nx) && isNaN(ny)) return dir * String(x).localeCompare(String(y));
        if (isNaN(nx)) return 1; if (isNaN(ny)) return -1;
        return dir * (nx - ny);
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def render(data: ReportData, perf: dict | None = None) -> str:
    import plotly.offline

    board = leaderboard(data)
    figures = _Figures()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>DML benchmark report</title>',
        f"<style>{_STYLE}{RETRIEVAL_STYLE}{ENVIRONMENT_STYLE}</style>",
        f"<script>{plotly.offline.get_plotlyjs()}</script>",
        "</head><body>",
        "<h1>Deep-metric-learning benchmark</h1>",
        f'<p class="note">Storage {escape(data.storage)}; results {escape(data.results)}. {escape(LEGEND)} '
        "Click a column header to sort.</p>",
        "<h2>Leaderboard</h2>",
        _leaderboards(board),
        _differences(differences(data)),
        retrieval_section(board, data.examples),
        compute_section(board, run_costs(data.compute), figures.embed),
        comparisons_section(data.summary, figures.embed),
        "<h2>Per loss</h2>",
    ]
    parts += [_study_section(s, data, figures) for s in data.studies]
    parts.append(sweeps_section(data.sweeps, figures.embed))
    parts.append(proxy_section(data, figures.embed))
    if perf is not None:
        parts.append(perf_section(perf))
    parts += [environment_section(data), f"<script>{_SORT_JS}</script>", "</body></html>"]
    return "\n".join(parts)


# ---- leaderboard ------------------------------------------------------------------------------------------------


def _leaderboards(board: pd.DataFrame) -> str:
    if board.empty:
        return "<p>No studies or test results yet.</p>"
    out = []
    for dataset, protocol, rows in groups(board):
        with_reference = dataset in REFERENCE_DATASETS and protocol.split("+")[0] == "mlrc"
        out.append(f"<h3>{escape(dataset)} ({escape(protocol)})</h3>")
        if label_not_comparable(protocol):
            out.append(f'<p class="note">{escape(NOT_COMPARABLE_NOTE)}</p>')
        head = [*head_labels()[:3], "compute (wall)", *head_labels()[3:], "best val MAP@R (ours)"]
        if with_reference:
            head += ["MLRC best val MAP@R", "MLRC optimal hyperparameters"]
        # The leaderboard wraps its cells; a scroll box of its own (never the page's) only on very narrow windows.
        out.append(f'<div class="wide"><table class="sortable leaderboard" data-dataset="{escape(dataset)}"><thead><tr>'
                   + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>")
        best = {c: best_rows(rows, *c) for c in columns()}
        for i, row in rows.iterrows():
            texts = row_cells(row)
            cells = [_td(loss_text(row), row["loss"]), _td(texts[0], row["trials_finished"]), _td(texts[1], texts[1]),
                     _td(duration(row["compute_seconds"]) if row["compute_seconds"] else "-", row["compute_seconds"])]
            for k, c in enumerate(columns()):
                css = " ".join(x for x in ("best" if i in best[c] else "",
                                           "unlearned" if row.get(f"{c[0]}/{c[1]}/learned") is False else "") if x)
                cells.append(_td(texts[2 + k], row[f"{c[0]}/{c[1]}/mean"], css or None))
            cells.append(_td(texts[-2], row.get("separated_128/mean_average_precision_at_r/untrained")))
            cells.append(_td(texts[-1], row.get("separated_128/mean_average_precision_at_r/rank_low")))
            ours = row["best_val_map_at_r"]
            cells.append(_td("-" if _missing(ours) else f"{float(ours):.4f}", ours))
            if with_reference:
                optimum = row["mlrc_optimal_hparams"]
                cells.append(_td(reference(row), row["mlrc_best_val_map_at_r"]))
                cells.append(_td("-" if _missing(optimum) else optimum, "" if _missing(optimum) else optimum))
            published = ' class="published"' if row.get("published") else ""
            out.append(f'<tr data-loss="{escape(str(row["loss"]))}"{published}>' + "".join(cells) + "</tr>")
        out.append("</tbody></table></div>")
        if protocol == PUBLISHED_PROTOCOL and rows.get("published", pd.Series(dtype=bool)).astype(bool).any():
            out.append(f'<p class="note">Rows marked {escape(PUBLISHED_SUFFIX)}: {escape(PUBLISHED_SOURCE)}.</p>')
        if with_reference:
            out.append(f'<p class="note">MLRC columns: {escape(REFERENCE_SOURCE)}. Validation, not test, '
                       "figures: compare them with our best validation MAP@R.</p>")
    return "\n".join(out)


def _differences(diffs) -> str:
    """One "which differences are real" table per dataset, protocol, mode and metric."""
    if not diffs:
        return ""
    out = ["<h2>Which differences are real</h2>",
           '<p class="note">Every pair of losses: the mean of the paired differences over reproductions with the '
           "same seeds, the paired t-test's p Holm-adjusted over the table's pairs; \"real\" at p &lt; 0.05.</p>"]
    for dataset, protocol, mode, metric, rows in diffs:
        out.append(f"<h3>{escape(dataset)} ({escape(protocol)}): {escape(MODES[mode])} "
                   f"{escape(metric_label(metric))}</h3>")
        out.append('<table class="differences"><thead><tr>' + "".join(f"<th>{escape(h)}</th>"
                                                                     for h in DIFFERENCE_HEAD) + "</tr></thead><tbody>")
        out += ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in difference_rows(rows)]
        out.append("</tbody></table>")
    return "\n".join(out)


def _td(text, sort_value, css: str | None = None) -> str:
    sort = "" if _missing(sort_value) else str(sort_value)
    klass = f' class="{css}"' if css else ""
    return f'<td{klass} data-sort="{escape(sort)}">{escape(str(text))}</td>'


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return isinstance(value, float) and math.isnan(value) or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# ---- per study --------------------------------------------------------------------------------------------------


class _Figures:
    """Numbered figure containers and the script that draws each."""

    def __init__(self):
        self.count = 0

    def embed(self, figure: go.Figure, title: str) -> str:
        self.count += 1
        div_id = f"figure-{self.count}"
        figure.update_layout(title=title, margin={"t": 50})
        payload = figure.to_json().replace("</", "<\\/")
        # Drawn once the page is laid out: a figure drawn earlier takes the width its container had then (e.g. the
        # whole row, before the figure beside it exists) and overlaps its neighbour.
        return (f'<div id="{div_id}" class="plot"></div><script>document.addEventListener("DOMContentLoaded",'
                f'function(){{var f={payload};'
                f'Plotly.newPlot("{div_id}",f.data,f.layout,{{responsive:true,displaylogo:false}});}});</script>')


def _study_section(s: StudyData, data: ReportData, figures: _Figures) -> str:
    out = [f'<section class="loss" id="study-{escape(s.name)}"><h3>{escape(s.loss)} on {escape(s.dataset)} '
           f"({escape(s.protocol)}) — study {escape(s.name)}</h3>",
           f"<p>Trials finished {s.finished} / {s.total}; sampler "
           f"{escape(', '.join(s.attrs.get('samplers', [])) or 'not recorded')}.</p>"]
    if s.nonfinite:
        out.append(f"<p>{s.nonfinite} trial(s) stopped when their loss became non-finite and were scored "
                   f"{NONFINITE_SCORE:g}, as powerful-benchmarker scored them.</p>")
    complete = s.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        out.append("<p>No completed trial yet: no optimisation history, importances or best parameters.</p>")
    else:
        history = optuna.visualization.plot_optimization_history(s.study, target_name="validation MAP@R")
        # Optuna numbers trials from 0; people count from 1.
        for trace in history.data:
            if trace.x is not None:
                trace.x = [x + 1 for x in trace.x]
        history.update_xaxes(title_text="trial", tickformat="d", dtick=max(1, len(complete) // 10))
        out.append(figures.embed(history, f"Optimisation history: {s.name}"))
        out.append(_importances(s, len(complete), figures))
        out.append(figures.embed(_slice_plot(s.study), f"Slice plot: {s.name}"))
        out.append(_best_params(s))
    out.append(_curves(s, data, figures))
    out.append("</section>")
    return "\n".join(out)


def _slice_plot(study: optuna.Study) -> go.Figure:
    """Optuna's slice plot with its trial colours numbered from 1 on an integer-ticked colour bar (Optuna's bar is a
    continuous 0-based scale: "trial 2.5")."""
    figure = optuna.visualization.plot_slice(study, target_name="validation MAP@R")
    by_trial = [trace for trace in figure.data if isinstance(trace.marker.color, (tuple, list))]
    numbers = [n + 1 for trace in by_trial for n in trace.marker.color]
    if numbers:
        low, high = min(numbers), max(numbers)
        for trace in by_trial:
            trace.marker.color = [n + 1 for n in trace.marker.color]
            trace.marker.cmin, trace.marker.cmax = low, high
            trace.marker.colorbar.update(title_text="trial", tickformat="d", dtick=max(1, math.ceil((high - low) / 8)),
                                         tick0=1)
    return figure


def _importances(s: StudyData, n_complete: int, figures: _Figures) -> str:
    # PED-ANOVA needs no scikit-learn (fANOVA does, and the project does not depend on it) and is deterministic.
    evaluator = PedAnovaImportanceEvaluator()
    name = type(evaluator).__name__
    if n_complete < MIN_TRIALS_FOR_IMPORTANCE:
        return (f"<p>Hyperparameter importances ({escape(name)}) are shown from {MIN_TRIALS_FOR_IMPORTANCE} completed "
                f"trials on: with {n_complete}, the importances would describe noise between a few points.</p>")
    varied = {p for t in s.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) for p in t.params}
    if not varied:
        return "<p>Hyperparameter importances: the study searches no parameter.</p>"
    try:
        figure = optuna.visualization.plot_param_importances(s.study, evaluator=evaluator)
    except (ValueError, RuntimeError) as error:
        # e.g. every completed trial has the same parameters or the same value: nothing to attribute.
        return f"<p>Hyperparameter importances ({escape(name)}) could not be computed: {escape(str(error))}</p>"
    return figures.embed(figure, f"Hyperparameter importances ({name}): {s.name}")


def _best_params(s: StudyData) -> str:
    # The ranges the study searched (its trials' distributions), not today's YAML: ``tune --space`` may have
    # narrowed or widened them, and the files may have changed since.
    distributions = s.study.best_trial.distributions
    rows = []
    for name, value in sorted((s.best_params or {}).items()):
        spec = distributions.get(name)
        bounds, flag = "-", ""
        if isinstance(spec, (optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution)):
            bounds = f"[{spec.low:g}, {spec.high:g}]{' log' if spec.log else ''}"
            side = at_bound(value, spec.low, spec.high, spec.log)
            if side:
                flag = f'<span class="bound">at the {side} bound</span>'
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        rows.append((name, shown, bounds, flag))
    # The flag column and its explanation only where a parameter is flagged (an empty column reads as missing data).
    flagged = any(flag for *_, flag in rows)
    body = "".join(f"<tr><td>{escape(name)}</td><td>{escape(shown)}</td><td>{escape(bounds)}</td>"
                   + (f"<td>{flag}</td>" if flagged else "") + "</tr>" for name, shown, bounds, flag in rows)
    return (f"<h4>Best parameters (validation MAP@R {s.best_value:.4f})</h4><table class=\"best-params\"><thead>"
            "<tr><th>parameter</th><th>value</th><th>search range</th>"
            + ("<th>at a bound</th>" if flagged else "") + "</tr></thead><tbody>" + body + "</tbody></table>"
            + (f'<p class="note">Flagged: within {BOUND_FRACTION:.0%} of the range from a bound (log scale for log '
               "parameters); the optimum may lie outside the range.</p>" if flagged else ""))


def at_bound(value, low: float, high: float, log: bool) -> str | None:
    """"lower" or "upper" when ``value`` lies within BOUND_FRACTION of the range from that bound, else None."""
    if not isinstance(value, (int, float)) or high <= low:
        return None
    if log and low > 0 and value > 0:
        value, low, high = math.log(value), math.log(low), math.log(high)
    margin = BOUND_FRACTION * (high - low)
    if value <= low + margin:
        return "lower"
    if value >= high - margin:
        return "upper"
    return None


def _curves(s: StudyData, data: ReportData, figures: _Figures) -> str:
    """Training loss and validation MAP@R per fold, of the best trial (else the first test reproduction)."""
    curves = data.curves[data.curves["study_name"] == s.name] if not data.curves.empty else data.curves
    best_number = None
    if s.best_params is not None:
        best_number = s.study.best_trial.number
    chosen, what = pd.DataFrame(), ""
    if not curves.empty and best_number is not None:
        chosen = curves[(curves["kind"] == "trial") & (curves["trial_number"] == best_number)]
        what = f"best trial {best_number + 1}"
    if chosen.empty and not curves.empty:
        tests = curves[curves["kind"] == "test"]
        if not tests.empty:
            first = tests["reproduction"].min()
            chosen, what = tests[tests["reproduction"] == first], f"test reproduction {int(first) + 1}"
    if chosen.empty:
        return "<p>No training curves stored for this study.</p>"
    chosen = chosen[chosen["run_id"] == chosen["run_id"].max()]  # a retried trial: its last run
    figure = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation MAP@R"))
    for fold, rows in chosen.groupby("fold"):
        # One legend entry per fold (1-based, as people count), one colour for it in both panels.
        style = {"name": f"fold {int(fold) + 1}", "legendgroup": str(fold),
                 "line": {"color": _FOLD_COLOURS[int(fold) % len(_FOLD_COLOURS)]}}
        trained = rows[rows["train_loss"].notna()]
        figure.add_trace(go.Scatter(x=trained["epoch"], y=trained["train_loss"], mode="lines+markers", **style),
                         row=1, col=1)
        validated = rows[rows[f"val_{OBJECTIVE}"].notna()]
        figure.add_trace(go.Scatter(x=validated["epoch"], y=validated[f"val_{OBJECTIVE}"], mode="lines+markers",
                                    showlegend=False, **style), row=1, col=2)
    figure.update_xaxes(title_text="epoch", tickformat="d")
    figure.update_yaxes(title_text="training loss", row=1, col=1)
    figure.update_yaxes(title_text="validation MAP@R", row=1, col=2)
    return figures.embed(figure, f"Training curves per fold ({what}): {s.name}")
