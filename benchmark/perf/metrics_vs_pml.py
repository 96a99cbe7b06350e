"""Time and peak memory of our retrieval metrics against PML's AccuracyCalculator on SOP-sized embeddings.

    python -m benchmark.perf.metrics_vs_pml [--n 60000] [--classes 11000] [--dim 128]

Each implementation runs in its own process, so the peak resident memory of one does not hide the other's.
Reports both values of every metric (they must agree to 1e-6), the seconds and the peak RSS above the baseline.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def sop_like(n: int, classes: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Classes of 2-9 images (SOP test half: 60,502 images in 11,316 classes), clustered like a trained model."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 10, size=classes)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    labels = np.repeat(np.arange(len(sizes)), sizes)[:n]
    rng.shuffle(labels)
    centres = rng.normal(size=(labels.max() + 1, dim)).astype(np.float32)
    x = centres[labels] + 1.2 * rng.normal(size=(len(labels), dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(which: str, n: int, classes: int, dim: int, recall_at: tuple[int, ...]) -> dict:
    x, labels = sop_like(n, classes, dim)
    if which == "ours":
        from benchmark.evaluation.metrics import retrieval_metrics

        def run():
            return retrieval_metrics(x, labels, recall_at=recall_at)
    else:
        import torch
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calculator = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                                        k="max_bin_count", device=torch.device("cpu"))

        def run():
            return calculator.get_accuracy(x, labels)
    baseline = _peak_rss_mib()
    started = time.perf_counter()
    metrics = run()
    seconds = time.perf_counter() - started
    return {"metrics": metrics, "seconds": seconds, "peak_rss_mib": _peak_rss_mib(),
            "extra_rss_mib": _peak_rss_mib() - baseline, "n": len(labels), "classes": int(len(np.unique(labels)))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--classes", type=int, default=11_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--recall-at", default="1,10,100,1000")
    parser.add_argument("--only", choices=("ours", "pml"))
    args = parser.parse_args(argv)
    recall_at = tuple(int(k) for k in args.recall_at.split(","))
    if args.only:
        print(json.dumps(_measure(args.only, args.n, args.classes, args.dim, recall_at), default=str))
        return
    results = {}
    for which in ("ours", "pml"):
        command = [sys.executable, "-m", __spec__.name, "--only", which, "--n", str(args.n), "--classes",
                   str(args.classes), "--dim", str(args.dim), "--recall-at", args.recall_at]
        results[which] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    ours, pml = results["ours"], results["pml"]
    print(f"{ours['n']} x {args.dim} embeddings, {ours['classes']} classes")
    for name in ("precision_at_1", "r_precision", "mean_average_precision_at_r"):
        print(f"{name:<28} ours {ours['metrics'][name]:.8f}  pml {pml['metrics'][name]:.8f}")
    print(f"recall_at_k (ours only)      {ours['metrics']['recall_at_k']}")
    for which, r in results.items():
        print(f"{which:<5} {r['seconds']:8.2f} s   peak RSS {r['peak_rss_mib']:7.0f} MiB "
              f"({r['extra_rss_mib']:+.0f} MiB during the metrics)")


if __name__ == "__main__":
    main()
