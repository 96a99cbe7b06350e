"""Time and peak memory of our retrieval metrics against PML's AccuracyCalculator and a bare faiss kNN search.

    python -m benchmark.perf.metrics_vs_pml [--n 60000] [--classes 11000] [--dim 128] [--repeats 1]

Every measurement runs in its own process, so the peak resident memory of one does not hide another's (tracemalloc
does not see faiss's or torch's allocations); the three implementations alternate, repeat after repeat, so a
neighbour's load on a shared CPU hits all of them alike. The bare kNN search (one ``IndexFlatIP`` over the same
normalised vectors, the same k, self-neighbours included) is the floor: metrics cannot be cheaper than the search.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmark.evaluation.registry import METRICS

IMPLEMENTATIONS = ("ours", "pml", "knn")


def embeddings(n: int, classes: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors in about ``classes`` clusters, overlapping like a trained model's embeddings.

    Few classes (n / classes >= 10) get equal sizes (CUB200 / Cars196: ~60 images a class); many classes get
    2-9 images each, drawn at random (SOP's test half: 60,502 images in 11,316 classes).
    """
    rng = np.random.default_rng(seed)
    if n // classes >= 10:
        labels = np.arange(n) % classes
    else:
        sizes = rng.integers(2, 10, size=2 * classes)
        sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
        labels = np.repeat(np.arange(len(sizes)), sizes)[:n]
    rng.shuffle(labels)
    # Centres scaled by dim ** -1/4 so the metrics land mid-range (MAP@R ~0.2-0.5) whatever the dimension;
    # with unscaled centres every query is perfect at 512 dimensions and nothing is tested.
    centres = 1.1 * (8 / dim) ** 0.25 * rng.normal(size=(labels.max() + 1, dim)).astype(np.float32)
    x = centres[labels] + rng.normal(size=(len(labels), dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _reset_peak() -> None:
    # Linux >= 4.0: writing 5 resets VmHWM to the current RSS, so the peak seen after is the measurement's own.
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def measure(which: str, n: int, classes: int, dim: int) -> dict:
    """One timed run of ``which`` in this process: seconds, peak RSS above the pre-run RSS, metric values."""
    x, labels = embeddings(n, classes, dim)
    # Everything is imported and built before the clock and the peak start, so only the computation counts.
    import faiss

    from benchmark.evaluation.metrics import retrieval_metrics

    # recall_at=(1,) keeps k at the largest class size minus one, the k PML's "max_bin_count" searches.
    k = int(np.bincount(labels).max()) - 1
    if which == "ours":
        def run():
            return retrieval_metrics(x, labels, recall_at=(1,))
    elif which == "pml":
        import torch
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calculator = AccuracyCalculator(include=tuple(METRICS), k="max_bin_count", device=torch.device("cpu"))

        def run():
            return calculator.get_accuracy(x, labels)
    elif which == "knn":
        def run():
            index = faiss.IndexFlatIP(dim)
            index.add(x)
            index.search(x, k + 1)  # + 1: each query finds itself, as in our self-retrieval search
            return {}
    else:
        raise ValueError(f"unknown implementation {which!r}")
    before = _status_kib("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    metrics = run()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_extra_mib": (_status_kib("VmHWM") - before) / 1024,
        "metrics": {m: float(metrics[m]) for m in METRICS if m in metrics},
        "n": len(labels),
        "classes": int(len(np.unique(labels))),
        "k": k,
    }


def _child(which: str, n: int, classes: int, dim: int) -> dict:
    command = [sys.executable, "-m", __spec__.name, "--only", which, "--n", str(n), "--classes", str(classes),
               "--dim", str(dim)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{which} measurement failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def compare(n: int, classes: int, dim: int, repeats: int = 1) -> dict:
    """Run the three implementations ``repeats`` times each, alternating; medians and the three ratios."""
    runs: dict[str, list[dict]] = {w: [] for w in IMPLEMENTATIONS}
    for repeat in range(repeats):
        # The order rotates so no implementation always runs first (or right after the heaviest).
        for which in IMPLEMENTATIONS[repeat % 3:] + IMPLEMENTATIONS[:repeat % 3]:
            runs[which].append(_child(which, n, classes, dim))
    summary = {}
    for which, rs in runs.items():
        summary[which] = {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "seconds_all": [round(r["seconds"], 4) for r in rs],
            "peak_extra_mib": max(r["peak_extra_mib"] for r in rs),
            "metrics": rs[0]["metrics"],
        }
    ours, pml, knn = summary["ours"], summary["pml"], summary["knn"]
    first = runs["ours"][0]
    return {
        "n": first["n"], "dim": dim, "classes": first["classes"], "k": first["k"], "repeats": repeats,
        **summary,
        "max_abs_metric_diff": max(abs(ours["metrics"][m] - pml["metrics"][m]) for m in METRICS),
        "ours_over_knn": ours["seconds"] / knn["seconds"],
        "ours_over_pml": ours["seconds"] / pml["seconds"],
        # Both search with faiss, so ours / pml cannot fall below this however cheap the scoring is.
        "knn_over_pml": knn["seconds"] / pml["seconds"],
        # Floored at 1 MiB: our peak can be within the page-granularity noise of zero.
        "pml_peak_over_ours_peak": pml["peak_extra_mib"] / max(ours["peak_extra_mib"], 1.0),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--classes", type=int, default=11_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        print(json.dumps(measure(args.only, args.n, args.classes, args.dim)))
        return
    print(json.dumps(compare(args.n, args.classes, args.dim, args.repeats), indent=2))


if __name__ == "__main__":
    main()
