"""Retrieval metrics (equal to PML's AccuracyCalculator), the kNN search, embedding, and `benchmark evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import benchmark.cli as cli
from benchmark.errors import UserError
from benchmark.evaluation import knn as knn_module
from benchmark.evaluation.embed import compute_embeddings, l2_normalize
from benchmark.evaluation.knn import iter_knn, knn
from benchmark.evaluation.metrics import retrieval_metrics
from benchmark.evaluation.registry import METRICS
from _evaluation_helpers import (
    PML_METRICS,
    clustered_embeddings,
    labels_with_sizes,
    pml_metrics,
    random_embeddings,
)


def assert_matches_pml(ours: dict, pml: dict) -> None:
    for name in PML_METRICS:
        assert ours[name] == pytest.approx(pml[name], abs=1e-6), name


# -- equality with PML -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, sizes", [
    (0, [1] * 15 + [2] * 20 + [5] * 10 + [17] * 3),  # singletons, pairs, and a few large classes
    (1, list(np.random.default_rng(1).integers(1, 40, size=60))),  # mixed sizes
    (2, [60, 60, 1, 2]),  # few, large classes: max R far above the recall ranks
])
def test_random_embeddings_match_pml(seed, sizes):
    rng = np.random.default_rng(seed)
    labels = labels_with_sizes(rng, sizes)
    x = random_embeddings(rng, len(labels), 16)
    assert_matches_pml(retrieval_metrics(x, labels), pml_metrics(x, labels))


@pytest.mark.parametrize("noise", [0.3, 1.0])
def test_clustered_embeddings_match_pml(noise):
    rng = np.random.default_rng(3)
    labels = labels_with_sizes(rng, list(rng.integers(1, 30, size=80)))
    x = clustered_embeddings(rng, labels, 32, noise)
    ours = retrieval_metrics(x, labels)
    assert_matches_pml(ours, pml_metrics(x, labels))
    assert ours["precision_at_1"] > 0.5  # the clusters really are found, so the test is not trivially all-zero


def test_query_gallery_mode_matches_pml():
    rng = np.random.default_rng(4)
    labels = labels_with_sizes(rng, list(rng.integers(2, 12, size=70)))
    x = clustered_embeddings(rng, labels, 24, 0.8)
    query, gallery = x[:250], x[250:]
    query_labels, gallery_labels = labels[:250], labels[250:].copy()
    gallery_labels[gallery_labels == query_labels[0]] = -1  # this query's item has no gallery image: left out
    ours = retrieval_metrics(query, query_labels, gallery, gallery_labels)
    assert_matches_pml(ours, pml_metrics(query, query_labels, gallery, gallery_labels))


def test_unnormalised_input_is_normalised():
    rng = np.random.default_rng(5)
    labels = labels_with_sizes(rng, [4] * 30)
    x = random_embeddings(rng, len(labels), 8)
    scaled = x * rng.uniform(0.1, 10.0, size=(len(x), 1))
    assert retrieval_metrics(scaled, labels) == retrieval_metrics(x, labels)


def test_many_blocks_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(6)
    labels = labels_with_sizes(rng, list(rng.integers(1, 20, size=40)))
    x = clustered_embeddings(rng, labels, 16, 0.8)
    whole = retrieval_metrics(x, labels, recall_at=(1, 3, 10))
    monkeypatch.setattr(knn_module, "_BLOCK_BYTES", 2000)  # a few rows per block
    blocked = retrieval_metrics(x, labels, recall_at=(1, 3, 10))
    assert blocked["recall_at_k"] == whole["recall_at_k"]
    for name in PML_METRICS:
        assert blocked[name] == pytest.approx(whole[name], abs=1e-12)


# -- hand-computed values --------------------------------------------------------------------------------------

def on_circle(degrees) -> np.ndarray:
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_hand_computed_example():
    # Angles (degrees) and labels; C is a singleton and is left out. Neighbour labels by query, nearest first:
    #   a0 (R=2): B A A B -> P@1 0, RP 1/2, MAP@R 1/2 * (1/2)     = 1/4, first hit at rank 2
    #   b0 (R=1): A A A B -> 0, 0, 0,                                  first hit at rank 4
    #   a1 (R=2): A B A B -> 1, 1/2, 1/2 * (1/1)                   = 1/2, rank 1
    #   a2 (R=2): A B B A -> 1, 1/2, 1/2                                , rank 1
    #   b1 (R=1): A A B A -> 0, 0, 0,                                  rank 3
    x = on_circle([0, 4, 10, 15, 22, 90])
    labels = np.array([0, 1, 0, 0, 1, 2])
    metrics = retrieval_metrics(x, labels, recall_at=(1, 2, 4, 8))
    assert metrics["precision_at_1"] == pytest.approx(2 / 5)
    assert metrics["r_precision"] == pytest.approx(1.5 / 5)
    assert metrics["mean_average_precision_at_r"] == pytest.approx(1.25 / 5)
    assert metrics["recall_at_k"] == pytest.approx({1: 2 / 5, 2: 3 / 5, 4: 1.0, 8: 1.0})


def test_hand_computed_query_gallery_example():
    # Query A at 0 deg; gallery B at 5, A at 10, A at 30: labels B A A, R = 2.
    query = on_circle([0])
    gallery = on_circle([5, 10, 30])
    metrics = retrieval_metrics(query, np.array([7]), gallery, np.array([8, 7, 7]), recall_at=(1, 2))
    assert metrics["precision_at_1"] == 0.0
    assert metrics["r_precision"] == pytest.approx(0.5)
    assert metrics["mean_average_precision_at_r"] == pytest.approx(0.25)
    assert metrics["recall_at_k"] == {1: 0.0, 2: 1.0}


# -- kNN -------------------------------------------------------------------------------------------------------

def test_knn_excludes_the_query_itself_among_duplicates():
    # Five identical points: faiss may list a twin before the query itself, so dropping column 0 would be wrong.
    # With k = 2 the query is not even among the k + 1 = 3 results of its row (ties), and nothing is dropped
    # but the last column.
    x = l2_normalize(np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 2))
    for k in (2, 4):
        for block_rows in (1, 3, None):
            indices = np.concatenate([b[2] for b in iter_knn(x, k, block_rows=block_rows)])
            assert indices.shape == (7, k)
            assert not (indices == np.arange(7)[:, None]).any()
            assert set(indices[:5].ravel()) <= {0, 1, 2, 3, 4}
            assert indices[5, 0] == 6 and indices[6, 0] == 5
    assert set(knn(x, 4)[1][0]) == {1, 2, 3, 4}


def test_knn_query_gallery_returns_nearest_first():
    gallery = on_circle([0, 50, 20, 95])
    similarities, indices = knn(on_circle([45, 1]), 3, gallery)
    assert indices.tolist() == [[1, 2, 0], [0, 2, 1]]
    assert similarities[0, 0] == pytest.approx(np.cos(np.deg2rad(5)), abs=1e-6)
    with pytest.raises(ValueError):
        knn(gallery, 4)  # only 3 other points


def test_gpu_search_runs_on_the_current_cuda_device_unless_cpu_only(monkeypatch):
    """No GPU here: faiss's GPU entry points are replaced by recorders, to check which GPU the index is sent to
    (a worker started with --device cuda:1 must not search on GPU 0) and that cpu_only() keeps it on the CPU."""
    sent_to = []
    monkeypatch.setattr(knn_module.faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(knn_module.faiss, "get_num_gpus", lambda: 2)
    monkeypatch.setattr(knn_module.faiss, "index_cpu_to_gpu",
                        lambda resources, gpu, index: sent_to.append(gpu) or index, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    gallery = on_circle([0, 50, 20, 95])
    expected = knn(on_circle([45, 1]), 3, gallery)
    assert sent_to == [1]
    with knn_module.cpu_only():
        assert np.array_equal(knn(on_circle([45, 1]), 3, gallery)[1], expected[1])
    assert sent_to == [1]


# -- bad input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("embeddings, labels, message", [
    (np.zeros(5), np.arange(5), "2-D"),
    (np.zeros((5, 2)), np.arange(4), "5 embeddings but 4 labels"),
    (np.array([[np.nan, 1.0], [1.0, 0.0]]), np.array([0, 0]), "NaN"),
    (np.ones((3, 2)), np.array([0.5, 1.0, 1.0]), "integers"),
    (np.ones((3, 2)), np.array([0, 1, 2]), "singleton"),
])
def test_bad_input_raises_user_error(embeddings, labels, message):
    with pytest.raises(UserError, match=message):
        retrieval_metrics(embeddings, labels)


def test_reference_needs_labels_and_same_dimension():
    x, labels = np.ones((4, 3)), np.array([0, 0, 1, 1])
    with pytest.raises(UserError, match="both"):
        retrieval_metrics(x, labels, reference=x)
    with pytest.raises(UserError, match="dimensions"):
        retrieval_metrics(x, labels, np.ones((4, 2)), labels)


def test_recall_ranks_beyond_the_set_are_capped():
    x = on_circle([0, 10, 100, 110])
    metrics = retrieval_metrics(x, np.array([0, 1, 1, 0]), recall_at=(1, 1000))
    assert metrics["recall_at_k"] == {1: 0.0, 1000: 1.0}


# -- embedding -------------------------------------------------------------------------------------------------

def test_compute_embeddings_eval_mode_unnormalised_and_restores_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.5))
    images, labels = torch.randn(10, 6), torch.arange(10) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=4)
    model.train()
    embeddings, out_labels = compute_embeddings(model, loader, torch.device("cpu"))
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = model(images).numpy()
    assert embeddings.dtype == np.float32 and out_labels.dtype == np.int64
    np.testing.assert_allclose(embeddings, expected, rtol=1e-6)
    assert out_labels.tolist() == labels.tolist()
    assert not np.allclose(np.linalg.norm(embeddings, axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(embeddings), axis=1), 1.0, rtol=1e-6)


# -- the CLI ---------------------------------------------------------------------------------------------------

def run_cli(args, monkeypatch, capsys):
    code = cli.main(args)
    return code, capsys.readouterr()


def test_cli_json_equals_pml(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(7)
    labels = labels_with_sizes(rng, list(rng.integers(1, 15, size=40)))
    x = clustered_embeddings(rng, labels, 16, 0.8)
    np.save(tmp_path / "e.npy", x)
    np.save(tmp_path / "l.npy", labels)
    code, out = run_cli(["evaluate", "--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "l.npy"),
                         "--recall-at", "1,10", "--json"], monkeypatch, capsys)
    assert code == 0
    metrics = json.loads(out.out)
    assert_matches_pml(metrics, pml_metrics(x, labels))
    assert set(metrics["recall_at_k"]) == {"1", "10"}
    assert metrics["recall_at_k"]["1"] == pytest.approx(metrics["precision_at_1"])


def test_cli_query_gallery(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(8)
    labels = labels_with_sizes(rng, [6] * 30)
    x = clustered_embeddings(rng, labels, 16, 0.8)
    for name, array in {"q": x[:90], "ql": labels[:90], "g": x[90:], "gl": labels[90:]}.items():
        np.save(tmp_path / f"{name}.npy", array)
    code, out = run_cli(["evaluate", "--embeddings", str(tmp_path / "q.npy"), "--labels", str(tmp_path / "ql.npy"),
                         "--reference-embeddings", str(tmp_path / "g.npy"),
                         "--reference-labels", str(tmp_path / "gl.npy")], monkeypatch, capsys)
    assert code == 0
    lines = dict(line.split() for line in out.out.strip().splitlines())
    pml = pml_metrics(x[:90], labels[:90], x[90:], labels[90:])
    assert float(lines["mean_average_precision_at_r"]) == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-4)
    assert set(lines) == {*METRICS, "recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8"}


@pytest.mark.parametrize("setup, extra", [
    (lambda d: None, []),  # missing embeddings file
    (lambda d: (np.save(d / "e.npy", np.zeros(4)), np.save(d / "l.npy", np.arange(4))), []),  # not 2-D
    (lambda d: (np.save(d / "e.npy", np.zeros((4, 2))), np.save(d / "l.npy", np.arange(3))), []),  # lengths
    (lambda d: (np.save(d / "e.npy", np.full((4, 2), np.nan)), np.save(d / "l.npy", np.zeros(4, int))), []),
    (lambda d: ((d / "e.npy").write_text("not numpy"), np.save(d / "l.npy", np.zeros(4, int))), []),
    (lambda d: (np.save(d / "e.npy", np.ones((4, 2))), np.save(d / "l.npy", np.zeros(4, int))),
     ["--recall-at", "1,0"]),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, setup, extra):
    setup(tmp_path)
    code, out = run_cli(["evaluate", "--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "l.npy"),
                         *extra], monkeypatch, capsys)
    assert code == 2
    assert out.out == ""
    assert out.err.startswith("error: ") and out.err.count("\n") == 1
