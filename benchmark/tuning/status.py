"""Progress of every study in a storage, joined with the test reproductions stored for it."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from benchmark.evaluation.registry import OBJECTIVE, canonical_metrics
from benchmark.results import learned, load_kept_models, load_runs
from benchmark.tuning.storage import open_storage
from benchmark.tuning.namespace import in_namespace


def study_statuses(storage_url: str, results_url: str, prefix: str = "") -> list[dict]:
    """One row per study (of the namespace ``prefix``, when given)."""
    # Read-only throughout: status creates no tables and, on a SQLite file, no -wal/-shm files.
    storage = open_storage(storage_url, read_only=True)
    runs = load_runs(results_url)
    tests = runs[(runs["kind"] == "test") & (runs["status"] == "complete") & runs["reproduction"].notna()]
    reproductions = tests.groupby("study_name")["reproduction"].nunique().to_dict()
    kept_models = load_kept_models(results_url)
    kept = kept_models.groupby("study_name")["bytes"].sum().to_dict() if not kept_models.empty else {}
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if not in_namespace(summary.study_name, prefix):
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        complete = [t.value for t in finished]
        best = max(finished, key=lambda t: t.value) if finished else None
        rows.append({
            "study": summary.study_name,
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL),
            "running": states.count(TrialState.RUNNING) + states.count(TrialState.WAITING),
            "best_value": max(complete) if complete else None,
            "best_learned": None if best is None else trial_learned(best),
            "test_reproductions": int(reproductions.get(summary.study_name, 0)),
            "kept_model_bytes": int(kept.get(summary.study_name, 0)),
        })
    return sorted(rows, key=lambda r: r["study"])


def trial_learned(trial) -> bool | None:
    """Whether a trial's fold interval lies above its untrained models (None: trials of older versions did not
    keep the untrained value)."""
    folds = [canonical_metrics(f) for f in trial.user_attrs.get("folds", {}).values()]
    if not folds or any("untrained_" + OBJECTIVE not in f for f in folds):
        return None
    return learned([f[OBJECTIVE] for f in folds], [f["untrained_" + OBJECTIVE] for f in folds])
