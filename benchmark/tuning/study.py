"""``tune``: one Optuna study per (dataset, loss, protocol), objective = mean validation MAP@R over the folds.

How the study stays exact and loses nothing:
- ``--trials`` is the study's total of finished (COMPLETE or PRUNED) trials: a rerun resumes up to it, several
  workers together stop at it. A trial a worker creates beyond the total (two workers asking at the same moment) is
  closed at once as FAIL with the user attribute ``surplus`` and never trained.
- Each fold's best validation metrics are stored in the trial's user attributes the moment the fold ends. Fold 0's
  validations and the folds' running mean are reported as intermediate values (benchmark.tuning.pruning), so a
  pruner can stop hopeless trials between folds (judged from fold 1 on); the pruner is a recorded study setting.
- A trial left RUNNING by a dead process (same host: its pid is gone; any host: its heartbeat is stale) is marked
  FAIL and re-queued with the same parameters; the retry inherits the folds already finished.
- Ctrl-C / SIGTERM: the current trial is recorded as FAIL and re-queued the same way; completed trials are untouched.
- A database connection cut mid-query (the server restarted) fails the trial that was writing; it is re-queued the
  same way and the worker goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from benchmark.errors import out_of_space
from benchmark.evaluation.registry import METRICS, OBJECTIVE, canonical_metrics
from benchmark.results import ResultsStore, collect_provenance
from benchmark.results.db import database_error, driver_message
from benchmark.search_space import format_params
from benchmark.training.device import describe_device
from benchmark.training.experiment import Experiment
from benchmark.training.fold import FoldResult
from benchmark.training.progress import Bar
from benchmark.training.run import run_folds
from benchmark.training.seeding import derive_seed
from benchmark.tuning.abandoned import close_abandoned_runs, process_is_gone
from benchmark.tuning.pruning import PruningReporter, make_pruner
from benchmark.tuning.samplers import make_sampler, resolve_sampler
from benchmark.tuning.namespace import namespaced
from benchmark.tuning.storage import open_storage, retry_callback
from benchmark.tuning.studies import (NONFINITE_ATTR, NONFINITE_SCORE, existing_trial_count,
                                      record_or_check_settings, study_name)

logger = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
POLL_S = 5.0
MAX_LOST_CONNECTIONS = 3


class _SurplusTrial(Exception):
    """This worker's trial would exceed the study's total."""


class _NonFiniteLoss(Exception):
    """A fold's loss became non-finite: the trial ends and is scored NONFINITE_SCORE."""

    def __init__(self, fold: int):
        super().__init__(f"non-finite loss in fold {fold}")
        self.fold = fold


@dataclass
class TuneSummary:
    study_name: str
    finished: int
    total: int
    best_value: float | None
    best_params: dict | None


