"""Everything a report shows, read once from the Optuna storage and the results database.

The leaderboard is one row per (dataset, protocol, loss): the test metrics' mean and 95 % t-interval over
reproductions in both modes, the tuning budget, and MLRC's published figures where the dataset is one of theirs.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from benchmark.config import DEFAULT_BATCH_SAMPLER
from benchmark.data.registry import DATASETS
from benchmark.errors import UserError
from benchmark.evaluation.registry import METRICS, MODES
from benchmark.redaction import redact_url
from benchmark.report.compute import run_costs, study_cost
from benchmark.results import (
    learned,
    load_compute,
    load_epoch_curves,
    load_proxy_diagnostics,
    load_retrieval_examples,
    load_runs,
    load_test_results,
    summarize_test_results,
)
from benchmark.tuning.storage import open_storage
from benchmark.tuning.grid import SWEEP_ATTR
from benchmark.tuning.namespace import in_namespace
from benchmark.tuning.studies import LABEL_ATTR, NONFINITE_ATTR, SAMPLERS_ATTR

logger = logging.getLogger(__name__)

# MLRC searched 50 trials per loss and dataset; a study that does not record its own total is measured against it.
MLRC_TRIAL_BUDGET = 50
REFERENCE_DIR = Path(__file__).resolve().parent.parent / "reference"
REFERENCE_DATASETS = tuple(name for name, spec in DATASETS.items() if spec.mlrc_reference)
PUBLISHED_PROTOCOL = "mlrc"  # the published test results are comparable with this label's rows only
PUBLISHED_SUFFIX = "(MLRC published)"
PUBLISHED_SOURCE = (
    "Musgrave, Belongie, Lim: A Metric Learning Reality Check (ECCV 2020, arXiv 2003.08505v3), test results; mean of "
    "their reproductions, no interval published here. SOP's cells are not included (not reachable offline)"
)
_PUBLISHED_MODES = {"separated_128": "sep128", "concatenated_512": "concat512"}
_PUBLISHED_METRICS = {"precision_at_1": "p_at_1", "r_precision": "r_precision",
                      "mean_average_precision_at_r": "map_at_r"}
REFERENCE_SOURCE = (
    "Musgrave, Belongie, Lim: A Metric Learning Reality Check (ECCV 2020), powerful-benchmarker docs "
    "(papers/mlrc: optimisation traces and optimal hyperparameters); best 4-fold-mean validation MAP@R of each "
    "50-trial search"
)


@dataclass
class StudyData:
    """One Optuna study with what the report shows about it."""

    name: str
    dataset: str
    loss: str
    protocol: str
    study: optuna.Study
    attrs: dict
    finished: int
    total: int
    best_value: float | None
    best_params: dict | None
    nonfinite: int = 0  # trials scored 0 because their loss became non-finite (tuning.studies.NONFINITE_ATTR)


@dataclass
class ReportData:
    storage: str
    results: str
    studies: list[StudyData]
    summary: pd.DataFrame  # summarize_test_results
    runs: pd.DataFrame  # load_runs
    curves: pd.DataFrame  # load_epoch_curves
    reference_mapr: dict = field(default_factory=dict)  # {(loss, dataset): value}
    reference_hparams: dict = field(default_factory=dict)  # {(loss, dataset): {param: value}}
    sweeps: list[StudyData] = field(default_factory=list)  # grid studies (`benchmark sweep`), not on the leaderboard
    proxy_diagnostics: pd.DataFrame = field(default_factory=pd.DataFrame)  # load_proxy_diagnostics
    compute: pd.DataFrame = field(default_factory=pd.DataFrame)  # load_compute
    examples: pd.DataFrame = field(default_factory=pd.DataFrame)  # load_retrieval_examples
    # MLRC's published test results, {(dataset, loss): {"<mode>/<metric>": fraction}}; shown beside `mlrc` rows only.
    published: dict = field(default_factory=lambda: load_published())
    test_values: pd.DataFrame = field(default_factory=pd.DataFrame)  # load_test_results: one row per reproduction

    @property
    def empty(self) -> bool:
        return not self.studies and not self.sweeps and self.summary.empty


def collect(storage_url: str, results_url: str, prefix: str = "") -> ReportData:
    """Read the studies and results (only those of the study namespace ``prefix`` when one is given); a missing
    SQLite file raises UserError (the read API refuses to create it)."""
    def mine(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[[in_namespace(name, prefix) for name in frame["study_name"]]] if prefix else frame

    runs = mine(load_runs(results_url))
    summary = mine(summarize_test_results(results_url))
    curves = mine(load_epoch_curves(results_url))
    found = [s for s in _studies(storage_url) if in_namespace(s.name, prefix)]
    studies = [s for s in found if SWEEP_ATTR not in s.attrs]
    sweeps = [s for s in found if SWEEP_ATTR in s.attrs]
    mapr, hparams = load_reference()
    # Only the redacted URLs reach the report.
    return ReportData(redact_url(storage_url), redact_url(results_url), studies, summary, runs, curves, mapr, hparams, sweeps,
                      mine(load_proxy_diagnostics(results_url)), mine(load_compute(results_url)),
                      mine(load_retrieval_examples(results_url)),
                      test_values=mine(load_test_results(results_url)))


def _studies(storage_url: str) -> list[StudyData]:
    storage = open_storage(storage_url, read_only=True)
    found = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        attrs = dict(study.user_attrs)
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        best = max(complete, key=lambda t: t.value) if complete else None
        name = summary.study_name
        dataset, loss, protocol = _identity(name, attrs)
        found.append(StudyData(
            name=name, dataset=dataset, loss=loss, protocol=protocol, study=study, attrs=attrs,
            finished=sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials),
            total=int(attrs.get("total_trials") or MLRC_TRIAL_BUDGET),
            best_value=None if best is None else float(best.value),
            best_params=None if best is None else dict(best.params),
            nonfinite=sum(NONFINITE_ATTR in t.user_attrs for t in complete),
        ))
    return sorted(found, key=lambda s: (s.dataset, s.protocol, s.loss, s.name))


def _identity(name: str, attrs: dict) -> tuple[str, str, str]:
    """(dataset, loss, protocol) from the study's attributes, else from its name ``<dataset>-<loss>-<protocol>``."""
    parts = name.split("-")
    protocol = attrs.get("protocol")
    protocol_name = attrs.get(LABEL_ATTR) or (protocol_label(protocol) if isinstance(protocol, dict) else protocol)
    return (
        str(attrs.get("dataset") or (parts[0] if len(parts) == 3 else name)),
        str(attrs.get("loss") or (parts[1] if len(parts) == 3 else name)),
        str(protocol_name or (parts[2] if len(parts) == 3 else "?")),
    )


