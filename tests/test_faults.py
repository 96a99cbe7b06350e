"""Faults under real processes: the database restarted under running workers, a `benchmark test` killed mid-way,
a trial whose loss overflows to NaN among several workers. Each ends in a study/results state with nothing lost
and nothing counted twice."""

from __future__ import annotations

import signal
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

from _pg import create_database, private_pg  # noqa: F401 - private_pg is a fixture
from _tiny import BENCHMARK, TINY_PROTOCOL, run_benchmark
from benchmark.results import load_fold_results, load_runs, load_test_results
from benchmark.tuning.storage import open_storage

STUDY = "synthetic-proxy_anchor-quick"
# One validation per fold: the shortest trial that still reports each fold to the study.
FAST = [*TINY_PROTOCOL, "--set", "max_epochs=1", "--set", "save_interval=1", "--set", "patience=1", "--workers", "0"]
TUNE = ["tune", "--dataset", "synthetic", "--loss", "proxy_anchor", *FAST]


def trials(storage):
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)


def start(args, env, cwd):
    return subprocess.Popen([BENCHMARK, "-q", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, procs, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"exited ({proc.returncode}) while waiting for {what}: {proc.stderr.read()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def assert_clean_exit(proc: subprocess.Popen, timeout: float) -> None:
    """Finished, or stopped with one `error: ...` line (after any warnings): never a hang, never a traceback."""
    _, err = proc.communicate(timeout=timeout)
    assert "Traceback" not in err, err
    if proc.returncode != 0:
        lines = err.strip().splitlines()
        assert lines[-1].startswith("error: ") and sum(line.startswith("error: ") for line in lines) == 1, err


@pytest.mark.slow
def test_database_restarted_under_running_workers(private_pg, tiny_env, tmp_path):  # noqa: F811
    url = create_database(private_pg.url)  # the server is removed after the test, with it
    total = 2
    common = [*TUNE, "--storage", url, "--trials", str(total)]
    procs = [start(common, tiny_env, tmp_path) for _ in range(2)]
    storage = open_storage(url)  # one engine for all the polling below; it too rides out the restart

    def mid_trial():
        try:
            return [t for t in trials(storage) if t.state == TrialState.RUNNING and "0" in t.user_attrs.get("folds", {})]
        except KeyError:
            return []  # the study is not created yet

    wait_for(mid_trial, procs, 120, "a trial past its first fold")
    before = {t.number: t for t in trials(storage) if t.state == TrialState.COMPLETE}
    # Every connection is cut, and down for longer than a fold: each worker reaches the database meanwhile.
    private_pg.stop("fast")
    time.sleep(6)
    private_pg.start()
    for proc in procs:
        assert_clean_exit(proc, timeout=180)

    rerun = run_benchmark(["-q", *common], tiny_env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{total}/{total} trials" in rerun.stdout
    after = trials(storage)
    assert len({t.number for t in after}) == len(after)
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == total
    for number, trial in before.items():  # nothing finished is lost or changed
        assert after[number].state == TrialState.COMPLETE and after[number].params == trial.params
        assert after[number].value == trial.value
    # Every trial cut short is FAIL and was retried with its params (or never trained: a surplus one).
    for t in after:
        if t.state != TrialState.COMPLETE:
            assert t.state == TrialState.FAIL
            assert t.user_attrs.get("surplus") or any(c.system_attrs.get("failed_trial") == t.number for c in after), t
    runs = load_runs(url).query("kind == 'trial' and status == 'complete'")
    assert sorted(runs["trial_number"]) == sorted(t.number for t in complete)


@pytest.mark.slow
def test_killed_test_phase_resumes_without_retraining(tiny_env, tmp_path):
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    tuned = run_benchmark(["-q", *TUNE, "--storage", url, "--trials", "1"], tiny_env, tmp_path)
    assert tuned.returncode == 0, tuned.stderr
    test = ["test", "--dataset", "synthetic", "--loss", "proxy_anchor", *FAST, "--storage", url, "--reproductions", "2"]
    proc = start(test, tiny_env, tmp_path)

    def second_reproduction_started():
        try:
            return (load_runs(url).query("kind == 'test'")["reproduction"] == 1).any()
        except Exception:  # noqa: BLE001 - the results tables may not exist yet
            return False

    wait_for(second_reproduction_started, [proc], 180, "reproduction 2 to start")
    first = load_test_results(url)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert set(first["reproduction"]) == {0}

    rerun = run_benchmark(test, tiny_env, tmp_path)  # not -q: the log says what it skipped
    assert rerun.returncode == 0, rerun.stderr
    assert "1 of 2 reproductions already stored" in rerun.stderr and "reproduction 2/2 of" in rerun.stderr
    assert "reproduction 1/2 of" not in rerun.stderr  # reproduction 0 was not retrained
    results = load_test_results(url, complete_only=False)
    assert results.groupby("reproduction")["run_id"].nunique().to_dict() == {0: 1, 1: 1}
    again = results[results["reproduction"] == 0].reset_index(drop=True)
    assert again[first.columns].equals(first)  # the stored reproduction is untouched
    runs = load_runs(url).query("kind == 'test'")
    assert sorted(runs.query("status == 'complete'")["reproduction"]) == [0, 1]
    # The killed process's row for reproduction 2 is closed as failed, not left "running".
    assert runs.query("status != 'complete'")[["reproduction", "status"]].values.tolist() == [[1, "failed"]]


@pytest.mark.slow
def test_concurrent_test_processes_claim_different_reproductions(tiny_env, tmp_path):
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    # Fixed parameters: no study to tune first. The second process starts while the first trains reproduction 0:
    # it must take reproduction 1, not train reproduction 0 a second time.
    test = ["test", "--dataset", "synthetic", "--loss", "proxy_anchor", *FAST, "--storage", url,
            "--reproductions", "2", "--param", "margin=0.1"]
    first = start(test, tiny_env, tmp_path)

    def first_running():
        try:
            return (load_runs(url).query("kind == 'test'")["status"] == "running").any()
        except Exception:  # noqa: BLE001 - the results tables may not exist yet
            return False

    wait_for(first_running, [first], 180, "reproduction 1 to start")
    second = start(test, tiny_env, tmp_path)
    for proc in (first, second):
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0 and "Traceback" not in err, err
    runs = load_runs(url).query("kind == 'test'")
    assert sorted(runs["reproduction"]) == [0, 1] and set(runs["status"]) == {"complete"}  # nothing left running
    assert sorted(load_test_results(url)["reproduction"].unique()) == [0, 1]


@pytest.mark.slow
def test_nan_loss_trial_among_workers_is_recorded_and_the_study_completes(tiny_env, tmp_path):
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    # temperature 1e-40 divides the cosine similarities into float32 overflow: the loss is NaN at the first step.
    overflow, sane = 1e-40, [0.07, 0.5]
    study = optuna.create_study(study_name="synthetic-ntxent-quick", storage=url, direction="maximize")
    for temperature in [overflow, *sane]:
        study.enqueue_trial({"temperature": temperature})
    common = ["tune", "--dataset", "synthetic", "--loss", "ntxent", *FAST, "--storage", url, "--trials", "3",
              "--space", "temperature=1e-40:100:log"]
    procs = [start(common, tiny_env, tmp_path) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err

    trials = study.get_trials(deepcopy=False)
    # Two workers asking at the same moment may create a 4th trial: it is closed at once as a surplus FAIL, untrained.
    surplus = [t for t in trials if t.user_attrs.get("surplus")]
    assert all(t.state == TrialState.FAIL and not t.params for t in surplus)
    done = {t.params["temperature"]: t for t in trials if t not in surplus}
    assert sorted(done) == sorted([overflow, *sane])
    assert all(t.state == TrialState.COMPLETE for t in done.values())
    assert {f["status"] for f in done[overflow].user_attrs["folds"].values()} == {"nonfinite_loss"}
    for temperature in sane:
        assert {f["status"] for f in done[temperature].user_attrs["folds"].values()} == {"ok"}
    # The results database tells the NaN trial's folds apart.
    folds = load_fold_results(url).query("kind == 'trial'")
    nan_folds = folds[folds["trial_number"] == done[overflow].number]
    # As powerful-benchmarker: the NaN ends the trial after its first fold and scores it 0 (docs/FIDELITY.md).
    assert len(nan_folds) == 1 and set(nan_folds["status"]) == {"nonfinite_loss"}
    assert done[overflow].value == 0.0 and done[overflow].user_attrs["nonfinite_loss_fold"] == 0
    assert set(folds[folds["trial_number"] != done[overflow].number]["status"]) == {"ok"}