class Tuner:
    def __init__(self, experiment: Experiment, storage_url: str, results_url: str, *, total_trials: int,
                 sampler: str | optuna.samplers.BaseSampler, pruner: str, seed: int, name: str | None = None,
                 common_seed: bool = False, seed_defaults: bool = False):
        """``sampler``: a name from SAMPLERS, or a ready sampler (a sweep's GridSampler); ``name``: the study's
        name when it is not tune's ``<dataset>-<loss>-<protocol>``; ``common_seed``: every trial trains with the
        same seed instead of one per trial number; ``seed_defaults``: a new study's first trial is the search
        space's defaults (MLRC's optimum where published), enqueued through Optuna."""
        self.experiment = experiment
        self.total = total_trials
        self.seed = seed
        self.common_seed = common_seed
        self.name = namespaced(experiment.study_prefix,
                               name or study_name(experiment.dataset_name, experiment.loss_name, experiment.label))
        self.storage = open_storage(storage_url)
        self.results = ResultsStore(results_url)
        if isinstance(sampler, str):
            existing = existing_trial_count(self.storage, self.name)
            # Seeded per resume and per process, so a restart or a second worker does not replay the start-up points.
            sampler_seed = derive_seed(seed, existing, os.getpid())
            self.sampler_name = resolve_sampler(sampler, experiment.search_space, pruned=pruner != "none")
            sampler = make_sampler(self.sampler_name, experiment.search_space, sampler_seed)
        else:
            self.sampler_name = type(sampler).__name__
        self.pruner_name = pruner
        protocol = experiment.protocol
        self.study = optuna.create_study(
            study_name=self.name, storage=self.storage, direction="maximize", sampler=sampler, load_if_exists=True,
            pruner=make_pruner(pruner, protocol.max_epochs, protocol.num_folds))
        record_or_check_settings(self.study, experiment, pruner=self.pruner_name, sampler=self.sampler_name,
                                 total=self.total, seed_defaults=seed_defaults)
        self.worker = {"host": socket.gethostname(), "pid": os.getpid()}
        self._current_trial: int | None = None  # the number of the trial this process is training, for an interrupt
        self._lost_connections = 0  # trials in a row failed by a connection cut mid-query

    # -- study -----------------------------------------------------------------------------------------------
    def counts(self) -> dict[TrialState, int]:
        counts = {state: 0 for state in TrialState}
        for trial in self.study.get_trials(deepcopy=False):
            counts[trial.state] += 1
        return counts

    def recover_abandoned_work(self) -> None:
        """What dead processes left running: their trials FAILed and re-queued, their results rows closed."""
        self._recover_dead_local_trials()
        failed = {t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        close_abandoned_runs(self.results, self.name, failed)

    def _recover_dead_local_trials(self) -> None:
        """Trials RUNNING under a pid of this host that no longer exists: FAIL them and re-queue their params."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker") or {}
            if not process_is_gone(worker.get("host"), worker.get("pid")):
                continue
            if not self._fail(trial.number):
                continue  # another worker got there first
            logger.warning("trial %d was left running by dead process %s: marked FAIL and re-queued",
                           trial.number, worker.get("pid"))
            retry_callback()(self.study, self._frozen(trial.number))

    # Through our storage's public interface, not ``study.tell``: that also runs the sampler's after_trial hook,
    # whose GridSampler stops the optimisation loop, which raises outside one.
    def _fail(self, number: int) -> bool:
        """Mark a RUNNING trial FAIL; False when it had finished meanwhile (another worker closed it)."""
        try:
            self.storage.set_trial_state_values(self._trial_id(number), state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    def _frozen(self, number: int) -> optuna.trial.FrozenTrial:
        return self.storage.get_trial(self._trial_id(number))

    def _trial_id(self, number: int) -> int:
        study_id = self.storage.get_study_id_from_name(self.name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> TuneSummary:
        self.recover_abandoned_work()
        with Bar("outer", self.total, "trials", initial=min(self.total, self._finished())) as bar:
            return self._run(bar)

    def _finished(self) -> int:
        counts = self.counts()
        return sum(counts[s] for s in FINISHED)

    def _run(self, bar: Bar) -> TuneSummary:
        shown = min(self.total, self._finished())
        while True:
            counts = self.counts()
            finished = sum(counts[s] for s in FINISHED)
            if min(finished, self.total) > shown:
                bar.update(min(finished, self.total) - shown)
                shown = min(finished, self.total)
            if finished >= self.total:
                break
            pending = counts[TrialState.RUNNING] + counts[TrialState.WAITING]
            if finished + pending >= self.total and counts[TrialState.WAITING] == 0:
                # The remaining trials are running elsewhere; wait in case one of them dies and is re-queued.
                logger.info("study %s: %d finished, %d running in other workers; waiting", self.name, finished,
                            counts[TrialState.RUNNING])
                time.sleep(POLL_S)
                optuna.storages.fail_stale_trials(self.study)
                self.recover_abandoned_work()
                continue
            logger.info("study %s: trial %d/%d", self.name, finished + 1, self.total)
            self.run_one()
        return self.summary()

    def run_one(self) -> None:
        """Train one trial (a re-queued one first); one that would exceed the total is closed as surplus."""
        self._current_trial = None
        try:
            self.study.optimize(self._objective, n_trials=1, catch=(_SurplusTrial,), gc_after_trial=True,
                                show_progress_bar=False)
        except KeyboardInterrupt:
            self._requeue_interrupted("interrupted")
            raise
        except Exception as error:
            if out_of_space(error):
                self._requeue_interrupted("no space left on the disk")
                raise
            if not self._requeue_after_lost_connection(error):
                raise
        else:
            self._lost_connections = 0

    def _requeue_after_lost_connection(self, error: Exception) -> bool:
        """A connection cut mid-query (a database server restarting; new connections wait for it) fails the trial
        that was writing: re-queue it with its finished folds and go on, unless it happens trial after trial."""
        lost = database_error(error)
        if lost is None or not lost.connection_invalidated or self._current_trial is None:
            return False
        self._lost_connections += 1
        if self._lost_connections > MAX_LOST_CONNECTIONS:
            return False
        trial = self._frozen(self._current_trial)
        if trial.state == TrialState.RUNNING:  # the cut hit Optuna's own final write: nobody else will close it
            self._fail(trial.number)
            trial = self._frozen(self._current_trial)
        if trial.state != TrialState.FAIL:
            return False
        retry_callback()(self.study, trial)
        logger.warning("trial %d: the database connection was cut mid-write (%s); re-queued with its finished "
                       "folds", trial.number, driver_message(lost))
        return True

    def summary(self) -> TuneSummary:
        finished = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        best = max(finished, key=lambda t: t.value) if finished else None
        return TuneSummary(self.name, sum(self.counts()[s] for s in FINISHED), self.total,
                           best.value if best else None, best.params if best else None)

    def _requeue_interrupted(self, why: str) -> None:
        if self._current_trial is None:
            return
        trial = self._frozen(self._current_trial)
        if trial.state == TrialState.FAIL:
            retry_callback()(self.study, trial)
            logger.warning("%s: trial %d recorded as FAIL and re-queued; rerun to resume", why, trial.number)

    def _is_surplus(self, trial: optuna.Trial) -> bool:
        ahead = self.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        return sum(1 for t in ahead if t.number < trial.number) >= self.total

    def _objective(self, trial: optuna.Trial) -> float:
        if self._is_surplus(trial):
            trial.set_user_attr("surplus", True)
            raise _SurplusTrial()
        e = self.experiment
        self._current_trial = trial.number
        trial.set_user_attr("worker", self.worker)
        params = e.search_space.suggest(trial)
        inherited: dict[str, dict] = dict(trial.user_attrs.get("folds", {}))
        trial_seed = derive_seed(self.seed) if self.common_seed else derive_seed(self.seed, trial.number)
        trial.set_user_attr("seed", trial_seed)
        logger.info("trial %d: %s%s", trial.number + 1, format_params(params),
                    f" (resuming: folds {sorted(inherited)} already done)" if inherited else "")
        done = {int(k): canonical_metrics(v) for k, v in inherited.items()}
        with self.results.run(
            kind="trial", study_name=self.name, dataset=e.dataset_name, loss=e.loss_name, protocol=e.label,
            params=params, config={**_config(e, self.sampler_name), **e.scale_record(params)}, seed=trial_seed,
            split_hash=e.splits.hash,
            provenance=collect_provenance(describe_device(e.device)), trial_number=trial.number,
        ) as record:
            reporter = PruningReporter(trial, e.protocol.max_epochs, e.protocol.num_folds)

            def on_epoch(fold: int, row: dict) -> None:
                # Inside fold 0 only (a resumed trial has reported it already); epoch 0 is the untrained model.
                if fold == 0 and not done and row["epoch"] > 0 and row[f"val_{OBJECTIVE}"] is not None:
                    reporter.fold0_epoch(row["epoch"], row[f"val_{OBJECTIVE}"])

            def on_fold_done(result: FoldResult) -> None:
                record.fold(result)
                done[result.fold] = _fold_summary(result)
                trial.set_user_attr("folds", {str(k): v for k, v in done.items()})
                if result.status != "ok":
                    raise _NonFiniteLoss(result.fold)
                reporter.folds_done([d[OBJECTIVE] for d in done.values()])

            todo = [f for f in range(e.protocol.num_folds) if f not in done]
            try:
                for fold, summary in sorted(done.items()):  # a resumed trial whose finished fold went non-finite
                    if summary.get("status", "ok") != "ok":
                        raise _NonFiniteLoss(fold)
                run_folds(e.trainer(params, on_epoch=on_epoch), e.fold_run, seed=trial_seed, folds=todo,
                          on_fold_done=on_fold_done)
            except _NonFiniteLoss as stop:
                # As powerful-benchmarker: a NaN ends the whole experiment (the other folds are not trained) and the
                # optimiser is told a mean of 0 (api_parsers/base_api_parser.py, run_train_or_eval). The trial stays
                # COMPLETE, with its cause in a user attribute and the fold's status in bm_fold_results.
                trial.set_user_attr(NONFINITE_ATTR, stop.fold)
                record.finish("complete", objective=NONFINITE_SCORE)
                logger.warning("trial %d: the loss became non-finite in fold %d; scored %g as powerful-benchmarker "
                               "did", trial.number, stop.fold, NONFINITE_SCORE)
                return NONFINITE_SCORE
            except optuna.TrialPruned:
                record.finish("pruned")
                logger.info("trial %d pruned after %d folds", trial.number + 1, len(done))
                raise
            value = sum(d[OBJECTIVE] for d in done.values()) / len(done)
            record.finish("complete", objective=value)
        logger.info("trial %d: mean validation MAP@R %.4f", trial.number + 1, value)
        return value


def _fold_summary(result: FoldResult) -> dict:
    return {**{key: result.best_metrics[key] for key in METRICS}, "best_epoch": result.best_epoch,
            "status": result.status, "untrained_" + OBJECTIVE: result.untrained_metrics[OBJECTIVE]}


def _config(e: Experiment, sampler: str) -> dict:
    return {"protocol": e.protocol.to_dict(), "weights": e.weights, "identity": e.identity(),
            "split_scheme": e.splits.scheme,
            "search_space": e.search_space.fingerprint(), "sampler": sampler,
            "loss_code_sha256": e.search_space.code_sha256}
