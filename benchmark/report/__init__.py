"""Reports on the results: an offline HTML leaderboard with tuning plots, Markdown/CSV/LaTeX tables, and the
baseline comparison behind ``benchmark check``."""

from benchmark.report.collect import ReportData, collect, leaderboard
from benchmark.report.html import render
from benchmark.report.tables import to_csv, to_latex, to_markdown

__all__ = ["ReportData", "collect", "leaderboard", "render", "to_csv", "to_latex", "to_markdown"]
