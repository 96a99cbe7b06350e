"""Splits: MLRC's rotation with original class ids, the kfold alternative, the hash and its check."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from benchmark.data import check_split_hash, get_dataset, make_splits
from benchmark.errors import UserError
from _data_helpers import BENCHMARK, make_cars, make_cub, run_cli, write_image


def _ids(first: int, last: int) -> list[int]:
    return list(range(first, last + 1))


# 1-based class ids of the MLRC validation folds: CUB indices 75-99, 0-24, 25-49, 50-74; Cars 74-97, 0-23, 25-48, 49-72.
CUB_VAL = [_ids(76, 100), _ids(1, 25), _ids(26, 50), _ids(51, 75)]
CARS_VAL = [_ids(75, 98), _ids(1, 24), _ids(26, 49), _ids(50, 73)]


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    make_cub(root)
    return root


@pytest.fixture(scope="module")
def cars_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cars")
    make_cars(root)
    return root


def _check_mlrc(data: dict, trainval: list[int], test: list[int], vals: list[list[int]]) -> None:
    assert data["scheme"] == "mlrc"
    assert data["test"] == test
    assert [fold["val"] for fold in data["folds"]] == vals
    for fold in data["folds"]:
        assert sorted(fold["train"] + fold["val"]) == trainval
        assert not set(fold["train"]) & set(fold["val"])
    assert len(data["hash"]) == 64


def test_cub_mlrc_splits_via_cli(cub_root):
    code, out, err = run_cli(["datasets", "splits", "cub200", "--data-root", str(cub_root), "--json"])
    assert code == 0, err
    data = json.loads(out)
    assert data["dataset"] == "cub200"
    _check_mlrc(data, _ids(1, 100), _ids(101, 200), CUB_VAL)
    assert [len(fold["train"]) for fold in data["folds"]] == [75] * 4


def test_cub_mlrc_splits_in_a_subprocess(cub_root):
    result = subprocess.run(
        [str(BENCHMARK), "datasets", "splits", "cub200", "--data-root", str(cub_root), "--json"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "BENCHMARK_DATA_ROOT": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    _check_mlrc(json.loads(result.stdout), _ids(1, 100), _ids(101, 200), CUB_VAL)


def test_cars_mlrc_splits_never_validate_on_classes_25_and_74(cars_root):
    code, out, err = run_cli(["datasets", "splits", "cars196", "--data-root", str(cars_root), "--json"])
    assert code == 0, err
    data = json.loads(out)
    _check_mlrc(data, _ids(1, 98), _ids(99, 196), CARS_VAL)
    assert {25, 74}.isdisjoint(c for fold in data["folds"] for c in fold["val"])


def test_cars_loader_reads_all_annotations(cars_root):
    dataset = get_dataset("cars196", cars_root)
    assert len(dataset) == 196
    assert dataset.labels.tolist() == _ids(1, 196)
    assert dataset.paths[0] == cars_root / "cars196" / "car_ims" / "000001.jpg"


def test_kfold_is_a_plain_rotation(cars_root):
    splits = make_splits(get_dataset("cars196", cars_root), scheme="kfold")
    assert [fold.val for fold in splits.folds] == [_ids(1, 24), _ids(25, 49), _ids(50, 73), _ids(74, 98)]
    assert splits.hash != make_splits(get_dataset("cars196", cars_root)).hash


def test_human_summary(cub_root):
    code, out, _ = run_cli(["datasets", "splits", "cub200", "--data-root", str(cub_root)])
    assert code == 0
    assert "test: 100 classes, ids 101-200" in out
    assert "fold 0: train 75 classes, val 25 classes, val ids 76-100" in out
    assert "fold 2: train 75 classes, val 25 classes, val ids 26-50" in out


def test_hash_changes_with_the_data(tmp_path):
    make_cub(tmp_path, classes=8, per_class=2)
    before = make_splits(get_dataset("cub200", tmp_path))
    assert make_splits(get_dataset("cub200", tmp_path)).hash == before.hash
    labels = tmp_path / "cub200" / "CUB_200_2011" / "image_class_labels.txt"
    lines = labels.read_text().splitlines()
    lines[0] = "1 2"  # relabel one image: same classes, different data
    labels.write_text("\n".join(lines) + "\n")
    after = make_splits(get_dataset("cub200", tmp_path))
    assert after.test == before.test and after.folds == before.folds
    assert after.hash != before.hash
    write_image(tmp_path / "cub200" / "CUB_200_2011" / "images" / "005.Bird_5" / "Bird_5_0.jpg", 0, size=(30, 20))
    assert make_splits(get_dataset("cub200", tmp_path)).hash not in (before.hash, after.hash)
    check_split_hash(before.hash, before.hash)
    with pytest.raises(UserError, match=f"split hash changed: study was created on {before.hash}, data now gives {after.hash}"):
        check_split_hash(before.hash, after.hash)


def test_splits_round_trip_through_json(cub_root):
    splits = make_splits(get_dataset("cub200", cub_root))
    assert type(splits).from_json(splits.to_json()) == splits


def test_too_few_classes_for_four_folds(tmp_path):
    make_cub(tmp_path, classes=6)
    code, out, err = run_cli(["datasets", "splits", "cub200", "--data-root", str(tmp_path)])
    assert code == 2 and out == ""
    assert err.startswith("error: cub200 has 3 train+val classes, too few for 4") and err.count("\n") == 1


def test_unknown_scheme_is_refused(cub_root):
    code, _, err = run_cli(["datasets", "splits", "cub200", "--data-root", str(cub_root), "--scheme", "random"])
    assert code == 2 and "invalid choice" in err and "Traceback" not in err


def test_sop_sized_folds_are_8488_train_2829_val(tmp_path):
    from benchmark.data import ImageDataset

    classes = range(1, 22635)
    paths = [tmp_path / f"{c}.JPG" for c in classes]
    for path in paths:
        path.touch()
    dataset = ImageDataset("sop", tmp_path, paths, list(classes))
    splits = make_splits(dataset)
    assert splits.test == list(range(11318, 22635))
    assert [(len(f.train), len(f.val)) for f in splits.folds] == [(8488, 2829)] * 4
    assert splits.folds[0].val == list(range(8489, 11318))
    assert splits.folds[1].val == list(range(1, 2830))


def test_single_class_validation_folds_are_warned_about(tmp_path, caplog):
    for c in range(14):  # 7 train+val classes over 4 folds: one validation class per fold
        for k in range(2):
            write_image(tmp_path / f"c{c:02d}" / f"{k}.png", k)
    with caplog.at_level("WARNING"):
        splits = make_splits(get_dataset("folder", tmp_path))
    assert all(len(fold.val) == 1 for fold in splits.folds)
    assert any("MAP@R is 1.0 whatever the model" in r.getMessage() for r in caplog.records)
    caplog.clear()
    for c in range(14, 16):
        for k in range(2):
            write_image(tmp_path / f"c{c:02d}" / f"{k}.png", k)
    with caplog.at_level("WARNING"):
        make_splits(get_dataset("folder", tmp_path))  # 8 train+val classes: two per fold, no warning
    assert not caplog.records
