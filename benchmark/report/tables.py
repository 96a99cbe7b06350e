"""The leaderboard as Markdown, CSV or a LaTeX ``tabular``, one table per (dataset, protocol)."""

from __future__ import annotations

import io
import math

import pandas as pd

from benchmark.config import label_not_comparable
from benchmark.evaluation.registry import METRICS, MODES

NOT_COMPARABLE_NOTE = ("Trained in a lower precision (bf16/fp16 autocast): not comparable with fp32 results, MLRC's "
                       "included.")
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def columns() -> list[tuple[str, str]]:
    """The leaderboard's (mode, metric) columns: every test mode by every metric of the metric table, read when a
    report is made, so that a metric added to the table is a column of every format."""
    return [(mode, metric) for mode in MODES for metric in METRICS]


def groups(board: pd.DataFrame):
    """(dataset, protocol, rows) for each table of the leaderboard."""
    for (dataset, protocol), rows in board.groupby(["dataset", "protocol"], sort=True):
        yield dataset, protocol, rows.reset_index(drop=True)


def best_rows(rows: pd.DataFrame, mode: str, metric: str) -> set[int]:
    """Row positions holding the highest mean of a column (ties all count); none if the column is empty."""
    means = rows[f"{mode}/{metric}/mean"].astype(float)
    if "published" in rows:  # MLRC's published figures are shown beside ours, never marked best
        means = means.where(~rows["published"].astype(bool))
    if means.isna().all():
        return set()
    top = means.max()
    return {i for i, v in enumerate(means) if v == top}


def cell(row, mode: str, metric: str) -> tuple[str, str]:
    """(mean, ± half-width) as text; "-" without results, no interval from a single reproduction."""
    mean = row[f"{mode}/{metric}/mean"]
    if mean is None or not math.isfinite(float(mean)):
        return "-", ""
    low, high = row[f"{mode}/{metric}/ci_low"], row[f"{mode}/{metric}/ci_high"]
    half = (float(high) - float(low)) / 2 if low is not None and math.isfinite(float(low)) else math.nan
    return f"{float(mean):.4f}", "" if not math.isfinite(half) else f"{half:.4f}"


def budget(row) -> str:
    if row["trials_finished"] is None or pd.isna(row["trials_finished"]):
        return "-"
    return f"{int(row['trials_finished'])}/{int(row['trials_total'])}"


def reference(row) -> str:
    value = row["mlrc_best_val_map_at_r"]
    return "-" if value is None or pd.isna(value) else f"{float(value):.4f}"


def loss_text(row) -> str:
    """The loss cell: its name (and fixed configuration), plus AdaCos' C and s where the configuration used it."""
    adacos = row.get("adacos")
    return f"{row['loss']} (AdaCos {adacos})" if isinstance(adacos, str) and adacos else str(row["loss"])


def header_labels() -> list[str]:
    return [f"{MODES[mode]} {METRICS[metric].label}" for mode, metric in columns()]


def to_markdown(board: pd.DataFrame) -> str:
    out = []
    for dataset, protocol, rows in groups(board):
        out.append(f"### {_md(dataset)} ({_md(protocol)})\n")
        if label_not_comparable(protocol):
            out.append(f"*{NOT_COMPARABLE_NOTE}*\n")
        head = ["loss", "trials", *header_labels(), "MLRC best val MAP@R"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        best = {c: best_rows(rows, *c) for c in columns()}
        for i, row in rows.iterrows():
            cells = []
            for c in columns():
                mean, half = cell(row, *c)
                text = mean + (f" ± {half}" if half else "")
                cells.append(f"**{text}**" if i in best[c] else text)
            out.append("| " + " | ".join([_md(loss_text(row)), budget(row), *cells, reference(row)]) + " |")
        out.append("")
    return "\n".join(out)


def to_latex(board: pd.DataFrame) -> str:
    out = []
    for dataset, protocol, rows in groups(board):
        out.append(f"% {latex_escape(dataset)} ({latex_escape(protocol)})")
        out.append(r"\begin{tabular}{l r " + "r " * len(columns()) + "r}")
        out.append(r"\hline")
        head = ["loss", "trials", *header_labels(), "MLRC best val MAP@R"]
        out.append(" & ".join(latex_escape(h) for h in head) + r" \\")
        out.append(r"\hline")
        best = {c: best_rows(rows, *c) for c in columns()}
        for i, row in rows.iterrows():
            cells = []
            for c in columns():
                mean, half = cell(row, *c)
                text = mean + (rf" $\pm$ {half}" if half else "")
                cells.append(rf"\textbf{{{text}}}" if i in best[c] else text)
            out.append(" & ".join([latex_escape(loss_text(row)), latex_escape(budget(row)), *cells, reference(row)])
                       + r" \\")
        out.append(r"\hline")
        out.append(r"\end{tabular}")
        out.append("")
    return "\n".join(out)


def to_csv(board: pd.DataFrame) -> str:
    buffer = io.StringIO()
    text_columns = [c for c in board.columns if not pd.api.types.is_numeric_dtype(board[c])]
    board.assign(**{c: board[c].map(_csv_text) for c in text_columns}).to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()


def _csv_text(value):
    # A spreadsheet runs a cell that starts with = + - @ (or a tab/CR before one) as a formula, e.g. a loss
    # named =HYPERLINK(...): a leading apostrophe makes it text (OWASP's CSV-injection advice). Numbers stay numbers.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def latex_escape(text) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _md(text) -> str:
    # A pipe would end the cell; a backslash, asterisk or angle bracket would be read as markup or HTML.
    text = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("\n", " ")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
