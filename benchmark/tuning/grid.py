"""The grid of a sweep, without the training: its points, the study name it gives, the search space it turns into,
and the per-point table read back from a finished (or partial) sweep study. The report reads sweeps through this
module alone, without torch; ``benchmark.tuning.sweep`` runs them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, replace

import optuna
import pandas as pd
from optuna.trial import TrialState

from benchmark.errors import UserError
from benchmark.evaluation.registry import METRICS, OBJECTIVE, canonical_metrics
from benchmark.search_space import SearchSpace

SWEEP_ATTR = "sweep"
# What the per-grid-point table shows, from the fold summaries the Tuner stores in the trial's "folds" attribute.
FOLD_METRICS = {key: METRICS[key].label for key in (OBJECTIVE, "precision_at_1")}

Value = float | int | str


@dataclass(frozen=True)
class Grid:
    """The swept values per parameter (in the search space's order) and the fixed values of the others."""

    values: dict[str, tuple[Value, ...]]
    fixed: dict[str, Value]

    @property
    def size(self) -> int:
        size = 1
        for values in self.values.values():
            size *= len(values)
        return size

    def points(self) -> list[dict[str, Value]]:
        return [dict(zip(self.values, combo)) for combo in itertools.product(*self.values.values())]

    def to_attr(self) -> dict:
        return {"grid": {name: list(values) for name, values in self.values.items()}, "fixed": dict(self.fixed)}

    @classmethod
    def from_attr(cls, attr: dict) -> Grid:
        return cls({name: tuple(values) for name, values in attr["grid"].items()}, dict(attr.get("fixed") or {}))

    def study_name(self, dataset: str, loss: str, protocol: str) -> str:
        digest = hashlib.sha256(json.dumps(self.to_attr(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{dataset}-{loss}-{protocol}-sweep-{'-'.join(self.values)}-{digest}"


def parse_grid(space: SearchSpace, grid_args: list[str] | None, fixed: dict[str, str]) -> Grid:
    """``["alpha=4,8", "margin=0,0.1"]`` and the ``--param`` values -> a Grid; every value typed and checked
    against its parameter's domain. Numeric values are sorted and repeats dropped, so the same grid written
    differently is the same study."""
    if not grid_args:
        raise UserError("give at least one --grid NAME=V1,V2,...")
    raw: dict[str, str] = {}
    for text in grid_args:
        name, sep, values = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"--grid {text!r} is not of the form NAME=V1,V2,...")
        if name in raw:
            raise UserError(f"--grid {name} is given twice; list all its values in one --grid {name}=V1,V2,...")
        if name not in space.params:
            raise UserError(f"--grid {name}: unknown parameter for loss {space.loss}; valid: {', '.join(space.params)}")
        if name in fixed:
            raise UserError(f"{name} is given both as --grid and as --param; sweep it or fix it, not both")
        raw[name] = values
    values: dict[str, tuple[Value, ...]] = {}
    for name, spec in space.params.items():  # the search space's order, whatever order the flags came in
        if name not in raw:
            continue
        parsed = [spec.parse(part) for part in raw[name].split(",") if part.strip()]
        if not parsed:
            raise UserError(f"--grid {name}={raw[name]!r}: expected one or more comma-separated values")
        unique = list(dict.fromkeys(parsed))
        if spec.type == "categorical":
            unique.sort(key=spec.choices.index)
        else:
            unique.sort()
        values[name] = tuple(unique)
    return Grid(values, space.coerce(fixed))


def sweep_space(space: SearchSpace, grid: Grid) -> SearchSpace:
    """The space a sweep's trials draw from: grid parameters categorical over their values, the others fixed."""
    params = {}
    for name, spec in space.params.items():
        if name in grid.values:
            choices = grid.values[name]
            params[name] = replace(spec, type="categorical", choices=choices, default=choices[0], tune=True,
                                   low=None, high=None, log=False)
        else:
            params[name] = replace(spec, tune=False, default=grid.fixed.get(name, spec.default))
    return replace(space, params=params)


def sweep_table(study: optuna.Study) -> pd.DataFrame:
    """One row per grid point of a sweep study: the point's values, the trial that trained it (the latest complete
    one), the number of folds and, per metric in FOLD_METRICS, the per-fold values and their mean (NaN for a point
    not trained yet)."""
    grid = Grid.from_attr(study.user_attrs[SWEEP_ATTR])
    complete = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        key = tuple(trial.params.get(name) for name in grid.values)
        complete[key] = trial  # trials come in number order: the latest wins
    rows = []
    for point in grid.points():
        trial = complete.get(tuple(point.values()))
        folds = [] if trial is None else [canonical_metrics(trial.user_attrs["folds"][k])
                                          for k in sorted(trial.user_attrs["folds"])]
        row = {**point, "trial": None if trial is None else trial.number, "folds": len(folds)}
        for metric in FOLD_METRICS:
            values = [float(f[metric]) for f in folds]
            row[f"{metric}/folds"] = values
            row[f"{metric}/mean"] = sum(values) / len(values) if values else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame, names: list[str]) -> str:
    """The table as aligned text for the terminal."""
    shown = table[names].copy()
    shown["trial"] = [("-" if pd.isna(t) else str(int(t))) for t in table["trial"]]
    shown["folds"] = table["folds"]
    for metric, label in FOLD_METRICS.items():
        shown[f"val {label}"] = ["-" if pd.isna(v) else f"{v:.4f}" for v in table[f"{metric}/mean"]]
    return shown.to_string(index=False)
