"""The results database (``bm_*`` tables next to the Optuna study), provenance, and the pandas read API."""

from benchmark.results.api import (
    load_epoch_curves,
    load_fold_results,
    load_proxy_diagnostics,
    load_runs,
    load_test_results,
    mean_and_ci,
    summarize_test_results,
)
from benchmark.results.provenance import collect_provenance, redact_url
from benchmark.results.store import DEFAULT_STORAGE, ResultsStore

__all__ = [
    "DEFAULT_STORAGE",
    "ResultsStore",
    "collect_provenance",
    "load_epoch_curves",
    "load_fold_results",
    "load_proxy_diagnostics",
    "load_runs",
    "load_test_results",
    "mean_and_ci",
    "redact_url",
    "summarize_test_results",
]
