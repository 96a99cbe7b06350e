"""A worker that serves several studies (one per loss) of a shared storage, one trial at a time.

Each step it takes the unfinished study with the fewest finished+running trials, so N workers started anywhere
spread over the losses instead of piling onto one, and trains ONE trial of it through its :class:`Tuner` (which
keeps the total exact and re-queues dead workers' trials). It stops when every study has reached its total.
"""

from __future__ import annotations

import logging
import time

import optuna
from optuna.trial import TrialState

from benchmark.tuning.study import FINISHED, POLL_S, Tuner, TuneSummary

logger = logging.getLogger(__name__)


def _load(tuner: Tuner) -> tuple[int, int, int]:
    """(finished, running, waiting) trials of the tuner's study."""
    counts = tuner.counts()
    return sum(counts[s] for s in FINISHED), counts[TrialState.RUNNING], counts[TrialState.WAITING]


def pick_study(tuners: list[Tuner]) -> Tuner | None:
    """The study with room for one more trial (or a re-queued one waiting) and the fewest finished+running."""
    candidates = []
    for tuner in tuners:
        finished, running, waiting = _load(tuner)
        if finished < tuner.total and (waiting or finished + running < tuner.total):
            candidates.append((finished + running, tuner.name, tuner))
    return min(candidates, key=lambda c: c[:2])[2] if candidates else None


def run_worker(tuners: list[Tuner]) -> list[TuneSummary]:
    """Train trials of ``tuners``' studies until each has its total of finished trials."""
    while True:
        for tuner in tuners:
            tuner.recover_abandoned_work()
        if all(_load(t)[0] >= t.total for t in tuners):
            return [t.summary() for t in tuners]
        tuner = pick_study(tuners)
        if tuner is None:
            # Every remaining trial is running in another worker: wait in case one of them dies and is re-queued.
            logger.info("all remaining trials are running in other workers; waiting")
            time.sleep(POLL_S)
            for t in tuners:
                optuna.storages.fail_stale_trials(t.study)
            continue
        finished, running, _ = _load(tuner)
        logger.info("study %s: %d finished, %d running, of %d; starting a trial", tuner.name, finished, running,
                    tuner.total)
        tuner.run_one()
