"""``tune`` starts from what is known: trial 0 of a new study is the search space's defaults (MLRC's optimum on
MLRC's datasets), enqueued through Optuna; ``--no-seed-defaults`` turns it off; the choice is recorded."""

from __future__ import annotations

import optuna
import pytest

from _tiny import TINY_PROTOCOL
from benchmark.cli import main
from benchmark.search_space import load_search_space


def _tune(tmp_path, *extra, trials=2):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    assert main(["-q", "tune", "--loss", "multi_similarity", "--dataset", "synthetic", *TINY_PROTOCOL,
                 "--set", "max_epochs=1", "--set", "patience=1", "--set", "iterations_per_epoch=1",
                 "--trials", str(trials), "--sampler", "random",
                 "--storage", url, *extra]) == 0
    return optuna.load_study(study_name="synthetic-multi_similarity-quick", storage=url)


def test_defaults_are_trial_0(tiny_env, tmp_path):
    study = _tune(tmp_path)
    first, second = study.get_trials(deepcopy=False)
    assert first.params == load_search_space("multi_similarity", "synthetic").defaults()
    assert first.user_attrs["seeded"] == "search-space defaults" and "seeded" not in second.user_attrs
    assert second.params != first.params  # the sampler takes over from trial 1
    assert study.user_attrs["seed_defaults"] is True


def test_no_seed_defaults_is_recorded(tiny_env, tmp_path):
    study = _tune(tmp_path, "--no-seed-defaults", trials=1)
    first = study.get_trials(deepcopy=False)[0]
    assert first.params != load_search_space("multi_similarity", "synthetic").defaults()
    assert "seeded" not in first.user_attrs and study.user_attrs["seed_defaults"] is False


def test_defaults_on_mlrc_datasets_are_mlrc_optimum():
    # What trial 0 of a CUB200 study trains (benchmark/reference/mlrc_optimal_hparams.csv).
    assert load_search_space("multi_similarity", "cub200").defaults() == pytest.approx(
        {"alpha": 0.01, "beta": 50.60, "base": 0.56})
