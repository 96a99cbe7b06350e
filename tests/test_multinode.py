"""Many workers on one PostgreSQL study (`db init`, `worker`, `tune` together): exact totals, a killed worker's trial
retried with its params at once by the survivors on the same host."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import datetime

import optuna
import pytest
from optuna.trial import TrialState

from _pg import pg_url  # noqa: F401 - fixture
from _tiny import BENCHMARK, run_benchmark
from benchmark.results import load_runs
from benchmark.tuning.storage import GRACE_PERIOD_S

STUDY = "synthetic-proxy_anchor-quick"
# A few seconds per trial, so a worker can be caught mid-trial.
PROTOCOL = ["--protocol", "quick", "--set", "iterations_per_epoch=2", "--set", "max_epochs=2",
            "--set", "patience=2", "--device", "cpu", "--workers", "0"]
TOTAL = 6


def trials(url):
    return optuna.load_study(study_name=STUDY, storage=url.replace("postgresql://", "postgresql+psycopg2://", 1)
                             ).get_trials(deepcopy=False)


def start(args, env, cwd):
    return subprocess.Popen([BENCHMARK, "-q", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_three_processes_one_killed_reach_the_exact_total(pg_url, tiny_env, tmp_path):  # noqa: F811
    init = run_benchmark(["db", "init", "--storage", pg_url, "--dataset", "synthetic", "--losses", "proxy_anchor",
                          "--protocol", "quick"], tiny_env, tmp_path)
    assert init.returncode == 0, init.stderr
    assert f"study {STUDY}: created" in init.stdout and "results tables ready" in init.stdout
    assert [s.study_name for s in optuna.get_all_study_summaries(pg_url.replace("postgresql://", "postgresql+psycopg2://", 1))] == [STUDY]

    common = ["--dataset", "synthetic", *PROTOCOL, "--storage", pg_url, "--trials", str(TOTAL)]
    workers = [start(["worker", "--losses", "proxy_anchor", *common], tiny_env, tmp_path) for _ in range(2)]
    tuner = start(["tune", "--loss", "proxy_anchor", *common], tiny_env, tmp_path)
    worker_pids = {p.pid: p for p in workers}

    victim = None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline:
        for t in trials(pg_url):
            owner = t.user_attrs.get("worker", {}).get("pid")
            if t.state == TrialState.RUNNING and owner in worker_pids and "0" in t.user_attrs.get("folds", {}):
                victim = t
                break
        time.sleep(0.2)
    assert victim is not None, "no worker got past a trial's first fold in time"
    killed = worker_pids.pop(victim.user_attrs["worker"]["pid"])
    killed.send_signal(signal.SIGKILL)
    killed_at = datetime.now()  # optuna stores naive local times
    killed.communicate(timeout=30)
    assert killed.returncode == -signal.SIGKILL

    for proc in [*worker_pids.values(), tuner]:
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err

    all_trials = trials(pg_url)
    assert len({t.number for t in all_trials}) == len(all_trials)
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    assert len(complete) == TOTAL
    assert all_trials[victim.number].state == TrialState.FAIL
    others = [t for t in all_trials if t.state not in (TrialState.COMPLETE,) and t.number != victim.number]
    assert all(t.user_attrs.get("surplus") for t in others)
    retries = [t for t in complete if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params
    assert retries[0].user_attrs["folds"]["0"] == victim.user_attrs["folds"]["0"]  # the finished fold inherited
    # Same host, dead pid: recovered right away, not after the heartbeat grace period.
    assert (retries[0].datetime_start - killed_at).total_seconds() < GRACE_PERIOD_S
    # Both survivors (the other worker and `tune`) did work.
    assert {tuner.pid, *worker_pids} <= {t.user_attrs["worker"]["pid"] for t in complete} | {killed.pid}
    runs = load_runs(pg_url)
    assert sorted(runs.query("status == 'complete'")["trial_number"]) == sorted(t.number for t in complete)
    assert runs.query(f"trial_number == {victim.number}")["status"].tolist() == ["failed"]  # the killed one's row

    again = run_benchmark(["-q", "worker", "--losses", "proxy_anchor", *common], tiny_env, tmp_path)
    assert again.returncode == 0 and f"study {STUDY}: {TOTAL}/{TOTAL} trials finished" in again.stdout
    assert len(trials(pg_url)) == len(all_trials)
