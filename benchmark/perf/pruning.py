"""Compute a tuning study spends with each pruner against none, measured as a replay of real training curves.

Why a replay: the target is stated for 50-trial studies over several seeds; training 50 x 4 folds per study and
pruner and seed on a shared 2-core CPU takes hours. Instead a pool of configurations, drawn at random from the
loss's search space, is trained for real once (``FoldTrainer``, every fold, validation every epoch, early stopping
as in the protocol); their per-fold, per-epoch validation curves are then replayed through the tuner's own
reporting (:class:`benchmark.tuning.pruning.PruningReporter`) into real Optuna studies with the real pruners. Each
seed is one random order of pool configurations (drawn with replacement): the same order for every pruner, so the
comparison is paired. What a replay cannot show: a sampler steering towards good regions (trials are drawn at
random, as by ``--sampler random``); so the figures are the pruner's own saving, not the sampler's.

Compute is counted in fold-epochs (epochs trained, summed over folds; validation is proportional). Per seed:
- the unpruned study: its first ``trials`` trials; its best mean validation MAP@R and that configuration's fold
  noise (standard error of its fold results);
- target: the unpruned best less its fold noise; compute to reach it: fold-epochs up to and including the first
  COMPLETE trial at or above it (a pruned trial's partial value is not a result a user could pick);
- the pruned study runs on in the same order until it has spent the unpruned study's total compute: its best at
  equal compute.
"""

from __future__ import annotations

import logging
import statistics

import numpy as np

from benchmark.evaluation.registry import OBJECTIVE

logger = logging.getLogger(__name__)

PRUNERS = ("successive_halving", "median", "hyperband")
HEADLINE = "successive_halving"  # the recommended pruner, whose ratio is the target


def pool_curves(data_root, size: str, pool: int, overrides: dict, loss: str = "multi_similarity",
                seed: int = 0) -> list[dict]:
    """Train ``pool`` random configurations on every fold; per configuration its folds' curves and results."""
    import optuna
    import torch

    from benchmark.config import protocol_for
    from benchmark.data.synthetic import config_for_size
    from benchmark.search_space import load_search_space
    from benchmark.training.experiment import Experiment
    from benchmark.training.fold import fold_data
    from benchmark.training.seeding import derive_seed

    experiment = Experiment.create(
        dataset_name="synthetic", loss_name=loss, protocol=protocol_for("quick", **overrides),
        search_space=load_search_space(loss, "synthetic"), data_root=data_root, device=torch.device("cpu"),
        weights="none", num_workers=0, synthetic=config_for_size(size))
    drawer = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    run = experiment.fold_run
    configs = []
    for number in range(pool):
        params = experiment.search_space.suggest(drawer.ask())
        trainer = experiment.trainer(params)
        folds = []
        for fold in range(experiment.protocol.num_folds):
            result = trainer.train(fold_data(run.paths, run.labels, run.splits, fold), derive_seed(seed, fold))
            folds.append({
                "validations": [[row["epoch"], row[f"val_{OBJECTIVE}"]] for row in result.curve
                                if row["epoch"] > 0 and row[f"val_{OBJECTIVE}"] is not None],
                "epochs": result.epochs_trained,
                "best": result.best_metrics[OBJECTIVE],
            })
        configs.append({"params": params, "folds": folds})
        logger.info("pruning pool: configuration %d/%d trained", number + 1, pool)
    return configs


def _replay_trial(study, config: dict, max_epochs: int) -> tuple[float | None, int]:
    """One trial of ``config`` under ``study``'s pruner: (value, or None when pruned; fold-epochs spent)."""
    import optuna

    from benchmark.tuning.pruning import PruningReporter

    folds = config["folds"]
    trial = study.ask()
    reporter = PruningReporter(trial, max_epochs, len(folds))
    spent = 0
    try:
        for epoch, value in folds[0]["validations"]:
            spent = epoch
            reporter.fold0_epoch(epoch, value)
        spent = folds[0]["epochs"]
        for k in range(1, len(folds) + 1):
            reporter.folds_done([f["best"] for f in folds[:k]])
            if k < len(folds):
                spent += folds[k]["epochs"]
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return None, spent
    value = float(np.mean([f["best"] for f in folds]))
    study.tell(trial, value)
    return value, spent


def reach(rows: list[dict], target: float) -> tuple[int, int] | tuple[None, None]:
    """(compute, 1-based trial) up to the first COMPLETE trial scoring >= ``target``; Nones when none does."""
    spent = 0
    for number, row in enumerate(rows, start=1):
        spent += row["cost"]
        if row["value"] is not None and row["value"] >= target:
            return spent, number
    return None, None


