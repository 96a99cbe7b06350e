"""The test phase end to end on In-Shop's query -> gallery layout: trained fold models, the dataset's masks, and
separated-128 / concatenated-512 metrics checked against pytorch-metric-learning's AccuracyCalculator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.config import protocol_for
from benchmark.evaluation.embed import compute_embeddings
from benchmark.evaluation.knn import l2_normalize
from benchmark.search_space import load_search_space
from benchmark.training.experiment import Experiment
from benchmark.training.run import run_folds
from benchmark.tuning.test_phase import TestSet, evaluate_test
from _data_helpers import make_inshop
from _evaluation_helpers import PML_METRICS, pml_metrics


@pytest.fixture(scope="module")
def inshop_trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("inshop")
    make_inshop(root, train_items=16, test_items=6)
    protocol = protocol_for("quick", iterations_per_epoch=2, max_epochs=2, patience=2)
    experiment = Experiment.create(
        dataset_name="inshop", loss_name="multi_similarity", protocol=protocol,
        search_space=load_search_space("multi_similarity", "inshop"), data_root=root, device=torch.device("cpu"),
        weights="none",
    )
    trainer = experiment.trainer(experiment.search_space.defaults())
    folds = run_folds(trainer, experiment.fold_run, seed=0)
    return experiment, trainer, [fold.state for fold in folds]


def test_inshop_test_set_is_query_against_gallery(inshop_trained):
    experiment, _, _ = inshop_trained
    test_set = TestSet(experiment)
    labels = experiment.dataset.labels
    assert len(test_set.query) == 6 and len(test_set.reference) == 12  # 1 query and 2 gallery images per item
    assert not set(test_set.query) & set(test_set.reference)
    assert set(labels[test_set.query]) == set(labels[test_set.reference]) == set(experiment.splits.test)


def test_inshop_metrics_equal_pml_query_to_gallery(inshop_trained):
    experiment, trainer, states = inshop_trained
    test_set = TestSet(experiment)
    metrics = evaluate_test(trainer, states, test_set, experiment.recall_at)
    assert experiment.recall_at == (1, 10, 20, 30, 40, 50)  # In-Shop's cut-offs in the literature
    assert len(metrics["separated_128"]["recall_at_k"]) == 6

    query_labels = test_set.labels[test_set.query]
    gallery_labels = test_set.labels[test_set.reference]
    parts = []
    for state in states:
        model = trainer.build_model()
        model.load_state_dict(state["model"])

        def embed(indices, model=model):
            loader = trainer.eval_loader([test_set.paths[i] for i in indices], test_set.labels[indices])
            return l2_normalize(compute_embeddings(model, loader, trainer.device)[0])

        parts.append((embed(test_set.query), embed(test_set.reference)))
    separated = [pml_metrics(q, query_labels, g, gallery_labels) for q, g in parts]
    concatenated = pml_metrics(l2_normalize(np.concatenate([q for q, _ in parts], axis=1)), query_labels,
                               l2_normalize(np.concatenate([g for _, g in parts], axis=1)), gallery_labels)
    for name in PML_METRICS:
        assert metrics["separated_128"][name] == pytest.approx(np.mean([m[name] for m in separated]), abs=1e-6)
        assert metrics["concatenated_512"][name] == pytest.approx(concatenated[name], abs=1e-6)