def protocol_label(protocol: dict) -> str:
    """``Protocol.label`` of a stored ``Protocol.to_dict()`` (older studies recorded no batch sampler)."""
    sampler = protocol.get("batch_sampler", DEFAULT_BATCH_SAMPLER)
    return protocol["name"] if sampler == DEFAULT_BATCH_SAMPLER else f"{protocol['name']}+{sampler}"


def configuration(study_name: str) -> str:
    """The ``[name=value,...]`` suffix of a test of fixed parameters (``benchmark test --param``), else ''."""
    start = study_name.find("[")
    return study_name[start:] if start >= 0 and study_name.endswith("]") else ""


def load_reference() -> tuple[dict, dict]:
    """MLRC's best validation MAP@R and optimal hyperparameters, keyed by (loss, dataset)."""
    mapr: dict = {}
    hparams: dict = {}
    with open(REFERENCE_DIR / "mlrc_best_val_mapr.csv", newline="") as f:
        for row in csv.DictReader(f):
            for dataset in REFERENCE_DATASETS:
                if row.get(dataset):
                    mapr[(row["loss"], dataset)] = float(row[dataset])
    with open(REFERENCE_DIR / "mlrc_optimal_hparams.csv", newline="") as f:
        for row in csv.DictReader(f):
            for dataset in REFERENCE_DATASETS:
                if row.get(dataset):
                    hparams.setdefault((row["loss"], dataset), {})[row["param"]] = float(row[dataset])
    return mapr, hparams


