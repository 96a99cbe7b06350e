"""What the benchmark cost: per loss (tuning and test) and, per dataset, the best validation MAP@R each loss had
reached after a given amount of compute -- which loss wins at equal budget."""

from __future__ import annotations

from html import escape

import pandas as pd
import plotly.graph_objects as go

from benchmark.results.run_extras import WHOLE_RUN

_RUN_COLUMNS = ["run_id", "kind", "study_name", "dataset", "loss", "protocol", "trial_number", "reproduction",
                "objective", "finished_at", "device"]


def run_costs(compute: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its wall seconds (the whole-run row; for a run whose process died, the sum of its finished
    folds) and CUDA device-seconds (NaN on the CPU)."""
    if compute.empty:
        return pd.DataFrame(columns=[*_RUN_COLUMNS, "wall_seconds", "device_seconds"])
    whole = compute[compute["fold"] == WHOLE_RUN].set_index("run_id")
    folds = compute[compute["fold"] != WHOLE_RUN].groupby("run_id").agg(
        wall_seconds=("wall_seconds", "sum"), device_seconds=("device_seconds", lambda v: v.sum(min_count=1)))
    identity = compute.drop_duplicates("run_id").set_index("run_id")[_RUN_COLUMNS[1:]]
    costs = identity.join(folds).copy()
    costs.loc[whole.index, "wall_seconds"] = whole["wall_seconds"]
    costs.loc[whole.index, "device_seconds"] = whole["device_seconds"]
    return costs.reset_index()


def duration(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def study_cost(costs: pd.DataFrame, tune_study: str | None, test_study: str | None) -> dict:
    """Tuning and test wall seconds (and CUDA device-seconds) of one leaderboard row."""
    tune = costs[(costs["kind"] == "trial") & (costs["study_name"] == tune_study)]
    test = costs[(costs["kind"] == "test") & (costs["study_name"] == test_study)]
    both = pd.concat([tune, test])
    return {"tune_seconds": float(tune["wall_seconds"].sum()), "test_seconds": float(test["wall_seconds"].sum()),
            "compute_seconds": float(both["wall_seconds"].sum()),
            "device_seconds": float(both["device_seconds"].sum(min_count=1)),
            "devices": ", ".join(sorted(set(both["device"].dropna())))}


def budget_curves(costs: pd.DataFrame, dataset: str, protocol: str) -> dict[str, tuple[list, list]]:
    """Per loss of (dataset, protocol): cumulative tuning wall minutes after each trial (in the order the trials
    finished) and the best validation MAP@R reached by then."""
    trials = costs[(costs["kind"] == "trial") & (costs["dataset"] == dataset) & (costs["protocol"] == protocol)]
    curves = {}
    for loss, rows in trials.sort_values(["finished_at", "run_id"]).groupby("loss", sort=True):
        spent = (rows["wall_seconds"].cumsum() / 60).tolist()
        best = rows["objective"].astype(float).cummax().tolist()  # pruned/failed trials cost but score nothing
        points = [(x, y) for x, y in zip(spent, best) if y == y]
        if points:
            curves[loss] = ([x for x, _ in points], [y for _, y in points])
    return curves


def compute_section(board: pd.DataFrame, costs: pd.DataFrame, embed) -> str:
    """Cost per loss and, per dataset, best validation MAP@R against cumulative tuning compute."""
    if costs.empty:
        return ('<h2 id="compute">Compute</h2><p>No compute recorded (results of a version before compute '
                "accounting).</p>")
    if board.empty:  # e.g. a database holding only sweeps: no loss on the leaderboard to cost
        return '<h2 id="compute">Compute</h2><p>No leaderboard rows yet: costs are shown per tested loss.</p>'
    out = ['<h2 id="compute">Compute</h2>',
           '<p class="note">Wall-clock time of every trial and test reproduction (all folds, evaluation included), '
           "summed per loss; device-seconds are CUDA time from events, absent on the CPU. The curves show the best "
           "mean validation MAP@R each loss had reached after the tuning compute on the x axis, trials in the order "
           "they finished: at equal budget, the higher curve wins.</p>"]
    for (dataset, protocol), rows in board.groupby(["dataset", "protocol"], sort=True):
        out.append(f"<h3>{escape(dataset)} ({escape(protocol)})</h3>")
        out.append('<table class="sortable compute"><thead><tr><th>loss</th><th>tuning</th><th>test</th>'
                   "<th>total</th><th>CUDA device-seconds</th><th>device</th></tr></thead><tbody>")
        for row in rows.itertuples(index=False):
            device_s = "-" if row.device_seconds != row.device_seconds else f"{row.device_seconds:.0f}"
            cells = [(row.loss, row.loss), (duration(row.tune_seconds), row.tune_seconds),
                     (duration(row.test_seconds), row.test_seconds),
                     (duration(row.compute_seconds), row.compute_seconds), (device_s, row.device_seconds),
                     (row.devices or "-", row.devices)]
            out.append("<tr>" + "".join(f'<td data-sort="{escape(str(v))}">{escape(str(t))}</td>' for t, v in cells)
                       + "</tr>")
        out.append("</tbody></table>")
        curves = budget_curves(costs, dataset, protocol)
        if curves:
            figure = go.Figure([go.Scatter(x=x, y=y, mode="lines+markers", line={"shape": "hv"}, name=loss)
                                for loss, (x, y) in curves.items()])
            figure.update_layout(xaxis_title="cumulative tuning wall-clock (minutes)",
                                 yaxis_title="best mean validation MAP@R so far")
            out.append(embed(figure, f"{dataset} ({protocol}): best validation MAP@R vs tuning compute"))
    return "\n".join(out)
