"""The metric table: every retrieval metric the benchmark reports, its label, direction and the neighbours it needs,
and the two test modes. The one place a metric is named; the results tables store metrics by these keys (long
format), and the CLI, tuning and the report iterate over this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str  # the name ``retrieval_metrics`` returns and the results tables store (AccuracyCalculator's)
    label: str  # how reports and the CLI show it
    higher_is_better: bool
    neighbours: str  # how many neighbours per query the kNN search must return: "1", "R" (its class size) or "K"


# Reported at validation and at test, in this order. Recall@K (``recall_at_k``, {K: value}) is computed at test only
# and stored as recall_at_<K>.
METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("precision_at_1", "P@1", higher_is_better=True, neighbours="1"),
    Metric("r_precision", "R-Precision", higher_is_better=True, neighbours="R"),
    Metric("mean_average_precision_at_r", "MAP@R", higher_is_better=True, neighbours="R"),
)}
# The validation metric early stopping and Optuna maximise (MLRC's).
OBJECTIVE = "mean_average_precision_at_r"
# Spellings of the objective in data written before this table existed (trial "folds" attributes).
_LEGACY_KEYS = {"map_at_r": OBJECTIVE}

# Test modes: each fold's 128-d model alone (metrics averaged over folds), and the 4 fold embeddings concatenated.
MODES: dict[str, str] = {"separated_128": "separated-128", "concatenated_512": "concatenated-512"}


def metric_label(key: str) -> str:
    """``"mean_average_precision_at_r"`` -> ``"MAP@R"``; ``"recall_at_4"`` -> ``"Recall@4"``."""
    if key in METRICS:
        return METRICS[key].label
    if key.startswith("recall_at_"):
        return f"Recall@{key.removeprefix('recall_at_')}"
    return key


def canonical_metrics(values: dict) -> dict:
    """``values`` with legacy metric spellings (``map_at_r``) replaced by the table's keys."""
    return {_LEGACY_KEYS.get(key, key): value for key, value in values.items()}
