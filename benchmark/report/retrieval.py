"""Retrieval examples: for the best configuration of each dataset, the fixed test queries stored by ``benchmark
test`` with their 5 nearest neighbours as small embedded thumbnails, correct ones (same class) marked.

The thumbnails are JPEG data URIs, so the report stays one offline file; all of them together stay within
``BUDGET_BYTES`` (queries beyond it are left out, and the report says so).
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import pandas as pd

BUDGET_BYTES = 1_000_000
THUMBNAIL_PX = 64
_JPEG_QUALITY = 70

STYLE = """
table.retrieval td{text-align:center;vertical-align:top;padding:.2em}
table.retrieval img{display:block;margin:auto;border:3px solid #999}
table.retrieval td.hit img{border-color:#2a8a2a}
table.retrieval td.miss img{border-color:#c22}
table.retrieval .missing{display:inline-block;width:64px;height:64px;background:#eee;font-size:.7em}
table.retrieval small{display:block;font-size:.75em;color:#444}
"""


def best_configurations(board: pd.DataFrame, examples: pd.DataFrame) -> list[tuple[pd.Series, pd.DataFrame]]:
    """Per (dataset, protocol): the leaderboard row with the highest separated-128 test MAP@R among those with
    stored examples, and the examples of its first reproduction."""
    if board.empty or examples.empty:
        return []
    chosen = []
    key = "separated_128/mean_average_precision_at_r/mean"
    for _, rows in board.groupby(["dataset", "protocol"], sort=True):
        rows = rows[rows["test_study"].isin(set(examples["study_name"])) & rows[key].notna()]
        if rows.empty:
            continue
        row = rows.loc[rows[key].astype(float).idxmax()]
        mine = examples[examples["study_name"] == row["test_study"]]
        first = mine[mine["reproduction"] == mine["reproduction"].min()].sort_values("position")
        chosen.append((row, first))
    return chosen


def retrieval_section(board: pd.DataFrame, examples: pd.DataFrame) -> str:
    chosen = best_configurations(board, examples)
    out = ['<h2 id="retrieval">Retrieval examples</h2>']
    if not chosen:
        out.append("<p>No retrieval examples stored: they are recorded by `benchmark test` (from this version "
                   "on).</p>")
        return "\n".join(out)
    out.append('<p class="note">The best configuration of each dataset (highest separated-128 test MAP@R): fixed '
               "test queries (evenly spaced over the test set, the same for every loss) and their 5 nearest "
               "neighbours by cosine similarity of the concatenated-512 embedding, nearest first; green = same "
               "class as the query (correct), red = another class.</p>")
    thumbnails = _Thumbnails(BUDGET_BYTES)
    for row, queries in chosen:
        out.append(f'<h3>{escape(row["dataset"])} ({escape(row["protocol"])}): {escape(str(row["loss"]))}, '
                   f'reproduction {int(queries["reproduction"].iloc[0]) + 1}</h3>')  # 1-based for people
        neighbours = max(len(n) for n in queries["neighbours"])
        out.append('<table class="retrieval"><thead><tr><th>query</th>'
                   + "".join(f"<th>{i}</th>" for i in range(1, neighbours + 1)) + "</tr></thead><tbody>")
        shown = 0
        for query in queries.itertuples(index=False):
            cells = [_cell(thumbnails, query.query_path, f"class {query.query_label}", None)]
            for n in query.neighbours:
                hit = int(n["label"]) == int(query.query_label)
                cells.append(_cell(thumbnails, n["path"], f"{'✓' if hit else '✗'} class {n['label']}, "
                                   f"cos {n['similarity']:.2f}", "hit" if hit else "miss"))
            if thumbnails.over_budget:
                break
            out.append("<tr>" + "".join(cells) + "</tr>")
            shown += 1
        out.append("</tbody></table>")
        if shown < len(queries):
            out.append(f'<p class="note">{len(queries) - shown} more queries left out: the examples\' '
                       f"{BUDGET_BYTES // 1000} kB budget is spent.</p>")
        if thumbnails.missing:
            out.append(f'<p class="note">{thumbnails.missing} image(s) not found where the test read them (data '
                       "moved, or a report made on another machine).</p>")
            thumbnails.missing = 0
    return "\n".join(out)


class _Thumbnails:
    """JPEG data URIs of images, counted against a byte budget (each use counts: each is a copy in the HTML)."""

    def __init__(self, budget: int):
        self.budget, self.used, self.missing = budget, 0, 0
        self.over_budget = False
        self._cache: dict[str, str | None] = {}

    def uri(self, path: str) -> str | None:
        if path not in self._cache:
            self._cache[path] = _encode(Path(path))
        uri = self._cache[path]
        if uri is None:
            self.missing += 1
            return None
        self.used += len(uri)
        self.over_budget = self.used > self.budget
        return uri


def _encode(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    except (OSError, UnidentifiedImageError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(thumbnails: _Thumbnails, path: str, caption: str, css: str | None) -> str:
    uri = thumbnails.uri(path)
    klass = f' class="{css}"' if css else ""
    title = escape(Path(path).name)
    image = (f'<img src="{uri}" alt="{title}" title="{title}">' if uri is not None
             else f'<span class="missing" title="{title}">not found</span>')
    return f"<td{klass}>{image}<small>{escape(caption)}</small></td>"
