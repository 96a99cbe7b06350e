"""Tiny experiments on the synthetic set and one trained fold, shared by the training and fidelity tests."""

from __future__ import annotations

import torch

from _tiny import TINY_SYNTHETIC, synthetic_config
from benchmark.config import protocol_for
from benchmark.search_space import load_search_space
from benchmark.training.experiment import Experiment
from benchmark.training.fold import fold_data


def make_experiment(data_root, loss="multi_similarity", weights="none", size=TINY_SYNTHETIC, **protocol):
    """An experiment on the ``size`` (CLASSESxPER_CLASS) synthetic set under ``data_root``."""
    settings = {"iterations_per_epoch": 2, "max_epochs": 2, "patience": 2, **protocol}
    return Experiment.create(
        dataset_name="synthetic", loss_name=loss, protocol=protocol_for("quick", **settings),
        search_space=load_search_space(loss, "synthetic"), data_root=data_root, device=torch.device("cpu"),
        weights=weights, synthetic=synthetic_config(size),
    )


def train_fold(experiment, params=None, fold=0, seed=0):
    space = experiment.search_space
    trainer = experiment.trainer({**space.defaults(), **space.coerce(params or {})})
    data = fold_data(experiment.fold_run.paths, experiment.fold_run.labels, experiment.splits, fold)
    return trainer, data, trainer.train(data, seed)
