"""Helpers for the results-database tests: a worker importable by spawned processes, and fixture data."""

from __future__ import annotations

from benchmark.results import ResultsStore

RUN_IDENTITY = {"dataset": "cub200", "loss": "contrastive", "protocol": "quick"}


def sample_metrics(base: float) -> dict:
    return {
        "precision_at_1": base,
        "r_precision": base - 0.1,
        "mean_average_precision_at_r": base - 0.2,
        "recall_at_k": {1: base, 2: base + 0.05, 4: base + 0.1, 8: base + 0.15},
    }


def both_modes(base: float) -> dict:
    return {"separated_128": sample_metrics(base), "concatenated_512": sample_metrics(base + 0.01)}


def write_concurrently(url: str, worker: int, runs: int, ready, go) -> None:
    """Signal ``ready``, then once ``go`` is set open the store (creating the tables) and write ``runs`` complete
    test reproductions, each with a fold, two epochs and both test modes."""
    ready.set()
    if not go.wait(120):
        raise TimeoutError("never told to go")
    with ResultsStore(url) as store:
        for index in range(runs):
            reproduction = worker * 100 + index
            run_id = store.start_run(
                "test", "concurrent", **RUN_IDENTITY, params={"margin": 0.1}, config={}, seed=reproduction,
                split_hash="abc", provenance={"worker": worker}, reproduction=reproduction,
            )
            store.record_fold(run_id, 0, "ok", 2, 3, 0.5, {"mean_average_precision_at_r": 0.3})
            store.record_epochs(run_id, 0, [{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.8}])
            store.record_test_metrics(run_id, "concurrent", **RUN_IDENTITY, reproduction=reproduction,
                                      seed=reproduction, metrics=both_modes(0.5))
        store.set_meta(f"worker_{worker}", runs)
