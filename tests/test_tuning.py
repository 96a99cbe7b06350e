"""tune / test / status with real processes: totals, resume, zombie trials, interrupts, concurrency."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from _tiny import BENCHMARK, TINY_PROTOCOL, run_benchmark, synthetic_config
from benchmark.results import load_runs, load_test_results, summarize_test_results
from benchmark.search_space import load_search_space
from benchmark.tuning.pruning import fold_step

STUDY = "synthetic-proxy_anchor-quick"
# Slower trials (a few seconds each) so a process can be caught mid-trial.
SLOW_PROTOCOL = ["--protocol", "quick", "--set", "iterations_per_epoch=6", "--set", "max_epochs=3",
                 "--set", "patience=3", "--device", "cpu"]


def tune_args(trials, protocol=TINY_PROTOCOL, loss="proxy_anchor"):
    return ["-q", "tune", "--loss", loss, "--dataset", "synthetic", *protocol, "--trials", str(trials)]


def trials_of(tmp_path, study=STUDY):
    storage = f"sqlite:///{tmp_path}/results/benchmark.db"
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def states(trials):
    return [t.state for t in trials]


def test_tune_then_test_end_to_end(tiny_env, tmp_path):
    first = run_benchmark(tune_args(3), tiny_env, tmp_path)
    assert first.returncode == 0, first.stderr
    trials = trials_of(tmp_path)
    assert states(trials) == [TrialState.COMPLETE] * 3
    for trial in trials:
        assert {"alpha", "margin", "loss_lr"} <= set(trial.params)
        # The objective is the mean of the 4 folds' validation MAP@R, each reported as it finished, after fold 0's
        # validation epoch (max_epochs 2, validated every 2 epochs).
        folds = trial.user_attrs["folds"]
        assert sorted(folds) == ["0", "1", "2", "3"]
        assert trial.value == pytest.approx(np.mean([f["mean_average_precision_at_r"] for f in folds.values()]))
        assert sorted(trial.intermediate_values) == [2, *(k * fold_step(2) for k in (1, 2, 3, 4))]

    again = run_benchmark(tune_args(3), tiny_env, tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout
    assert len(trials_of(tmp_path)) == 3

    more = run_benchmark(tune_args(4), tiny_env, tmp_path)
    assert more.returncode == 0
    assert states(trials_of(tmp_path)) == [TrialState.COMPLETE] * 4

    test = run_benchmark(["-q", "test", "--loss", "proxy_anchor", "--dataset", "synthetic", *TINY_PROTOCOL,
                          "--reproductions", "2"], tiny_env, tmp_path)
    assert test.returncode == 0, test.stderr
    assert "separated_128" in test.stdout and "concatenated_512" in test.stdout
    url = f"sqlite:///{tmp_path}/results/benchmark.db"
    summary = summarize_test_results(url)
    # Each reproduction keeps its untrained baseline: the same fold models before training, on the test set.
    assert set(summary["mode"]) == {"separated_128", "concatenated_512", "untrained_separated_128",
                                    "untrained_concatenated_512"}
    assert "untrained MAP@R" in test.stdout
    rows = summary[summary["metric"] == "mean_average_precision_at_r"]
    assert (rows["n"] == 2).all()
    assert all(r.ci_low <= r.mean <= r.ci_high and math.isfinite(r.ci_low) for r in rows.itertuples())
    runs = load_runs(url)
    test_runs = runs[runs["kind"] == "test"]
    assert len(test_runs) == 2 and test_runs["seed"].nunique() == 2
    best = max(trials_of(tmp_path)[:4], key=lambda t: t.value)
    # The searched values of the best trial; the parameters the search left fixed keep their defaults.
    defaults = load_search_space("proxy_anchor", "synthetic").defaults()
    assert all(p == {**defaults, **best.params} for p in test_runs["params"])
    for column in ("config", "provenance", "split_hash"):
        assert test_runs[column].notna().all()

    resumed = run_benchmark(["-q", "test", "--loss", "proxy_anchor", "--dataset", "synthetic", *TINY_PROTOCOL,
                             "--reproductions", "2"], tiny_env, tmp_path)
    assert resumed.returncode == 0
    keys = load_test_results(url)[["reproduction", "mode", "metric"]]
    assert len(keys) == len(keys.drop_duplicates())
    assert len(load_runs(url).query("kind == 'test'")) == 2  # nothing retrained

    status = run_benchmark(["status", "--json"], tiny_env, tmp_path)
    assert status.returncode == 0 and '"test_reproductions": 2' in status.stdout


def test_two_processes_reach_the_total_without_duplicates(tiny_env, tmp_path):
    procs = [subprocess.Popen([BENCHMARK, *tune_args(4)], env=tiny_env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err
    trials = trials_of(tmp_path)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    # Anything beyond the total was closed without training (never a fifth COMPLETE trial).
    assert all(t.user_attrs.get("surplus") for t in trials if t.state != TrialState.COMPLETE)
    assert len({t.number for t in trials}) == len(trials)
    pids = {t.user_attrs["worker"]["pid"] for t in complete}
    assert len(pids) == 2  # both processes did work


# Each process waits for the go file, then asks for three trials: all of them at once pop the enqueued ones.
_ASK_ENQUEUED = """
import os, sys, time
import optuna
from benchmark.tuning.storage import open_storage
study = optuna.load_study(study_name="race", storage=open_storage(sys.argv[1]))
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
print(" ".join(str(study.ask().number) for _ in range(3)))
"""


def test_processes_asking_at_once_on_sqlite_never_get_the_same_enqueued_trial(tmp_path):
    # The race behind a worker crashing on "Cannot tell a COMPLETE trial": Optuna reads a WAITING trial, then marks
    # it RUNNING; without a transaction around both, several processes took the same one (4-7 of 18 here).
    url, go = f"sqlite:///{tmp_path / 'race.db'}", tmp_path / "go"
    study = optuna.create_study(study_name="race", storage=url)
    for x in range(18):
        study.enqueue_trial({"x": float(x)})
    procs = [subprocess.Popen([sys.executable, "-c", _ASK_ENQUEUED, url, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    time.sleep(3)  # let them all load the study and reach the go file check
    go.touch()
    numbers = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        numbers += [int(n) for n in out.split()]
    assert sorted(numbers) == list(range(18))  # every enqueued trial handed out exactly once


def test_a_trial_whose_database_connection_is_cut_is_requeued_and_the_study_goes_on(tiny_env, tiny_data_root,
                                                                                      tmp_path, monkeypatch):
    # A server restart cuts a write in flight (tests/test_faults.py does it for real, when the timing hits one);
    # here the second fold's results write of the first trial is cut, every time the same.
    from sqlalchemy.exc import OperationalError

    from benchmark.config import protocol_for
    from benchmark.results.store import ResultsStore
    from benchmark.training.experiment import Experiment
    from benchmark.tuning.study import Tuner

    record_fold = ResultsStore.record_fold
    calls = []

    def cut_once(self, run_id, fold, *args, **kwargs):
        calls.append(fold)
        if len(calls) == 2:
            raise OperationalError("INSERT INTO bm_fold_results ...", {},
                                   Exception("server closed the connection unexpectedly"), connection_invalidated=True)
        return record_fold(self, run_id, fold, *args, **kwargs)

    monkeypatch.setattr(ResultsStore, "record_fold", cut_once)
    protocol = protocol_for("quick", iterations_per_epoch=2, max_epochs=1, patience=1)
    experiment = Experiment.create(
        dataset_name="synthetic", loss_name="proxy_anchor", protocol=protocol,
        search_space=load_search_space("proxy_anchor", "synthetic"), data_root=tiny_data_root,
        device=torch.device("cpu"), weights="none", num_workers=0, synthetic=synthetic_config())
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    summary = Tuner(experiment, url, url, total_trials=2, sampler="random", pruner="none", seed=0).run()

    assert summary.finished == 2
    trials = optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
    cut = trials[0]
    assert cut.state == TrialState.FAIL and list(cut.user_attrs["folds"]) == ["0"]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == cut.number)
    assert retry.state == TrialState.COMPLETE and retry.params == cut.params
    assert retry.user_attrs["folds"]["0"] == cut.user_attrs["folds"]["0"]  # the stored fold was not retrained
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2
    runs = load_runs(url)
    assert runs.query(f"trial_number == {cut.number}")["status"].tolist() == ["failed"]


def wait_for_running_trial(tmp_path, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            running = [t for t in trials_of(tmp_path) if t.state == TrialState.RUNNING]
        except (KeyError, Exception):  # the study or its tables do not exist yet
            running = []
        if running and "0" in running[0].user_attrs.get("folds", {}):
            return running[0]
        time.sleep(0.3)
    raise AssertionError("no trial got to its second fold in time")


@pytest.mark.parametrize("how", ["kill", "sigint", "sigterm"])
def test_a_trial_cut_short_is_retried_with_its_params_and_nothing_is_lost(tiny_env, tmp_path, how):
    proc = subprocess.Popen([BENCHMARK, *tune_args(2, SLOW_PROTOCOL)], env=tiny_env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = wait_for_running_trial(tmp_path, proc)
    finished_fold = victim.user_attrs["folds"]["0"]
    proc.send_signal({"kill": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}[how])
    _, err = proc.communicate(timeout=60)
    if how == "kill":
        assert proc.returncode == -signal.SIGKILL
        assert trials_of(tmp_path)[victim.number].state == TrialState.RUNNING  # a zombie, until the next run
    else:
        assert proc.returncode == 130
        assert trials_of(tmp_path)[victim.number].state == TrialState.FAIL
        # One line says so; Optuna's failed-trial traceback is not printed.
        assert "Traceback" not in err and f"trial {victim.number} recorded as FAIL and re-queued" in err, err

    rerun = run_benchmark(tune_args(2, SLOW_PROTOCOL), tiny_env, tmp_path, timeout=400)
    assert rerun.returncode == 0, rerun.stderr
    trials = trials_of(tmp_path)
    assert trials[victim.number].state == TrialState.FAIL
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2
    retries = [t for t in complete if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.params == victim.params
    # The retry inherited the fold the victim had finished instead of training it again.
    assert retry.user_attrs["folds"]["0"] == finished_fold
    url = f"sqlite:///{tmp_path}/results/benchmark.db"
    runs = load_runs(url)
    assert len(runs.query(f"kind == 'trial' and trial_number == {retry.number}")) == 1
    # The victim's results row is closed too, whether its process said so (SIGINT/SIGTERM) or died (SIGKILL).
    assert runs.query(f"trial_number == {victim.number}")["status"].tolist() == ["failed"]
    assert "running" not in set(runs["status"])


def test_a_changed_split_hash_is_refused(tiny_env, tmp_path):
    assert run_benchmark(tune_args(1), tiny_env, tmp_path).returncode == 0
    storage = f"sqlite:///{tmp_path}/results/benchmark.db"
    optuna.load_study(study_name=STUDY, storage=storage).set_user_attr("split_hash", "0" * 64)
    result = run_benchmark(tune_args(2), tiny_env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: split hash changed") and result.stderr.count("\n") == 1
    assert len(trials_of(tmp_path)) == 1


def test_test_without_a_study_is_a_clear_error(tiny_env, tmp_path):
    result = run_benchmark(["test", "--loss", "proxy_anchor", "--dataset", "synthetic", *TINY_PROTOCOL],
                           tiny_env, tmp_path)
    assert result.returncode == 2 and "benchmark tune" in result.stderr and result.stderr.count("\n") == 1


def test_concatenated_embeddings_are_the_four_normalised_parts(tiny_env, tiny_data_root):
    from benchmark.config import protocol_for
    from benchmark.evaluation.embed import compute_embeddings, concatenate_normalized
    from benchmark.evaluation.metrics import retrieval_metrics
    from benchmark.search_space import load_search_space
    from benchmark.training.experiment import Experiment
    from benchmark.tuning.test_phase import TestSet, evaluate_test

    experiment = Experiment.create(
        dataset_name="synthetic", loss_name="proxy_anchor", protocol=protocol_for("quick"),
        search_space=load_search_space("proxy_anchor", "synthetic"), data_root=tiny_data_root,
        device=torch.device("cpu"), weights="none", synthetic=synthetic_config())
    trainer = experiment.trainer(experiment.search_space.defaults())
    states = []
    for seed in range(4):  # four different (untrained) fold models
        torch.manual_seed(seed)
        states.append({"model": trainer.build_model().state_dict()})
    test_set = TestSet(experiment)
    metrics = evaluate_test(trainer, states, test_set, (1, 2))

    parts = []
    for state in states:
        model = trainer.build_model()
        model.load_state_dict(state["model"])
        loader = trainer.eval_loader([test_set.paths[i] for i in test_set.query], test_set.labels[test_set.query])
        parts.append(compute_embeddings(model, loader, trainer.device)[0])
    concatenated = concatenate_normalized(parts)
    assert concatenated.shape == (len(test_set.query), 4 * 128)
    for i, part in enumerate(parts):
        block = concatenated[:, 128 * i:128 * (i + 1)]
        np.testing.assert_allclose(np.linalg.norm(block, axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(block, part / np.linalg.norm(part, axis=1, keepdims=True), rtol=1e-5)
    labels = test_set.labels[test_set.query]
    assert set(labels) == set(experiment.splits.test)
    assert metrics["concatenated_512"] == retrieval_metrics(concatenated, labels, recall_at=(1, 2))
    separated = [retrieval_metrics(p, labels, recall_at=(1, 2)) for p in parts]
    assert metrics["separated_128"]["mean_average_precision_at_r"] == pytest.approx(
        np.mean([m["mean_average_precision_at_r"] for m in separated]))


def test_a_full_disk_mid_trial_is_one_line_and_the_trial_is_requeued(tiny_env, tmp_path, monkeypatch, capsys):
    import errno

    from benchmark.cli import main
    from benchmark.results.store import ResultsStore

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/checkpoint.pt")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ResultsStore, "record_fold", full)
    code = main(tune_args(1))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: no space left on the disk writing /data/checkpoint.pt")
    assert "re-queued" in err
    trials = trials_of(tmp_path)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]  # the same params, waiting
    assert trials[1].system_attrs.get("failed_trial") == 0
    runs = load_runs(f"sqlite:///{tmp_path}/results/benchmark.db")
    assert "running" not in set(runs["status"])


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_dataloader_workers_is_quiet(tiny_env, tmp_path):
    import os

    # docker stop, Slurm and a terminal's Ctrl-C signal every process of the group, DataLoader workers included.
    proc = subprocess.Popen([BENCHMARK, *tune_args(1, SLOW_PROTOCOL), "--workers", "2"], env=tiny_env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    victim = wait_for_running_trial(tmp_path, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert f"trial {victim.number} recorded as FAIL and re-queued" in err
    assert trials_of(tmp_path)[victim.number].state == TrialState.FAIL
