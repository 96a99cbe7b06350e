"""Progress of every study in a storage, joined with the test reproductions stored for it."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from benchmark.results import ResultsStore
from benchmark.tuning.storage import open_storage


def study_statuses(storage_url: str, results_url: str) -> list[dict]:
    storage = open_storage(storage_url)
    results = ResultsStore(results_url)
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        complete = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        rows.append({
            "study": summary.study_name,
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL),
            "running": states.count(TrialState.RUNNING) + states.count(TrialState.WAITING),
            "best_value": max(complete) if complete else None,
            "test_reproductions": len(results.completed_reproductions(summary.study_name)),
        })
    return sorted(rows, key=lambda r: r["study"])
