"""The leaderboard as Markdown, CSV or a LaTeX ``tabular``, one table per (dataset, protocol)."""

from __future__ import annotations

import io
import math

import pandas as pd

from benchmark.config import label_not_comparable
from benchmark.evaluation.registry import METRICS, MODES, metric_label

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
    """Row positions statistically tied with the best of a column (paired test over reproductions, Holm-corrected:
    ``benchmark.report.significance``); a loss that did not learn is never among them."""
    tied = rows.get(f"{mode}/{metric}/tied")
    if tied is None:
        return set()
    return {i for i, v in enumerate(tied) if v is True or v == 1}


def cell(row, mode: str, metric: str) -> str:
    """``mean [lo, hi]`` (the 95 % t-interval), ``mean (n=1)`` without an interval, "-" without results; a
    result whose interval is not above the untrained models' value says "did not learn"."""
    mean = row[f"{mode}/{metric}/mean"]
    if _missing(mean):
        return "-"
    low, high = row[f"{mode}/{metric}/ci_low"], row[f"{mode}/{metric}/ci_high"]
    n = row.get(f"{mode}/{metric}/n")
    if not _missing(low):
        text = f"{float(mean):.4f} [{float(low):.4f}, {float(high):.4f}]"
    elif not _missing(n) and int(n) > 0:
        text = f"{float(mean):.4f} (n={int(n)})"
    else:  # a published figure: no reproductions of ours behind it
        text = f"{float(mean):.4f}"
    return text + (" did not learn" if row.get(f"{mode}/{metric}/learned") is False else "")


def rank(row, mode: str = "separated_128", metric: str = "mean_average_precision_at_r") -> str:
    """The bootstrap 95 % interval of the loss's rank in a column, e.g. ``1-2``; "-" without one."""
    low, high = row.get(f"{mode}/{metric}/rank_low"), row.get(f"{mode}/{metric}/rank_high")
    if _missing(low):
        return "-"
    return f"{int(low)}" if int(low) == int(high) else f"{int(low)}-{int(high)}"


def untrained(row, mode: str = "separated_128", metric: str = "mean_average_precision_at_r") -> str:
    value = row.get(f"{mode}/{metric}/untrained")
    return "-" if _missing(value) else f"{float(value):.4f}"


def reproductions(row) -> str:
    """n: the reproductions behind the row's test metrics (the largest over its columns)."""
    counts = [int(row[f"{mode}/{metric}/n"]) for mode, metric in columns() if not _missing(row[f"{mode}/{metric}/n"])]
    return str(max(counts)) if counts and max(counts) else "-"


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


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


def head_labels() -> list[str]:
    """The leaderboard's header, read when a report is made (a metric added to the table is a column)."""
    return ["loss", "trials", "n", *header_labels(), "untrained sep-128 MAP@R", "rank (sep-128 MAP@R, 95 % bootstrap)"]
LEGEND = ("Test metrics: mean [95 % t-interval] over n reproductions. Bold: statistically tied with the best "
          "(paired t-test over reproductions with common seeds, Holm-corrected; losses that did not learn are never "
          "the best). \"did not learn\": the interval is not above the same models untrained.")


def row_cells(row) -> list[str]:
    """The text of one leaderboard row after the loss name, in HEAD's order (plus the MLRC column)."""
    return [budget(row), reproductions(row), *(cell(row, *c) for c in columns()), untrained(row), rank(row)]


def difference_rows(diffs) -> list[list[str]]:
    """One row per pair of losses: which is higher, by how much, over how many pairs, Holm p, verdict."""
    return [[f"{d.first} over {d.second}", f"{d.mean_difference:.4f}", str(d.pairs),
             "-" if _missing(d.pvalue) else f"{d.pvalue:.3g}",
             "real" if d.real else "not resolved"] for d in diffs]


DIFFERENCE_HEAD = ["pair", "mean paired difference", "pairs", "Holm-adjusted p", "difference"]


def _with_reference(protocol: str) -> bool:
    # MLRC's published figures belong beside rows of its own protocol only.
    return protocol.split("+")[0] == "mlrc"


def to_markdown(board: pd.DataFrame, diffs=()) -> str:
    """The leaderboard tables, then one "which differences are real" table per dataset, mode and metric."""
    out = [LEGEND, ""]
    for dataset, protocol, rows in groups(board):
        out.append(f"### {_md(dataset)} ({_md(protocol)})\n")
        if label_not_comparable(protocol):
            out.append(f"*{NOT_COMPARABLE_NOTE}*\n")
        head = head_labels() + (["MLRC best val MAP@R"] if _with_reference(protocol) else [])
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        best = {c: best_rows(rows, *c) for c in columns()}
        for i, row in rows.iterrows():
            cells = row_cells(row)
            for k, c in enumerate(columns()):
                if i in best[c]:
                    cells[2 + k] = f"**{cells[2 + k]}**"
            extra = [reference(row)] if _with_reference(protocol) else []
            out.append("| " + " | ".join([_md(loss_text(row)), *(_md(c) if "**" not in c else c for c in cells),
                                          *extra]) + " |")
        out.append("")
    for dataset, protocol, mode, metric, rows in diffs:
        out.append(f"#### Which differences are real: {_md(dataset)} ({_md(protocol)}), {MODES[mode]} "
                   f"{metric_label(metric)}\n")
        out.append("| " + " | ".join(DIFFERENCE_HEAD) + " |")
        out.append("|---|---:|---:|---:|---|")
        out += ["| " + " | ".join(_md(c) for c in r) + " |" for r in difference_rows(rows)]
        out.append("")
    return "\n".join(out)


def to_latex(board: pd.DataFrame, diffs=()) -> str:
    out = [f"% {LEGEND}"]
    for dataset, protocol, rows in groups(board):
        head = head_labels() + (["MLRC best val MAP@R"] if _with_reference(protocol) else [])
        out.append(f"% {latex_escape(dataset)} ({latex_escape(protocol)})")
        out.append(r"\begin{tabular}{l " + "r " * (len(head) - 1) + "}")
        out.append(r"\hline")
        out.append(" & ".join(latex_escape(h) for h in head) + r" \\")
        out.append(r"\hline")
        best = {c: best_rows(rows, *c) for c in columns()}
        for i, row in rows.iterrows():
            cells = [latex_escape(c) for c in row_cells(row)]
            for k, c in enumerate(columns()):
                if i in best[c]:
                    cells[2 + k] = rf"\textbf{{{cells[2 + k]}}}"
            extra = [reference(row)] if _with_reference(protocol) else []
            out.append(" & ".join([latex_escape(loss_text(row)), *cells, *extra]) + r" \\")
        out.append(r"\hline")
        out.append(r"\end{tabular}")
        out.append("")
    for dataset, protocol, mode, metric, rows in diffs:
        out.append(f"% which differences are real: {latex_escape(dataset)} ({latex_escape(protocol)}), "
                   f"{MODES[mode]} {metric_label(metric)}")
        out.append(r"\begin{tabular}{l r r r l}")
        out.append(r"\hline")
        out.append(" & ".join(latex_escape(h) for h in DIFFERENCE_HEAD) + r" \\")
        out.append(r"\hline")
        out += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in difference_rows(rows)]
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
