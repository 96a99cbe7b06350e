"""``benchmark evaluate``: retrieval metrics of saved embeddings (.npy), query = reference or query -> gallery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Precision@1, R-Precision, MAP@R and Recall@K of saved embeddings",
        description="Cosine retrieval metrics of embeddings saved as .npy files (L2-normalised here). Without "
        "reference files every embedding is a query against all the others; with them, queries are "
        "searched in the reference set only (In-Shop query -> gallery).",
    )
    parser.add_argument("--embeddings", type=Path, required=True, help="query embeddings, float array [N, D]")
    parser.add_argument("--labels", type=Path, required=True, help="query labels, integer array [N]")
    parser.add_argument("--reference-embeddings", type=Path, help="reference (gallery) embeddings [M, D]")
    parser.add_argument("--reference-labels", type=Path, help="reference (gallery) labels [M]")
    parser.add_argument("--recall-at", type=_recall_at, default=(1, 2, 4, 8), metavar="K,K,...",
                        help="ranks for Recall@K (default 1,2,4,8; MLRC uses 1,10,100,1000 for SOP)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.set_defaults(func=_evaluate)


def _recall_at(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--recall-at {text!r} is not a comma-separated list of integers, e.g. 1,2,4,8") from None
    if any(k < 1 for k in ks):
        raise UserError(f"--recall-at {text!r} must contain positive integers")
    return ks


def _load(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"{what} file {path} not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UserError(f"{what} file {path} is not a readable .npy array: {str(error).splitlines()[0]}") from None
    if not isinstance(array, np.ndarray):
        raise UserError(f"{what} file {path} is an .npz archive; expected a single .npy array")
    return array


def _evaluate(args) -> int:
    if (args.reference_embeddings is None) != (args.reference_labels is None):
        raise UserError("give both --reference-embeddings and --reference-labels, or neither")
    query = _load(args.embeddings, "embeddings")
    labels = _load(args.labels, "labels")
    reference = reference_labels = None
    if args.reference_embeddings is not None:
        reference = _load(args.reference_embeddings, "reference embeddings")
        reference_labels = _load(args.reference_labels, "reference labels")
    from benchmark.evaluation.metrics import retrieval_metrics  # faiss: loaded only when needed

    metrics = retrieval_metrics(query, labels, reference, reference_labels, recall_at=args.recall_at)
    if args.json:
        print(json.dumps(metrics))
    else:
        from benchmark.evaluation.registry import METRICS

        for name in METRICS:
            print(f"{name:<28} {metrics[name]:.4f}")
        for k, value in metrics["recall_at_k"].items():
            print(f"{f'recall_at_{k}':<28} {value:.4f}")
    return 0
