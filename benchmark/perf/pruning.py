"""Compute a tuning study spends with each pruner against none, measured as a replay of real training curves.

Why a replay: the target is stated for 50-trial studies over several seeds; training 50 x 4 folds per study and
pruner and seed on a shared 2-core CPU takes hours. Instead a pool of configurations, drawn at random from the
loss's search space, is trained for real once (``FoldTrainer``, every fold, validation every epoch, early stopping
as in the protocol); their per-fold, per-epoch validation curves are then replayed through the tuner's own
reporting (:class:`benchmark.tuning.pruning.PruningReporter`) into real Optuna studies with the real pruners.
One pool per loss in :data:`LOSSES` (trained side by side, a process each), and each pruner's headline figure is
its worst loss's: a rule that saves on one loss by stopping another's best configurations early saves nothing.

Why the pool is at least as large as a study, and each seed a permutation of it (drawn without replacement): a real
study over a continuous space never trains one configuration twice. Drawn with replacement from a small pool, a
50-trial study re-ran each configuration several times and met the pool's best within its first trials in about a
quarter of the seeds (nothing left to save); the ratio then measured the pool, not the pruner. Each pool member is a
tiny trial (the quick protocol cut by overrides, see ``benchmark.perf.suite``) so that enough of them train in
minutes -- but one that still learns: in a real study every trial trains to its end and configurations differ beyond
fold noise. Cut further (4 steps of 16 images), the median configuration ended barely above its first validation,
five matched the best within noise, the unpruned study met one by its 6th trial in the median seed, and successive
halving needed 0.59x (the same pruner 0.44x on the pool below): a study whose trials hardly learn leaves little to
save before its first good trial. ``pool_signal`` in the output says which regime a pool is in.
The seeds are fixed by the preset before anything is measured; every figure is the median over them, with its
quartiles. The same order serves every pruner, so the comparison is paired. What a replay cannot show: a sampler
steering towards good regions (trials are drawn at random, as by ``--sampler random``); so the figures are the
pruner's own saving, not the sampler's.

Compute is counted in fold-epochs (epochs trained, summed over folds; validation is proportional). Per seed:
- the unpruned study: its first ``trials`` trials; its best mean validation MAP@R and that configuration's fold
  noise (standard error of its fold results);
- target: the unpruned best less its fold noise; compute to reach it: fold-epochs up to and including the first
  COMPLETE trial at or above it (a pruned trial's partial value is not a result a user could pick);
- the pruned study runs on in the same order until it has spent the unpruned study's total compute (or has used
  the whole pool, which only understates it): its best at equal compute.

Two bounds per pool say whether a miss is the pruner's ranking or fold-level pruning itself (``bounds``): the
headline pruner replayed with every fold reporting the configuration's result (it ranks trials perfectly, without
fold noise; same costs, same target), and a clairvoyant that stops every trial after its first fold except one that
reaches the target (the least any pruner judging from the first fold's end on can spend).
"""

from __future__ import annotations

import logging
import os
import statistics
from pathlib import Path

import numpy as np

from benchmark.errors import UserError
from benchmark.evaluation.registry import OBJECTIVE

logger = logging.getLogger(__name__)

PRUNERS = ("successive_halving", "median", "hyperband")
HEADLINE = "successive_halving"  # the recommended pruner, whose ratio is the target
# A pair-based and a proxy-based loss: their early validations rank configurations very differently (on
# proxy_anchor's pool fold 0's first epochs ranked configurations slightly against their results), and a pruner
# must serve both.
LOSSES = ("multi_similarity", "proxy_anchor")


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
        logger.info("pruning pool (%s): configuration %d/%d trained", loss, number + 1, pool)
    return configs


def _result(config: dict) -> float:
    """A configuration's value as a study sees it: the mean of its folds' results."""
    return float(np.mean([f["best"] for f in config["folds"]]))


def _fold_noise(config: dict) -> float:
    """The standard error of a configuration's fold results: how far apart two equally good ones may land."""
    values = [f["best"] for f in config["folds"]]
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


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
    value = _result(config)
    study.tell(trial, value)
    return value, spent


def perfectly_ranked(configs: list[dict]) -> list[dict]:
    """``configs`` as a pruner would see them if every fold reported the configuration's result (its mean over
    folds): after any fold, trials rank exactly as their results do, without fold noise. Costs are unchanged."""
    return [{**c, "folds": [{**f, "best": _result(c)} for f in c["folds"]]} for c in configs]


