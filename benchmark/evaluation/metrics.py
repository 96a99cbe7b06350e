"""Retrieval metrics of the MLRC protocol: Precision@1, R-Precision, MAP@R and Recall@K (PROTOCOL.md §2).

The values equal pytorch-metric-learning's ``AccuracyCalculator(k="max_bin_count")`` (tested to 1e-6). We do not
call PML here because it compares every query label with every reference label, loops over the classes in Python
to build its relevance mask and keeps all of it in memory: on SOP-sized input (60k x 128, ~11k classes, 2-core CPU,
``python -m benchmark.perf.metrics_vs_pml``) it took 126 s and 6.3 GB above baseline, this vectorised version, which
scores one block of kNN results at a time, 46 s (mostly the brute-force kNN both share) and 11 MB. PML also has no
Recall@K.
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import UserError
from benchmark.evaluation.knn import iter_knn, l2_normalize


def retrieval_metrics(
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
    recall_at: tuple[int, ...] = (1, 2, 4, 8),
) -> dict:
    """Cosine-similarity retrieval metrics of ``query`` against ``reference``, averaged over queries.

    Without a reference the query set is its own reference and each query is left out of its own neighbours
    (CUB200 / Cars196 / SOP); with one, the two sets are disjoint (In-Shop query -> gallery). Embeddings are
    L2-normalised here. For a query, R is the number of reference points sharing its label (itself excluded);
    queries with R = 0 are left out of every metric. Returns ``precision_at_1``, ``r_precision``,
    ``mean_average_precision_at_r`` and ``recall_at_k`` (``{K: value}``).
    """
    same = reference is None
    if same != (reference_labels is None):
        raise UserError("give both reference embeddings and reference labels, or neither")
    query, query_labels = _check_set(query, query_labels, "query")
    if same:
        reference, reference_labels = query, query_labels
    else:
        reference, reference_labels = _check_set(reference, reference_labels, "reference")
        if reference.shape[1] != query.shape[1]:
            raise UserError(
                f"query embeddings have {query.shape[1]} dimensions but reference embeddings {reference.shape[1]}"
            )
    recall_at = tuple(recall_at)
    if any(not isinstance(K, (int, np.integer)) or K < 1 for K in recall_at):
        raise UserError(f"recall_at must be positive integers, got {recall_at}")
    recall_at = tuple(int(K) for K in recall_at)

    _, codes = np.unique(np.concatenate([query_labels, reference_labels]), return_inverse=True)
    query_codes, reference_codes = codes[: len(query_labels)], codes[len(query_labels):]
    # minlength: a query label above every reference label has R = 0 (not an index past the counts).
    relevant = np.bincount(reference_codes, minlength=int(codes.max()) + 1)[query_codes] - int(same)  # R per query
    scored = relevant > 0
    if not scored.any():
        raise UserError("no query has a same-label item in the reference set (every class is a singleton)")

    max_r = int(relevant.max())
    available = len(reference) - int(same)
    k = min(max((max_r, *recall_at)), available)
    recall_ks = {K: min(K, k) for K in recall_at}

    ranks = np.arange(1, max_r + 1)
    sums = {"p1": 0.0, "rp": 0.0, "map": 0.0}
    recall_hits = dict.fromkeys(recall_at, 0)
    query = l2_normalize(query)
    for start, _, indices in iter_knn(query, k, None if same else l2_normalize(reference)):
        stop = start + len(indices)
        keep = scored[start:stop]
        r = relevant[start:stop][keep]
        hits = reference_codes[indices[keep]] == query_codes[start:stop][keep, None]

        # Only the first R neighbours of each query count for R-Precision and MAP@R.
        hits_r = hits[:, :max_r] & (ranks <= r[:, None])
        sums["p1"] += hits[:, 0].sum()
        sums["rp"] += (hits_r.sum(axis=1) / r).sum()
        precision_at_i = np.cumsum(hits_r, axis=1) / ranks
        sums["map"] += ((precision_at_i * hits_r).sum(axis=1) / r).sum()

        first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), k)
        for K, capped in recall_ks.items():
            recall_hits[K] += int((first_hit < capped).sum())

    n = int(scored.sum())
    return {
        "precision_at_1": float(sums["p1"]) / n,
        "r_precision": float(sums["rp"]) / n,
        "mean_average_precision_at_r": float(sums["map"]) / n,
        "recall_at_k": {K: recall_hits[K] / n for K in recall_at},
    }


def _check_set(embeddings, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    embeddings = np.asarray(embeddings)
    labels = np.asarray(labels)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
        raise UserError(f"{name} embeddings must be a non-empty 2-D array [N, D], got shape {embeddings.shape}")
    if not np.issubdtype(embeddings.dtype, np.number) or np.iscomplexobj(embeddings):
        raise UserError(f"{name} embeddings must be real numbers, got dtype {embeddings.dtype}")
    if not np.isfinite(embeddings).all():
        raise UserError(f"{name} embeddings contain NaN or infinite values")
    if labels.ndim != 1:
        raise UserError(f"{name} labels must be a 1-D array [N], got shape {labels.shape}")
    if len(labels) != len(embeddings):
        raise UserError(f"{name} has {len(embeddings)} embeddings but {len(labels)} labels")
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{name} labels must be integers, got dtype {labels.dtype}")
    return embeddings, labels.astype(np.int64)
