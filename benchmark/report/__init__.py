"""Reports on the results: an offline HTML leaderboard with tuning plots, Markdown/CSV/LaTeX tables, and the
baseline comparison behind ``benchmark check``.

The names below are imported on first use (PEP 562), so that ``benchmark.report.baseline`` or ``.io`` do not pull
in optuna and pandas for every command that only needs them. ``collect`` is not among them: the function shares
its name with its module, which the import system binds on the package once loaded (import it from ``.collect``).
"""

import importlib

_EXPORTS = {
    "ReportData": "collect", "leaderboard": "collect", "render": "html",
    "to_csv": "tables", "to_latex": "tables", "to_markdown": "tables",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