def clairvoyant_compute(configs: list[dict], order: list[int], target: float) -> int | None:
    """The least compute any pruner judging from the end of a trial's first fold on could spend to reach ``target``
    in ``order``: it would stop every trial after its first fold except one that reaches, run to its end."""
    before, least = 0, None
    for index in order:
        folds = configs[index]["folds"]
        if _result(configs[index]) >= target:
            whole = before + sum(f["epochs"] for f in folds)
            least = whole if least is None else min(least, whole)
        before += folds[0]["epochs"]
    return least


def reach(rows: list[dict], target: float) -> tuple[int, int] | tuple[None, None]:
    """(compute, 1-based trial) up to the first COMPLETE trial scoring >= ``target``; Nones when none does."""
    spent = 0
    for number, row in enumerate(rows, start=1):
        spent += row["cost"]
        if row["value"] is not None and row["value"] >= target:
            return spent, number
    return None, None


def replay_seed(configs: list[dict], order: list[int], trials: int, max_epochs: int, pruners=PRUNERS,
                seed: int = 0, judged: list[dict] | None = None) -> dict:
    """One seed: ``order`` (distinct pool indices) is the study's sequence of trials; the unpruned study takes its
    first ``trials``, each pruned study runs on until it has spent as much compute or ``order`` ends. ``seed`` names
    the studies: Hyperband draws each trial's bracket from the study's name, so a fixed name makes a rerun give the
    same figures. ``judged``: the curves the pruned studies replay, when not ``configs`` (same costs and results,
    other fold values: see :func:`perfectly_ranked`); the unpruned study and the target always come from
    ``configs``."""
    import optuna

    from benchmark.tuning.pruning import make_pruner

    if len(set(order)) < len(order):
        raise ValueError("a study's order repeats a configuration; a real study never trains one twice")
    num_folds = len(configs[0]["folds"])
    unpruned = []
    for index in order[:trials]:
        unpruned.append({"config": index, "value": _result(configs[index]),
                         "cost": sum(f["epochs"] for f in configs[index]["folds"])})
    best = max(unpruned, key=lambda r: r["value"])
    noise = _fold_noise(configs[best["config"]])
    target = best["value"] - noise
    total = sum(r["cost"] for r in unpruned)
    reach_unpruned, _ = reach(unpruned, target)
    clairvoyant = clairvoyant_compute(configs, order, target)
    out = {"unpruned_best": best["value"], "fold_noise": noise, "target": target, "unpruned_compute": total,
           "unpruned_compute_to_reach": reach_unpruned,
           "clairvoyant_compute_over_unpruned_to_reach": clairvoyant / reach_unpruned, "pruners": {}}
    replayed = configs if judged is None else judged
    for name in pruners:
        study = optuna.create_study(study_name=f"replay-{name}-seed{seed}", direction="maximize",
                                    pruner=make_pruner(name, max_epochs, num_folds))
        rows, spent = [], 0
        for index in order:
            if len(rows) >= trials and spent >= total:
                break
            value, cost = _replay_trial(study, replayed[index], max_epochs)
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
            # The pool ran out first: the best at equal compute is then understated, never overstated.
            "pool_used_up_before_equal_compute": spent < total,
        }
    return out


def _train_pool(data_root, size: str, pool: int, overrides: dict, loss: str, log_level: int) -> list[dict]:
    """One loss's pool, in its own process: progress lines go to stderr as in the parent, marked with the loss."""
    from benchmark.training.threads import torch_threads

    import optuna

    logging.basicConfig(level=log_level, format=f"[{loss}] %(message)s")
    # Quiet as the CLI keeps the parent (benchmark/cli/__init__.py): faiss's build notices, Optuna's study creation.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    optuna.logging.set_verbosity(logging.WARNING)
    with torch_threads(1):  # curves are the measure here, not seconds
        return pool_curves(data_root, size, pool, overrides, loss)


def _ratio_summary(ratios: list[float | None]) -> dict:
    """Median and quartiles over seeds of a compute ratio; a seed whose target was never reached (None) counts as
    infinitely costly, so the median cannot hide it."""
    costly = [r if r is not None else float("inf") for r in ratios]
    return {"median_compute_over_unpruned_to_reach": statistics.median(costly),
            "quartiles_compute_over_unpruned_to_reach": [
                float(q) for q in np.percentile(costly, [25, 75], method="nearest")]}


