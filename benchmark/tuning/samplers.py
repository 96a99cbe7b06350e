"""Optuna samplers and pruners by name.

Sampler choice (``--sampler auto``, the default): Optuna's GPSampler when every *searched* parameter is numeric
and no pruner is used; TPE otherwise. A parameter fixed by the search space (``tune: false``, e.g. the
``scale_schedule`` every scale-bearing loss carries) is not searched and does not count: with MLRC's spaces every
loss is then tuned by the same sampler. GP-based Bayesian optimisation is what MLRC used (Ax) and, in a quick check
on ~5 continuous parameters at 50 trials, Optuna 5's GPSampler reached better optima than TPE; TPE handles
categorical/conditional parameters (e.g. a searched scale schedule) and learns from pruned trials, which GP does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmark.errors import UserError
from benchmark.search_space import SearchSpace

if TYPE_CHECKING:  # optuna is imported where a sampler is made: the CLI lists these names at every start-up
    import optuna

SAMPLERS = ("auto", "gp", "tpe", "random")
# Made by benchmark.tuning.pruning (listed here, without optuna, for the CLI's choices).
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")
STARTUP_TRIALS = 10


def resolve_sampler(name: str, space: SearchSpace, pruned: bool = False) -> str:
    """The sampler ``name`` stands for: ``auto`` becomes ``gp`` or ``tpe`` (see the module docstring)."""
    if name != "auto":
        return name
    numeric = all(spec.type in ("float", "int") for spec in space.params.values() if spec.tune)
    return "gp" if numeric and not pruned else "tpe"


def make_sampler(name: str, space: SearchSpace, seed: int, pruned: bool = False) -> optuna.samplers.BaseSampler:
    import optuna

    name = resolve_sampler(name, space, pruned)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r}; expected one of: {', '.join(SAMPLERS)}")
