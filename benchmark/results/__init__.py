"""The results database (``bm_*`` tables next to the Optuna study), provenance, and the pandas read API.

The names below are imported on first use (PEP 562): the read API needs pandas and scipy, which commands that only
store results (or only print help) should not pay for at start-up.
"""

import importlib

_EXPORTS = {
    "load_compute": "api", "load_epoch_curves": "api", "load_fold_results": "api", "load_kept_models": "api",
    "load_proxy_diagnostics": "api", "load_retrieval_examples": "api", "load_runs": "api",
    "load_test_results": "api", "mean_and_ci": "api", "learned": "api", "summarize_test_results": "api",
    "collect_provenance": "provenance", "redact_url": "benchmark.redaction",
    "DEFAULT_STORAGE": "store", "ResultsStore": "store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(importlib.import_module(module if "." in module else f"{__name__}.{module}"), name)