def _replay_pool(configs: list[dict], trials: int, seeds: tuple[int, ...], max_epochs: int) -> dict:
    """One loss's pool replayed over every seed, summarised per pruner (medians and quartiles over seeds)."""
    results = [_result(c) for c in configs]
    best_noise = _fold_noise(configs[int(np.argmax(results))])
    pool_signal = {
        "median_result": statistics.median(results),
        # The pool validates every epoch, so each fold's first validation is after epoch 1.
        "median_first_validation": statistics.median(float(np.mean([f["validations"][0][1] for f in c["folds"]]))
                                                     for c in configs),
        "best_result": max(results), "best_fold_noise": best_noise,
        "configurations_within_fold_noise_of_the_best": sum(r >= max(results) - best_noise for r in results),
    }
    orders = {seed: np.random.default_rng(seed).permutation(len(configs)).tolist() for seed in seeds}
    per_seed = [{"seed": seed, **replay_seed(configs, orders[seed], trials, max_epochs, seed=seed)} for seed in seeds]
    ranked = perfectly_ranked(configs)
    # How far the headline pruner is from what fold-level pruning can do on this pool: the same pruner told every
    # configuration's result after each fold, and a clairvoyant that stops all but one reaching trial after fold 1.
    bounds = {
        f"{HEADLINE}_perfectly_ranked": _ratio_summary([
            replay_seed(configs, orders[seed], trials, max_epochs, pruners=(HEADLINE,), seed=seed,
                        judged=ranked)["pruners"][HEADLINE]["compute_over_unpruned_to_reach"]
            for seed in seeds]),
        "clairvoyant": _ratio_summary([s["clairvoyant_compute_over_unpruned_to_reach"] for s in per_seed]),
    }
    summary = {}
    for name in PRUNERS:
        entries = [s["pruners"][name] for s in per_seed]
        ratios = [e["compute_over_unpruned_to_reach"] for e in entries]
        summary[name] = {
            **_ratio_summary(ratios),
            "reached_target_every_seed": all(r is not None for r in ratios),
            "median_compute_of_trials_over_unpruned": statistics.median(e["compute_of_first_trials_over_unpruned"]
                                                                        for e in entries),
            "median_best_at_equal_compute_minus_unpruned_best": statistics.median(
                (e["best_at_equal_compute"] if e["best_at_equal_compute"] is not None else float("-inf"))
                - s["unpruned_best"] for e, s in zip(entries, per_seed)),
            "seeds_best_at_equal_compute_within_noise": sum(
                e["best_at_equal_compute"] is not None and e["best_at_equal_compute"] >= s["target"]
                for e, s in zip(entries, per_seed)),
        }
    return {"pool_configurations": len(configs), "pool_signal": pool_signal,
            # The replayed curves themselves: every figure can be recomputed from them (replay_seed).
            "pool": configs, "per_seed": per_seed, "summary": summary, "bounds": bounds}


