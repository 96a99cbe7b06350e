"""The fixed benchmark of ``benchmark check --run``: train a small, seeded configuration and return its best
validation metrics, bit-reproducible on a CPU (of one type: another may pick other float kernels). The comparison
with a baseline is ``benchmark.report.baseline``'s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmark.config import protocol_for
from benchmark.evaluation.registry import METRICS
from benchmark.search_space import load_search_space

# The fixed benchmark of --run: a few steps of multi-similarity on a small synthetic set, two folds. Small enough
# for a CI job on a CPU (~30 s), large enough that a broken loss, sampler or metric moves the numbers.
RUN_SETTINGS = {
    "dataset": "synthetic",
    "synthetic_size": "40x8",
    "loss": "multi_similarity",
    "params": {"alpha": 2.0, "beta": 50.0, "base": 0.5},
    "protocol": "quick",
    "protocol_overrides": {"iterations_per_epoch": 4, "max_epochs": 2, "patience": 2},
    "folds": [0, 1],
    "seed": 0,
    "device": "cpu",
    "weights": "none",
    # CPU float reductions depend on the number of threads: the same seed gave fold 0 MAP@R 0.152143 on 1 thread
    # and 0.150952 on 2. Pinned, so the baseline reproduces bit for bit whatever the machine's core count.
    "torch_threads": 1,
}


def run_values(settings: dict = RUN_SETTINGS) -> dict[str, float]:
    """Train the fixed benchmark in a temporary data root: ``val/<metric>`` (mean over the folds) and
    ``val/fold<N>/<metric>`` for every metric of the metric table."""
    # Imported here: `check` without --run reads RUN_SETTINGS and needs no torch.
    from benchmark.data.registry import mlrc_validation
    from benchmark.data.synthetic import config_for_size
    from benchmark.training.device import resolve_device
    from benchmark.training.experiment import Experiment
    from benchmark.training.run import run_folds
    from benchmark.training.threads import torch_threads

    with tempfile.TemporaryDirectory(prefix="benchmark-check-") as root:
        space = load_search_space(settings["loss"], settings["dataset"])
        experiment = Experiment.create(
            dataset_name=settings["dataset"], loss_name=settings["loss"],
            protocol=protocol_for(settings["protocol"], validation=mlrc_validation(settings["dataset"]),
                                  **settings["protocol_overrides"]),
            search_space=space, data_root=Path(root), device=resolve_device(settings["device"]),
            weights=settings["weights"], num_workers=0, synthetic=config_for_size(settings["synthetic_size"]),
        )
        params = {**space.defaults(), **settings["params"]}
        with torch_threads(settings["torch_threads"]):
            results = run_folds(experiment.trainer(params), experiment.fold_run, seed=settings["seed"],
                                folds=settings["folds"])
    values = {}
    for metric in METRICS:
        scores = [float(r.best_metrics[metric]) for r in results]
        values[f"val/{metric}"] = sum(scores) / len(scores)
        for r in results:
            values[f"val/fold{r.fold}/{metric}"] = float(r.best_metrics[metric])
    return values
