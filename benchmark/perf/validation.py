"""Validation at SOP size: what a fold's validation computed before (Recall@K up to SOP's 1000 at every
validation, so a k = 1000 search) against what it computes now (P@1, R-Precision, MAP@R: k = the largest class
size), alternating in one process. The values early stopping reads must be equal.
"""

from __future__ import annotations

import statistics
import time

from benchmark.perf.metrics_vs_pml import METRICS, embeddings

# SOP's Recall@K cut-offs (its DatasetSpec.recall_at), which every validation used to compute.
OLD_RECALL_AT = (1, 10, 100, 1000)


def compare(n: int, classes: int, dim: int, repeats: int = 1) -> dict:
    from benchmark.evaluation.metrics import retrieval_metrics

    x, labels = embeddings(n, classes, dim)
    sides = {"before": OLD_RECALL_AT, "now": ()}
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    values: dict[str, dict] = {}
    for repeat in range(repeats):
        for side in (("before", "now") if repeat % 2 == 0 else ("now", "before")):
            started = time.perf_counter()
            metrics = retrieval_metrics(x, labels, recall_at=sides[side])
            seconds[side].append(time.perf_counter() - started)
            values[side] = {m: metrics[m] for m in METRICS}
    before, now = (statistics.median(seconds[s]) for s in ("before", "now"))
    return {
        "n": len(labels), "dim": dim, "classes": int(labels.max()) + 1, "repeats": repeats,
        "k_before": min(max(OLD_RECALL_AT), len(labels) - 1), "recall_at_before": list(OLD_RECALL_AT),
        "seconds_before": before, "seconds_now": now,
        "seconds_all": {s: [round(t, 4) for t in ts] for s, ts in seconds.items()},
        "metrics": values["now"],
        "max_abs_metric_diff": max(abs(values["now"][m] - values["before"][m]) for m in METRICS),
        "speedup": before / now,
    }