def compare(data_root, size: str, pool: int, trials: int, seeds: tuple[int, ...], overrides: dict,
            losses: tuple[str, ...] = LOSSES) -> dict:
    """Train a pool per loss, replay every seed, and summarise per pruner: per loss, and the worst loss."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    if pool < trials:
        raise ValueError(f"a pool of {pool} configurations cannot fill a {trials}-trial study without repeats")
    jobs = [(Path(data_root) / loss, size, pool, overrides, loss, logging.getLogger().getEffectiveLevel())
            for loss in losses]
    # The losses' pools are independent and their curves do not depend on timing: one process each, side by side.
    with ProcessPoolExecutor(min(len(jobs), os.cpu_count() or 1), mp_context=get_context("spawn")) as pool_runner:
        pools = list(pool_runner.map(_train_pool, *zip(*jobs)))
    return replay(dict(zip(losses, pools)), trials, seeds, overrides["max_epochs"], {
        "dataset": f"synthetic {size}", "pool_configurations": pool, "protocol": {"preset": "quick", **overrides}})


def replay_stored(stored: dict) -> dict:
    """The pools of an earlier result (:func:`load_stored`) replayed again with its own trials and seeds, nothing
    trained: a change to the pruners or the replay re-measured in seconds on the same curves."""
    entry = stored["entry"]
    return {**replay({loss: e["pool"] for loss, e in entry["per_loss"].items()}, entry["trials_per_study"],
                     tuple(entry["seeds"]), entry["protocol"]["max_epochs"],
                     {key: entry[key] for key in ("dataset", "pool_configurations", "protocol")}),
            "pools_from": stored["pools_from"]}


def _replayable(entry: dict) -> bool:
    """Whether ``entry`` holds what :func:`replay_stored` reads, in the shapes :func:`pool_curves` writes."""
    from benchmark.tuning.pruning import fold_step

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    max_epochs = entry["protocol"]["max_epochs"]
    pools = [e["pool"] for e in entry["per_loss"].values()]
    fold_counts = {len(config["folds"]) for pool in pools for config in pool}
    folds = [fold for pool in pools for config in pool for fold in config["folds"]]
    return (isinstance(max_epochs, int) and max_epochs >= 1 and bool(pools) and len(fold_counts) == 1
            and fold_counts != {0} and isinstance(entry["trials_per_study"], int)
            and all(len(pool) >= entry["trials_per_study"] >= 1 for pool in pools)
            and bool(entry["seeds"]) and all(isinstance(seed, int) for seed in entry["seeds"])
            and all(key in entry for key in ("dataset", "pool_configurations"))
            # Fold 0's epochs are reported as steps below the first fold's step.
            and all(isinstance(f["epochs"], int) and number(f["best"])
                    and all(len(v) == 2 and isinstance(v[0], int) and 1 <= v[0] < fold_step(max_epochs)
                            and number(v[1]) for v in f["validations"]) for f in folds))


def load_stored(path: Path) -> dict:
    """An earlier ``benchmark perf`` result's pruning entry, checked before anything is replayed."""
    import hashlib
    import json

    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise UserError(f"--pools {path}: cannot read it as JSON ({exc}); expected a `benchmark perf` result") from None
    entry = data.get("pruning") if isinstance(data, dict) else None
    try:
        ok = _replayable(entry)
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise UserError(f"--pools {path}: no replayable pruning entry (per loss a pool of at least trials_per_study "
                        "configurations with their folds' curves); expected a `benchmark perf` result with the pruning "
                        "section")
    run = data.get("pruning_run", data)  # results/perf.json keeps the pruning run's machine apart
    return {"entry": entry, "pools_from": {"file": str(path), "sha256": hashlib.sha256(raw).hexdigest(),
                                           "trained_on": run.get("machine")}}


def replay(pools: dict[str, list[dict]], trials: int, seeds: tuple[int, ...], max_epochs: int,
           described: dict) -> dict:
    """Every loss's pool replayed over every seed and summarised per pruner: per loss, and the worst loss.
    ``described``: the pools' dataset, size and protocol, recorded with the figures."""
    from benchmark.tuning.pruning import pruner_settings

    losses = tuple(pools)
    per_loss = {loss: _replay_pool(configs, trials, seeds, max_epochs) for loss, configs in pools.items()}
    summary = {}
    for name in PRUNERS:
        # The pruner is judged by the loss it serves worst: a rule that saves on one loss by stopping another's
        # best configurations early is not a saving.
        worst = max(losses, key=lambda loss: per_loss[loss]["summary"][name]["median_compute_over_unpruned_to_reach"])
        entries = [per_loss[loss]["summary"][name] for loss in losses]
        summary[name] = {
            **per_loss[worst]["summary"][name], "worst_loss": worst,
            "seeds_best_at_equal_compute_within_noise": min(e["seeds_best_at_equal_compute_within_noise"]
                                                            for e in entries),
            "reached_target_every_seed": all(e["reached_target_every_seed"] for e in entries),
        }
    num_folds = len(next(iter(pools.values()))[0]["folds"])
    return {
        "method": "replay of real per-fold per-epoch validation curves through the tuner's PruningReporter into "
                  "Optuna studies with the real pruners; each seed's trials a random order of distinct pool "
                  "configurations (no repeats, no sampler guidance); one pool per loss, each pruner scored by "
                  "its worst loss",
        **described, "losses": list(losses), "trials_per_study": trials, "seeds": list(seeds),
        "compute_unit": "fold-epochs", "headline_pruner": HEADLINE,
        "pruner_settings": {name: pruner_settings(name, max_epochs, num_folds) for name in PRUNERS},
        "summary": summary, "per_loss": per_loss,
    }
