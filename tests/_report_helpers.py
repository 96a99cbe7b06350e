"""A results database written directly (Optuna study + ResultsStore rows), for report and check tests."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution

from benchmark.results import ResultsStore

PROVENANCE = {"python": "3.11.7", "packages": {"torch": "2.14.1", "optuna": "5.0.0"},
              "git": {"commit": "abc123def", "dirty": False}, "device": "cpu", "torch_threads": 2, "platform": "Linux",
              "hostname": "h"}
SPLIT_HASH = "9232066bb41fa04d"


def add_study(url: str, dataset: str, loss: str, trials: list[dict[str, float]], values: list[float],
              test_values: dict[str, list[float]] | None = None, protocol: str = "quick",
              ranges: dict[str, tuple[float, float, bool]] | None = None,
              untrained: dict[str, list[float]] | None = None) -> str:
    """A study ``<dataset>-<loss>-<protocol>`` with completed ``trials`` (params, objective value), curves for
    every trial, and test reproductions: ``test_values`` maps metric -> one value per reproduction (both modes
    get the same values, concatenated-512 shifted up by 0.01); ``untrained`` the same for the untrained models."""
    name = f"{dataset}-{loss}-{protocol}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.set_user_attr("split_hash", SPLIT_HASH)
    study.set_user_attr("dataset", dataset)
    study.set_user_attr("loss", loss)
    study.set_user_attr("protocol", {"name": protocol, "batch_size": 32})
    study.set_user_attr("split_scheme", "mlrc")
    study.set_user_attr("search_space", "fp")
    ranges = ranges or {}
    with ResultsStore(url) as store:
        for number, (params, value) in enumerate(zip(trials, values)):
            distributions = {p: FloatDistribution(*ranges.get(p, (0.0, 100.0, False))[:2],
                                                  log=ranges.get(p, (0, 0, False))[2]) for p in params}
            study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))
            run = store.start_run("trial", name, dataset, loss, protocol, params, {"protocol": {"name": protocol}},
                                  seed=number, split_hash=SPLIT_HASH, provenance=PROVENANCE, trial_number=number)
            for fold in range(2):
                store.record_epochs(run, fold, [
                    {"epoch": 0, "val_mean_average_precision_at_r": 0.1},
                    {"epoch": 1, "loss": 1.0 - 0.1 * fold, "val_mean_average_precision_at_r": None},
                    {"epoch": 2, "loss": 0.8, "val_mean_average_precision_at_r": value},
                ])
            store.finish_run(run, "complete", value)
        reproductions = len(next(iter(test_values.values()))) if test_values else 0
        for rep in range(reproductions):
            run = store.start_run("test", name, dataset, loss, protocol, trials[0], {}, seed=rep,
                                  split_hash=SPLIT_HASH, provenance=PROVENANCE, reproduction=rep)
            metrics = {
                "separated_128": {m: v[rep] for m, v in test_values.items()},
                "concatenated_512": {m: v[rep] + 0.01 for m, v in test_values.items()},
            }
            for mode in ("separated_128", "concatenated_512"):
                if untrained:
                    metrics[f"untrained_{mode}"] = {m: v[rep] for m, v in untrained.items()}
            store.record_test_metrics(run, name, dataset, loss, protocol, rep, rep, metrics)
    return name


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def standard_database(path: Path) -> str:
    """Two losses on cub200 (one with test results), one study with a single trial, a hostile study name."""
    url = sqlite_url(path)
    add_study(url, "cub200", "multi_similarity",
              [{"alpha": 1.0, "beta": 50.0}, {"alpha": 19.9, "beta": 99.5}, {"alpha": 5.0, "beta": 60.0}],
              [0.30, 0.42, 0.35],
              {"precision_at_1": [0.60, 0.62, 0.61], "r_precision": [0.30, 0.31, 0.32],
               "mean_average_precision_at_r": [0.20, 0.21, 0.22]},
              ranges={"alpha": (0.001, 100.0, False), "beta": (0.01, 100.0, False)})
    add_study(url, "cub200", "contrastive", [{"pos_margin": 0.1, "neg_margin": 0.5}], [0.25],
              {"precision_at_1": [0.50, 0.52], "r_precision": [0.33, 0.35],
               "mean_average_precision_at_r": [0.19, 0.20]})
    add_study(url, "synthetic", "</script><script>alert(1)</script>", [{"<script>x": 1.0}, {"<script>x": 2.0}],
              [0.1, 0.2])
    return url