def replay_seed(configs: list[dict], order: list[int], trials: int, max_epochs: int, patience: int,
                pruners=PRUNERS) -> dict:
    import optuna

    from benchmark.tuning.pruning import make_pruner

    num_folds = len(configs[0]["folds"])
    unpruned = []
    for index in order[:trials]:
        folds = configs[index]["folds"]
        unpruned.append({"config": index, "value": float(np.mean([f["best"] for f in folds])),
                         "cost": sum(f["epochs"] for f in folds)})
    best = max(unpruned, key=lambda r: r["value"])
    fold_values = [f["best"] for f in configs[best["config"]]["folds"]]
    noise = float(np.std(fold_values, ddof=1) / np.sqrt(len(fold_values))) if len(fold_values) > 1 else 0.0
    target = best["value"] - noise
    total = sum(r["cost"] for r in unpruned)
    reach_unpruned, _ = reach(unpruned, target)
    out = {"unpruned_best": best["value"], "fold_noise": noise, "target": target, "unpruned_compute": total,
           "unpruned_compute_to_reach": reach_unpruned, "pruners": {}}
    for name in pruners:
        study = optuna.create_study(direction="maximize", pruner=make_pruner(name, max_epochs, num_folds, patience))
        rows, spent = [], 0
        for index in order:
            if len(rows) >= trials and spent >= total:
                break
            value, cost = _replay_trial(study, configs[index], max_epochs)
            rows.append({"value": value, "cost": cost})
            spent += cost
        first = rows[:trials]
        equal = []
        acc = 0
        for row in rows:
            if acc + row["cost"] > total:
                break
            acc += row["cost"]
            equal.append(row)
        completes = [r["value"] for r in equal if r["value"] is not None]
        compute, trial = reach(rows, target)
        out["pruners"][name] = {
            "compute_to_reach": compute, "trial_reaching": trial,
            "compute_over_unpruned_to_reach": compute / reach_unpruned if compute is not None else None,
            "compute_of_first_trials_over_unpruned": sum(r["cost"] for r in first) / total,
            "pruned_of_first_trials": sum(r["value"] is None for r in first),
            "best_at_equal_compute": max(completes) if completes else None,
            "trials_at_equal_compute": len(equal),
        }
    return out


def compare(data_root, size: str, pool: int, trials: int, seeds: tuple[int, ...], overrides: dict,
            loss: str = "multi_similarity") -> dict:
    """Train the pool, replay every seed, and summarise per pruner (medians over seeds)."""
    import torch

    from benchmark.tuning.pruning import PRUNER_STARTUP_TRIALS, REDUCTION_FACTOR

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # curves are the measure here, not seconds
    try:
        configs = pool_curves(data_root, size, pool, overrides, loss)
    finally:
        torch.set_num_threads(threads)
    max_epochs, patience = overrides["max_epochs"], overrides["patience"]
    per_seed = []
    for seed in seeds:
        order = np.random.default_rng(seed).integers(len(configs), size=trials * 10).tolist()
        per_seed.append({"seed": seed, **replay_seed(configs, order, trials, max_epochs, patience)})
    summary = {}
    for name in PRUNERS:
        entries = [s["pruners"][name] for s in per_seed]
        ratios = [e["compute_over_unpruned_to_reach"] for e in entries]
        reached = all(r is not None for r in ratios)
        summary[name] = {
            # A seed whose target was never reached counts as infinitely costly, so the median cannot hide it.
            "median_compute_over_unpruned_to_reach": statistics.median(r if r is not None else float("inf")
                                                                       for r in ratios),
            "reached_target_every_seed": reached,
            "median_compute_of_trials_over_unpruned": statistics.median(e["compute_of_first_trials_over_unpruned"]
                                                                        for e in entries),
            "median_best_at_equal_compute_minus_unpruned_best": statistics.median(
                (e["best_at_equal_compute"] if e["best_at_equal_compute"] is not None else float("-inf"))
                - s["unpruned_best"] for e, s in zip(entries, per_seed)),
            "seeds_best_at_equal_compute_within_noise": sum(
                e["best_at_equal_compute"] is not None and e["best_at_equal_compute"] >= s["target"]
                for e, s in zip(entries, per_seed)),
        }
    return {
        "method": "replay of real per-fold per-epoch validation curves through the tuner's PruningReporter into "
                  "Optuna studies with the real pruners; trials in random order (no sampler guidance)",
        "dataset": f"synthetic {size}", "loss": loss, "pool_configurations": len(configs),
        "protocol": {"preset": "quick", **overrides}, "trials_per_study": trials, "seeds": list(seeds),
        "compute_unit": "fold-epochs", "pruner_startup_trials": PRUNER_STARTUP_TRIALS,
        "reduction_factor": REDUCTION_FACTOR, "headline_pruner": HEADLINE,
        # The replayed curves themselves: every figure below can be recomputed from them (replay_seed).
        "pool": configs,
        "per_seed": per_seed, "summary": summary,
    }