def load_published() -> dict:
    """MLRC's published test results (mlrc_test_results.csv, percent) as fractions, keyed (dataset, loss)."""
    published = {}
    with open(REFERENCE_DIR / "mlrc_test_results.csv", newline="") as f:
        for row in csv.DictReader(f):
            published[(row["dataset"], row["loss"])] = {
                f"{mode}/{metric}": float(row[f"{prefix}_{column}"]) / 100
                for mode, prefix in _PUBLISHED_MODES.items() for metric, column in _PUBLISHED_METRICS.items()}
    return published


def leaderboard(data: ReportData) -> pd.DataFrame:
    """One row per (dataset, protocol, loss): trials, best validation MAP@R, MLRC's figures and, per mode and
    metric, ``<mode>/<metric>/{mean,ci_low,ci_high,n}``."""
    rows: dict[tuple, dict] = {}
    for s in data.studies:
        row = rows.setdefault((s.dataset, s.protocol, s.loss), _empty_row(s.dataset, s.protocol, s.loss))
        row.update(study=s.name, trials_finished=s.finished, trials_total=s.total, best_val_map_at_r=s.best_value,
                   sampler=", ".join(s.attrs.get(SAMPLERS_ATTR, [])) or None, nonfinite_trials=s.nonfinite)
    for r in data.summary.itertuples(index=False):
        if r.mode not in MODES or r.metric not in METRICS:
            continue
        # A test of fixed parameters is a row of its own, named by the values it set.
        loss = f"{r.loss} {configuration(r.study_name)}".rstrip()
        row = rows.setdefault((r.dataset, r.protocol, loss), _empty_row(r.dataset, r.protocol, loss))
        row["test_study"] = r.study_name
        for part in ("mean", "ci_low", "ci_high", "n"):
            row[f"{r.mode}/{r.metric}/{part}"] = getattr(r, part)
        row["adacos"] = adacos_summary(data.runs, r.study_name)
    for dataset, protocol in {(d, p) for d, p, _ in rows if p == PUBLISHED_PROTOCOL}:
        for (published_dataset, loss), values in data.published.items():
            if published_dataset != dataset:
                continue
            label = f"{loss} {PUBLISHED_SUFFIX}"
            row = rows.setdefault((dataset, protocol, label), _empty_row(dataset, protocol, label))
            row["published"] = True
            for key, value in values.items():
                row[f"{key}/mean"] = value
    costs = run_costs(data.compute)
    for (dataset, protocol, label), row in rows.items():
        row.update(study_cost(costs, row["study"], row["test_study"]))
        loss = label.split(" ")[0]
        # MLRC's figures come from BN-Inception under its protocol: beside any other protocol they mislead.
        mlrc = protocol.split("+")[0] == "mlrc"
        row["mlrc_best_val_map_at_r"] = data.reference_mapr.get((loss, dataset)) if mlrc else None
        optimum = data.reference_hparams.get((loss, dataset)) if mlrc else None
        row["mlrc_optimal_hparams"] = None if optimum is None else "; ".join(f"{k}={v:g}" for k, v in optimum.items())
    _add_significance(rows, data.test_values)
    frame = pd.DataFrame([rows[key] for key in sorted(rows)])
    return frame


def adacos_summary(runs: pd.DataFrame, study_name: str) -> str | None:
    """The C training classes and AdaCos scale s of a test configuration's folds (stored in each run's config by
    an AdaCos schedule), e.g. ``C=75 s=6.083`` or ``C=74 s=6.06, C=73 s=6.04`` when folds differ; None otherwise."""
    if runs.empty:
        return None
    configs = runs.loc[(runs["study_name"] == study_name) & (runs["kind"] == "test"), "config"]
    pairs = sorted({(f["classes"], f["scale"]) for config in configs if isinstance(config, dict)
                    for f in config.get("adacos") or []}, reverse=True)
    return ", ".join(f"C={c} s={scale:.3f}" for c, scale in pairs) or None


