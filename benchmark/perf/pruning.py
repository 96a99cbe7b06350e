"""Fold trainings ``tune`` spends with the median pruner against none, to reach the unpruned study's best.

For each seed, two real studies (``Tuner``, the same loss, search space, sampler, seed and trial budget) run on the
generated ``synthetic`` dataset; they differ only in the pruner. Both use TPE, because ``--sampler auto`` picks GP
without a pruner and TPE with one, and that would compare samplers too. With the same seed both studies draw the
same start-up parameters and train each fold with the same seed, so the first trials are identical and the pruner
alone decides which folds are skipped. Both studies of a seed run one after the other in the same child process:
``Tuner`` derives its sampler seed from the process id, so separate processes would draw different start-up
parameters and the comparison would no longer be paired. Seeds run in parallel children (one per CPU): the measure
is fold counts, which do not depend on timing.

Target per seed: the best validation MAP@R (mean over the folds) of the unpruned study, less ``tolerance``. Cost:
the fold trainings done, in trial order, up to and including the first COMPLETE trial at or above the target
(a pruned trial's partial mean is not a result a user could pick). A median-pruned study cannot beat the unpruned
one before its first trial past the start-up phase (``PRUNER_STARTUP_TRIALS`` complete trials), so a seed whose
target is reached that early costs both the same. Each seed keeps its per-trial fold counts and values, which show
where a ratio comes from.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from optuna.trial import TrialState

PRUNER = "median"
PRUNERS = ("none", PRUNER)
logger = logging.getLogger(__name__)


def study_costs(data_root: Path, workdir: Path, seed: int, pruner: str, trials: int, loss: str,
                overrides: dict) -> list[dict]:
    """Run one study; per trial in order: state, folds trained, value (COMPLETE only)."""
    from benchmark.config import protocol_for
    from benchmark.search_space import load_search_space
    from benchmark.training.experiment import Experiment
    from benchmark.tuning.study import Tuner

    experiment = Experiment.create(
        dataset_name="synthetic", loss_name=loss, protocol=protocol_for("quick", "synthetic", **overrides),
        search_space=load_search_space(loss, "synthetic"), data_root=data_root, device=_cpu(), weights="none",
        num_workers=0,
    )
    url = f"sqlite:///{workdir / f'seed{seed}-{pruner}.db'}"
    tuner = Tuner(experiment, url, url, total_trials=trials, sampler="tpe", pruner=pruner, seed=seed)
    tuner.run()
    rows = []
    for trial in sorted(tuner.study.get_trials(deepcopy=False), key=lambda t: t.number):
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        rows.append({"state": trial.state.name, "folds": len(trial.user_attrs.get("folds", {})),
                     "value": trial.value if trial.state == TrialState.COMPLETE else None})
    return rows


def _cpu():
    import torch

    return torch.device("cpu")


def reach(rows: list[dict], target: float) -> tuple[int, int] | tuple[None, None]:
    """(fold trainings, 1-based trial) up to the first COMPLETE trial scoring >= ``target``; Nones when none does."""
    spent = 0
    for number, row in enumerate(rows, start=1):
        spent += row["folds"]
        if row["value"] is not None and row["value"] >= target:
            return spent, number
    return None, None


def compare(size: str, trials: int, seeds: tuple[int, ...], overrides: dict, loss: str = "multi_similarity",
            tolerance: float = 0.01) -> dict:
    """Both studies for every seed; per seed and summed fold trainings, and the pruned/unpruned ratios."""
    from benchmark.tuning.samplers import PRUNER_STARTUP_TRIALS

    per_seed = []
    with tempfile.TemporaryDirectory(prefix="perf-pruning-") as tmp:
        with ThreadPoolExecutor(max_workers=min(len(seeds), os.cpu_count() or 1)) as pool:
            studies = list(pool.map(lambda seed: _child(Path(tmp), size, seed, trials, loss, overrides), seeds))
    for seed, rows in zip(seeds, studies):
        best = max(r["value"] for r in rows["none"] if r["value"] is not None)
        target = best - tolerance
        entry = {"seed": seed, "unpruned_best": best, "target": target}
        for pruner, name in (("none", "unpruned"), (PRUNER, "pruned")):
            completes = [r["value"] for r in rows[pruner] if r["value"] is not None]
            folds, trial = reach(rows[pruner], target)
            entry[name] = {
                "folds_total": sum(r["folds"] for r in rows[pruner]),
                "folds_to_reach": folds,
                "trial_reaching": trial,
                "best": max(completes) if completes else None,
                "pruned_trials": sum(r["state"] == "PRUNED" for r in rows[pruner]),
                # In trial order; a pruned trial has no value.
                "trial_folds": [r["folds"] for r in rows[pruner]],
                "trial_values": [r["value"] for r in rows[pruner]],
            }
        per_seed.append(entry)
    reached = all(e["pruned"]["folds_to_reach"] is not None for e in per_seed)
    unpruned_reach = sum(e["unpruned"]["folds_to_reach"] for e in per_seed)
    return {
        "dataset": f"synthetic {size}", "loss": loss, "sampler": "tpe", "pruner": PRUNER,
        "pruner_startup_trials": PRUNER_STARTUP_TRIALS, "trials_per_study": trials,
        "protocol": {"preset": "quick", **overrides}, "tolerance": tolerance, "seeds": per_seed,
        "pruned_reached_target_every_seed": reached,
        # Without a reach on every seed the ratio would silently drop the failures: None says "target missed".
        "pruned_over_unpruned_folds_to_reach":
            sum(e["pruned"]["folds_to_reach"] for e in per_seed) / unpruned_reach if reached else None,
        "pruned_over_unpruned_folds_total":
            sum(e["pruned"]["folds_total"] for e in per_seed) / sum(e["unpruned"]["folds_total"] for e in per_seed),
    }


def _child(workdir: Path, size: str, seed: int, trials: int, loss: str, overrides: dict) -> dict:
    command = [sys.executable, "-m", __spec__.name, "--workdir", str(workdir), "--size", size, "--seed", str(seed),
               "--trials", str(trials), "--loss", loss, "--overrides", json.dumps(overrides)]
    env = {**os.environ, "BENCHMARK_SYNTHETIC_SIZE": size}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"pruning studies (seed {seed}) failed:\n{done.stderr[-2000:]}")
    logger.info("pruning: seed %d done", seed)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--size", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--loss", required=True)
    parser.add_argument("--overrides", default="{}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Fold counts are the measure here, not seconds; one thread is simply faster on a loaded 2-core machine.
    torch.set_num_threads(1)
    rows = {pruner: study_costs(args.workdir / "data", args.workdir, args.seed, pruner, args.trials, args.loss,
                                json.loads(args.overrides)) for pruner in PRUNERS}
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
