"""Kept fold models (test --keep-models), benchmark embed, compute accounting and stored retrieval examples."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from _tiny import TINY_PROTOCOL, TINY_SYNTHETIC
from benchmark.cli import main

FIXED = ["--loss", "contrastive", "--dataset", "synthetic", *TINY_PROTOCOL, "--param", "neg_margin=0.6"]
STUDY = "synthetic-contrastive-quick[neg_margin=0.6]"


@pytest.fixture(scope="module")
def tested(tmp_path_factory, tiny_data_root):
    """Two reproductions tested with --keep-models best (module-scoped: trained once)."""
    folder = tmp_path_factory.mktemp("kept")
    storage = f"sqlite:///{folder / 'b.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHMARK_DATA_ROOT", str(tiny_data_root))
        mp.setenv("BENCHMARK_SYNTHETIC_SIZE", TINY_SYNTHETIC)
        assert main(["test", *FIXED, "--storage", storage, "--reproductions", "2", "--keep-models", "best"]) == 0
    return folder, storage


def _rows(folder: Path, query: str) -> list:
    with sqlite3.connect(folder / "b.db") as conn:
        return conn.execute(query).fetchall()


def _stored(folder: Path, reproduction: int, mode: str) -> dict:
    return dict(_rows(folder, f"SELECT metric, value FROM bm_test_results WHERE reproduction = {reproduction} "
                              f"AND mode = '{mode}'"))


def test_best_keeps_the_four_fold_models_of_the_best_reproduction(tested):
    folder, _ = tested
    kept = _rows(folder, "SELECT reproduction, fold, location, artifact_id, sha256, bytes FROM bm_models")
    assert sorted(fold for _, fold, *_ in kept) == [0, 1, 2, 3]
    scores = {r: _stored(folder, r, "separated_128")["mean_average_precision_at_r"] for r in (0, 1)}
    assert {r for r, *_ in kept} == {max(scores, key=scores.get)}
    assert len(list((folder / "models").iterdir())) == 4  # the other reproduction's files were removed
    import hashlib

    for _, fold, location, artifact, sha256, size in kept:
        path = Path(location) / artifact
        assert path.stat().st_size == size and hashlib.sha256(path.read_bytes()).hexdigest() == sha256
        content = torch.load(path, weights_only=True)
        assert set(content) == {"trunk", "embedder", "meta"}
        assert content["embedder"]["weight"].shape == (128, 128) and content["meta"]["fold"] == fold
        assert content["meta"]["study"] == STUDY


def test_embed_then_evaluate_reproduces_the_stored_test_metrics(tested, tiny_env, tmp_path, capsys):
    folder, storage = tested
    [(reproduction,)] = _rows(folder, "SELECT DISTINCT reproduction FROM bm_models")
    separated = []
    for fold in range(4):
        out = tmp_path / f"e{fold}.npy"
        assert main(["embed", "--study", STUDY, "--fold", str(fold), "--out", str(out), "--storage", storage,
                     "--device", "cpu"]) == 0
        assert np.load(out).shape[1] == 128
        capsys.readouterr()
        assert main(["evaluate", "--embeddings", str(out), "--labels", str(tmp_path / f"e{fold}.labels.npy"),
                     "--json"]) == 0
        separated.append(json.loads(capsys.readouterr().out))
    stored = _stored(folder, reproduction, "separated_128")
    for metric in ("precision_at_1", "r_precision", "mean_average_precision_at_r"):
        assert np.mean([m[metric] for m in separated]) == pytest.approx(stored[metric], abs=1e-6)
    out = tmp_path / "c.npy"
    assert main(["embed", "--study", STUDY, "--concatenated", "--out", str(out), "--storage", storage,
                 "--device", "cpu"]) == 0
    assert np.load(out).shape[1] == 512
    assert len((tmp_path / "c.paths.txt").read_text().splitlines()) == len(np.load(tmp_path / "c.labels.npy"))
    capsys.readouterr()
    assert main(["evaluate", "--embeddings", str(out), "--labels", str(tmp_path / "c.labels.npy"), "--json"]) == 0
    concatenated = json.loads(capsys.readouterr().out)
    stored = _stored(folder, reproduction, "concatenated_512")
    assert concatenated["mean_average_precision_at_r"] == pytest.approx(stored["mean_average_precision_at_r"],
                                                                        abs=1e-6)


def test_embed_an_image_folder(tested, tiny_data_root, tmp_path):
    _, storage = tested
    images = sorted((tiny_data_root / "synthetic").rglob("*.png"))[:5]
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    for i, image in enumerate(images):
        target = tmp_path / "imgs" / ("a" if i < 3 else "") / f"{i}.png"
        target.write_bytes(image.read_bytes())
    assert main(["embed", "--study", STUDY, "--fold", "0", "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "f.npy"), "--storage", storage, "--device", "cpu"]) == 0
    assert np.load(tmp_path / "f.npy").shape == (5, 128)
    assert sorted(np.load(tmp_path / "f.labels.npy").tolist()) == [-1, -1, 0, 0, 0]


def test_a_changed_model_file_is_refused(tested, tmp_path, capsys):
    folder, storage = tested
    [(location, artifact)] = _rows(folder, "SELECT location, artifact_id FROM bm_models WHERE fold = 3")
    path = Path(location) / artifact
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-10])
        assert main(["embed", "--study", STUDY, "--fold", "3", "--out", str(tmp_path / "x.npy"),
                     "--storage", storage]) == 2
        assert "does not match its recorded sha256" in capsys.readouterr().err
        assert not (tmp_path / "x.npy").exists()
    finally:
        path.write_bytes(original)


@pytest.mark.parametrize("args, message", [
    (["--study", "nope", "--fold", "0"], "no kept models of 'nope'"),
    (["--study", STUDY, "--fold", "7"], "--fold 7: expected one of"),
    (["--study", STUDY, "--concatenated", "--reproduction", "5"], "reproduction 5"),
])
def test_embed_bad_input_is_one_line(tested, tmp_path, capsys, args, message):
    _, storage = tested
    assert main(["embed", *args, "--out", str(tmp_path / "x.npy"), "--storage", storage]) == 2
    assert message in capsys.readouterr().err


def test_compute_and_retrieval_examples_are_stored(tested):
    folder, _ = tested
    compute = _rows(folder, "SELECT r.reproduction, c.fold, c.wall_seconds, c.device, c.device_seconds "
                            "FROM bm_compute c JOIN bm_runs r ON r.id = c.run_id")
    for reproduction in (0, 1):
        mine = {fold: (wall, device, device_s) for rep, fold, wall, device, device_s in compute
                if rep == reproduction}
        assert sorted(mine) == [-1, 0, 1, 2, 3]
        assert all(wall > 0 and device == "cpu" and device_s is None for wall, device, device_s in mine.values())
        assert mine[-1][0] >= sum(mine[f][0] for f in range(4))  # the run includes its folds and the evaluation
    examples = _rows(folder, "SELECT run_id, position, query_path, query_label, neighbours FROM bm_retrieval_examples")
    runs = {run for run, *_ in examples}
    assert len(runs) == 2 and len(examples) == 16
    # the same fixed queries for every reproduction
    by_run = {run: sorted((pos, path) for r, pos, path, *_ in examples if r == run) for run in runs}
    first, second = by_run.values()
    assert first == second
    for _, _, path, label, neighbours in examples:
        neighbours = json.loads(neighbours)
        assert len(neighbours) == 5 and all(n["path"] != path for n in neighbours)
        similarities = [n["similarity"] for n in neighbours]
        assert similarities == sorted(similarities, reverse=True) and all(-1 <= s <= 1 + 1e-6 for s in similarities)


def test_keep_all_and_none(tiny_env, tmp_path):
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    assert main(["test", *FIXED, "--storage", storage, "--reproductions", "1", "--keep-models", "none"]) == 0
    assert _rows(tmp_path, "SELECT COUNT(*) FROM bm_models") == [(0,)]
    models = tmp_path / "elsewhere"
    assert main(["test", *FIXED, "--storage", storage, "--reproductions", "2", "--keep-models", "all",
                 "--models", str(models)]) == 0
    assert _rows(tmp_path, "SELECT reproduction, COUNT(*) FROM bm_models GROUP BY reproduction") == [(1, 4)]
    assert len(list(models.iterdir())) == 4