def _add_significance(rows: dict[tuple, dict], tests: pd.DataFrame) -> None:
    """Per (dataset, protocol) table and column: the untrained models' mean, whether the loss learned (its interval
    above that), whether it is statistically tied with the best, and its bootstrap rank interval."""
    from benchmark.report.significance import standings

    values, untrained = _per_reproduction(tests)
    for (dataset, protocol, mode, metric), by_loss in values.items():
        eligible = set()
        for label, reps in by_loss.items():
            base = untrained.get((dataset, protocol, label, mode, metric), [])
            row = rows[(dataset, protocol, label)]
            row[f"{mode}/{metric}/untrained"] = float(np.mean(base)) if base else math.nan
            # Without an untrained value (results of older versions) nothing says it did not learn.
            row[f"{mode}/{metric}/learned"] = learned(reps.values(), base) if base else True
            if row[f"{mode}/{metric}/learned"]:
                eligible.add(label)
        for label, standing in standings(by_loss, eligible).items():
            row = rows[(dataset, protocol, label)]
            row[f"{mode}/{metric}/tied"] = standing.tied_with_best
            row[f"{mode}/{metric}/p_vs_best"] = standing.pvalue
            row[f"{mode}/{metric}/rank_low"] = standing.rank_low
            row[f"{mode}/{metric}/rank_high"] = standing.rank_high


def differences(data: ReportData) -> list[tuple[str, str, str, str, list]]:
    """(dataset, protocol, mode, metric, [significance.Difference]) for every table with at least two losses."""
    from benchmark.report.significance import pairwise

    values, _ = _per_reproduction(data.test_values)
    return [(*key, pairwise(by_loss)) for key, by_loss in sorted(values.items()) if len(by_loss) > 1]


def _per_reproduction(tests: pd.DataFrame) -> tuple[dict, dict]:
    """``{(dataset, protocol, mode, metric): {label: {reproduction: value}}}`` and the untrained models' values
    ``{(dataset, protocol, label, mode, metric): [value, ...]}``; labels as the leaderboard's loss column."""
    from benchmark.tuning.test_phase import UNTRAINED_PREFIX

    values: dict[tuple, dict] = {}
    untrained: dict[tuple, list] = {}  # (dataset, protocol, label, mode, metric) -> values
    for r in tests.itertuples(index=False):
        if r.value is None or not math.isfinite(r.value):
            continue
        label = f"{r.loss} {configuration(r.study_name)}".rstrip()
        mode = r.mode.removeprefix(UNTRAINED_PREFIX)
        if mode not in MODES or r.metric not in METRICS:
            continue
        if r.mode.startswith(UNTRAINED_PREFIX):
            untrained.setdefault((r.dataset, r.protocol, label, mode, r.metric), []).append(r.value)
        else:
            values.setdefault((r.dataset, r.protocol, mode, r.metric), {}).setdefault(label, {})[
                int(r.reproduction)] = r.value
    return values, untrained


def _empty_row(dataset: str, protocol: str, loss: str) -> dict:
    row = {"dataset": dataset, "protocol": protocol, "loss": loss, "study": None, "test_study": None,
           "trials_finished": None, "trials_total": None, "best_val_map_at_r": None, "sampler": None,
           "nonfinite_trials": None, "adacos": None, "published": False}
    for mode in MODES:
        for metric in METRICS:
            row.update({f"{mode}/{metric}/mean": math.nan, f"{mode}/{metric}/ci_low": math.nan,
                        f"{mode}/{metric}/ci_high": math.nan, f"{mode}/{metric}/n": 0,
                        f"{mode}/{metric}/untrained": math.nan, f"{mode}/{metric}/learned": None,
                        f"{mode}/{metric}/tied": False, f"{mode}/{metric}/p_vs_best": math.nan,
                        f"{mode}/{metric}/rank_low": None, f"{mode}/{metric}/rank_high": None})
    return row


def require_results(data: ReportData) -> None:
    if data.empty:
        raise UserError(f"no results yet in {data.results}: run `benchmark tune` and `benchmark test` first")
