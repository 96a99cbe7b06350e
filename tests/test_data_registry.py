"""Dataset loaders on the official layouts, the folder layout, and the one-line errors for bad data."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data import DATASETS, get_dataset, make_splits
from benchmark.errors import UserError
from _data_helpers import make_cub, make_inshop, make_sop, run_cli, write_image


def _assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_list_shows_six_datasets_with_layouts():
    code, out, _ = run_cli(["datasets", "list"])
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert names == ["cub200", "cars196", "sop", "inshop", "folder", "synthetic"] == list(DATASETS)
    assert out.count("layout: ") == 6
    assert "CUB_200_2011/{images.txt,image_class_labels.txt" in out


def test_cub_labels_are_the_original_1_based_ids(tmp_path):
    make_cub(tmp_path, classes=10, per_class=2)
    dataset = get_dataset("cub200", tmp_path)
    assert dataset.labels.dtype == np.int64
    assert dataset.class_ids.tolist() == list(range(1, 11))
    assert dataset.root == tmp_path / "cub200" / "CUB_200_2011"
    assert all(p.is_absolute() and p.is_file() for p in dataset.paths)
    assert dataset.query_mask is None and dataset.gallery_mask is None
    # The dataset folder itself is accepted as the data root.
    assert get_dataset("cub200", dataset.root).paths == dataset.paths


def test_sop_uses_halves_of_the_sorted_classes_not_the_official_split(tmp_path):
    make_sop(tmp_path, train_classes=9, test_classes=7)
    dataset = get_dataset("sop", tmp_path)
    assert len(dataset) == 32 and dataset.class_ids.tolist() == list(range(1, 17))
    splits = make_splits(dataset)
    assert splits.test == list(range(9, 17))
    assert [fold.val for fold in splits.folds] == [[7, 8], [1, 2], [3, 4], [5, 6]]


def test_inshop_test_is_query_gallery_and_folds_come_from_train_items(tmp_path):
    make_inshop(tmp_path, train_items=8, test_items=4)
    dataset = get_dataset("inshop", tmp_path)
    assert dataset.class_ids.tolist() == list(range(1, 13))
    splits = make_splits(dataset)
    assert splits.test == [9, 10, 11, 12]
    assert all(set(fold.train + fold.val) == set(range(1, 9)) for fold in splits.folds)
    # The masks run over all images; the test images are exactly the query and gallery ones.
    assert len(dataset.query_mask) == len(dataset.gallery_mask) == len(dataset) == 28
    assert dataset.query_mask.sum() == 4 and dataset.gallery_mask.sum() == 8
    assert not (dataset.query_mask & dataset.gallery_mask).any()
    assert np.array_equal(np.flatnonzero(dataset.query_mask | dataset.gallery_mask), dataset.indices_of(splits.test))
    assert all("01_1_front" in str(dataset.paths[i]) for i in np.flatnonzero(dataset.query_mask))


def test_folder_class_ids_are_sorted_folder_indices(tmp_path):
    for name, count in [("zebra", 2), ("ant", 3), ("moth", 1)]:
        for k in range(count):
            write_image(tmp_path / name / f"{k}.png", k)
    (tmp_path / "notes.txt").write_text("not a class")
    (tmp_path / ".cache").mkdir()
    dataset = get_dataset("folder", tmp_path)
    assert dataset.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert [p.parent.name for p in dataset.paths] == ["ant"] * 3 + ["moth"] + ["zebra"] * 2


@pytest.mark.parametrize("name", ["cub200", "cars196", "sop", "inshop"])
def test_missing_dataset_is_one_line_naming_the_layout(tmp_path, name):
    code, out, err = run_cli(["datasets", "verify", name, "--data-root", str(tmp_path)])
    _assert_one_line_error(code, err, f"{name} not found in {tmp_path}", str(tmp_path / name))
    assert out == ""


def test_incomplete_dataset_names_a_missing_image(tmp_path):
    root = make_cub(tmp_path, classes=4)
    missing = root / "images" / "003.Bird_3" / "Bird_3_0.jpg"
    missing.unlink()
    code, _, err = run_cli(["datasets", "splits", "cub200", "--data-root", str(tmp_path)])
    _assert_one_line_error(code, err, "incomplete", "1 of 4 images", str(missing))


def test_wrong_layout_is_one_line(tmp_path):
    root = make_cub(tmp_path, classes=4)
    (root / "image_class_labels.txt").write_text("1 one\n")
    code, _, err = run_cli(["datasets", "verify", "cub200", "--data-root", str(tmp_path)])
    _assert_one_line_error(code, err, "cub200: cannot read", "image_class_labels.txt")
    (tmp_path / "cars196").mkdir()
    (tmp_path / "cars196" / "cars_annos.mat").write_bytes(b"not a mat file")
    code, _, err = run_cli(["datasets", "verify", "cars196", "--data-root", str(tmp_path)])
    _assert_one_line_error(code, err, "cars_annos.mat is not the official annotation file")


def test_unknown_dataset_is_one_line(tmp_path):
    code, _, err = run_cli(["datasets", "verify", "imagenet", "--data-root", str(tmp_path)])
    _assert_one_line_error(code, err, "unknown dataset 'imagenet'", "cub200, cars196, sop, inshop, folder, synthetic")
    with pytest.raises(UserError):
        get_dataset("imagenet", tmp_path)


def test_verify_reports_a_corrupt_image_by_path(tmp_path):
    root = make_cub(tmp_path, classes=4, per_class=2)
    code, out, _ = run_cli(["datasets", "verify", "cub200", "--data-root", str(tmp_path)])
    assert code == 0 and out.startswith("cub200: 8 images, 4 classes, all decode")
    corrupt = root / "images" / "002.Bird_2" / "Bird_2_1.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:40])
    code, out, err = run_cli(["datasets", "verify", "cub200", "--data-root", str(tmp_path)])
    _assert_one_line_error(code, err, f"cannot decode image {corrupt}")


def test_download_without_a_public_url_says_where_to_get_it(tmp_path):
    for name, hint in [("cars196", "no public direct download"), ("inshop", "Google Drive")]:
        code, out, err = run_cli(["datasets", "download", name, "--data-root", str(tmp_path)])
        _assert_one_line_error(code, err, hint)
        assert out == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", [".", "ant", ".."])
def test_class_folder_linked_into_the_dataset_is_refused(tmp_path, target):
    root = tmp_path / "folder"
    for name in ("ant", "moth"):
        for k in range(2):
            write_image(root / name / f"{k}.png", k)
    (root / "zz").symlink_to(target)
    code, _, err = run_cli(["datasets", "verify", "folder", "--data-root", str(root)])
    _assert_one_line_error(code, err, "class folder", "zz", "inside the dataset itself")


def test_class_folder_linked_from_elsewhere_is_a_class(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "bee"
    for k in range(2):
        write_image(elsewhere / f"{k}.png", k)
        write_image(tmp_path / "root" / "ant" / f"{k}.png", k)
    (tmp_path / "root" / "bee").symlink_to(elsewhere)
    dataset = get_dataset("folder", tmp_path / "root")
    assert dataset.labels.tolist() == [0, 0, 1, 1]
