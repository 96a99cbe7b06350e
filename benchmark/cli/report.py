"""``benchmark report``: the leaderboard as one offline HTML file (with tuning plots), or as Markdown/CSV/LaTeX.

A storage without any study or test result is an error (one line, exit 2) rather than an empty report.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.cli import _common
from benchmark.errors import UserError

FORMATS = ("html", "md", "csv", "latex")
DEFAULT_HTML = Path("reports/index.html")
DEFAULT_PERF = Path("results/perf.json")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write the leaderboard: an offline HTML report, or Markdown/CSV/LaTeX tables",
        description="html (default): one self-contained file with leaderboards (mean ± 95 % CI over "
        "reproductions, MLRC's reference figures), tuning plots per loss and the environment; it opens offline. "
        "md, csv, latex: the leaderboard tables, to stdout unless --out is given. An empty database is an error "
        "(exit 2).",
    )
    _common.add_storage_args(parser)
    parser.add_argument("--format", default="html", choices=FORMATS, help="output format (default: html)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output file (default: {DEFAULT_HTML} for html, stdout for the others)")
    parser.add_argument("--perf", type=Path, nargs="?", const=DEFAULT_PERF, default=None, metavar="FILE",
                        help="add a Performance section from `benchmark perf` results (FILE, default "
                        f"{DEFAULT_PERF}); off without the flag: it is about this tool, not the losses")
    parser.set_defaults(func=_report)


def _report(args) -> int:
    from benchmark.report.collect import collect, leaderboard, require_results
    from benchmark.report.html import render
    from benchmark.report.tables import to_csv, to_latex, to_markdown
    from benchmark.report.io import write_atomically
    from benchmark.report.perf import load_perf
    from benchmark.redaction import redact, redact_url

    perf = load_perf(args.perf) if args.perf is not None and args.format == "html" else None
    storage, results = _common.storage_urls(args)
    _common.require_existing_storage(storage)
    _common.require_existing_storage(results)
    data = collect(storage, results, _common.study_prefix(args))
    require_results(data)
    if args.format == "html":
        out = args.out or DEFAULT_HTML
        write_atomically(out, render(data, perf))
        print(f"wrote {out}")
        return 0
    board = leaderboard(data)
    if board.empty:
        raise UserError(f"no tune or test results in {redact_url(results)} to tabulate; sweeps are shown in the HTML "
                        "report only")
    from benchmark.report.collect import differences

    diffs = differences(data)
    text = redact(to_csv(board) if args.format == "csv"
                  else {"md": to_markdown, "latex": to_latex}[args.format](board, diffs))
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_atomically(args.out, text)
        print(f"wrote {args.out}")
    return 0
