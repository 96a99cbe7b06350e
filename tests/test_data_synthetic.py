"""The embedded synthetic dataset: generated once, deterministic, in the folder layout; CLI verify/splits on it."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from benchmark.cli._common import SYNTHETIC_SIZE_ENV as SIZE_ENV
from benchmark.data import get_dataset, make_splits
from benchmark.data import synthetic
from benchmark.data.synthetic import SyntheticConfig, config_for_size, ensure_synthetic
from _data_helpers import SMALL_SYNTHETIC, run_cli

SMALL = config_for_size(SMALL_SYNTHETIC)


@pytest.fixture(autouse=True)
def small(monkeypatch):
    monkeypatch.setenv(SIZE_ENV, SMALL_SYNTHETIC)  # what the CLI reads


def _digest(folder) -> str:
    files = sorted(p for p in folder.rglob("*.png"))
    return hashlib.sha256(b"".join(p.relative_to(folder).as_posix().encode() + p.read_bytes() for p in files)).hexdigest()


def test_generated_once_in_the_folder_layout(tmp_path, monkeypatch):
    dataset = get_dataset("synthetic", tmp_path, SMALL)
    root = tmp_path / "synthetic"
    assert dataset.root == root and len(dataset) == 16 * 4
    assert dataset.class_ids.tolist() == list(range(16))
    assert dataset.paths[0] == root / "00" / "0.png" and dataset.paths[-1] == root / "15" / "3.png"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest == {"generator_version": synthetic.GENERATOR_VERSION, "classes": 16, "per_class": 4, "size": 48,
                        "seed": 0, "superclasses": 8, "parts": 3}

    def fail(*args):
        raise AssertionError("regenerated although the manifest matches")

    monkeypatch.setattr(synthetic, "generate", fail)
    assert get_dataset("synthetic", tmp_path, SMALL).paths == dataset.paths


def test_deterministic_and_regenerated_when_the_manifest_differs(tmp_path):
    config = SyntheticConfig(classes=4, per_class=3)
    a = ensure_synthetic(tmp_path / "a", config)
    b = ensure_synthetic(tmp_path / "b", config)
    assert _digest(a) == _digest(b)
    (a / "manifest.json").write_text("{}")
    (a / "0" / "0.png").unlink()
    ensure_synthetic(a, config)
    assert _digest(a) == _digest(b)
    ensure_synthetic(a, SyntheticConfig(classes=4, per_class=3, seed=1))
    assert _digest(a) != _digest(b)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["a", "b"]


def test_images_vary_within_a_class():
    backgrounds = synthetic._backgrounds(np.random.default_rng(4), 96)
    layout, details = synthetic._layout(np.random.default_rng(1), 3), synthetic._details(np.random.default_rng(2), 3)
    first, second = (np.asarray(synthetic._render(np.random.default_rng(n), layout, details, 48, backgrounds))
                     for n in (0, 1))
    assert first.shape == (48, 48, 3) and first.dtype == np.uint8
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 10


def test_look_alike_twins_differ_in_one_part_colour():
    config = SyntheticConfig()
    s = config.superclasses
    for c in (0, 3, 2 * s + 1, 100):  # c and c + superclasses share the layout (c mod superclasses)
        a, b = synthetic._class_details(config, c), synthetic._class_details(config, c + s)
        assert a["body_colour"] == b["body_colour"] and a["mark_colour"] == b["mark_colour"]
        assert sum(x != y for x, y in zip(a["part_colours"], b["part_colours"])) == 1
        assert a["mark_pos"] != b["mark_pos"]


def test_verify_and_splits_via_cli(tmp_path):
    code, out, err = run_cli(["datasets", "verify", "synthetic", "--data-root", str(tmp_path)])
    assert code == 0, err
    assert out.startswith("synthetic: 64 images, 16 classes, all decode")
    code, out, err = run_cli(["datasets", "splits", "synthetic", "--data-root", str(tmp_path), "--json"])
    assert code == 0, err
    data = json.loads(out)
    assert data["test"] == list(range(8, 16))
    assert [fold["val"] for fold in data["folds"]] == [[6, 7], [0, 1], [2, 3], [4, 5]]
    assert data["hash"] == make_splits(get_dataset("synthetic", tmp_path, SMALL)).hash


def test_bad_size_setting_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(SIZE_ENV, "lots")
    code, _, err = run_cli(["datasets", "verify", "synthetic", "--data-root", str(tmp_path)])
    assert code == 2 and err.startswith(f"error: {SIZE_ENV}='lots' is not of the form") and err.count("\n") == 1


def test_a_killed_generation_leaves_nothing_behind_after_the_next_run(tmp_path):
    from benchmark.data.synthetic import SyntheticConfig, ensure_synthetic

    (tmp_path / ".synthetic.k1ll3d").mkdir()  # a generation killed mid-way
    (tmp_path / ".synthetic.k1ll3d" / "00").mkdir()
    ensure_synthetic(tmp_path / "synthetic", SyntheticConfig(classes=2, per_class=2))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["synthetic"]
