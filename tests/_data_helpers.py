"""Tiny dataset trees in the exact official formats, for the data-layer tests."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from benchmark.cli import main

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / ".venv" / "bin" / "benchmark"
SMALL_SYNTHETIC = "16x4"


def write_image(path: Path, seed: int, size: tuple[int, int] = (10, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_cub(data_root: Path, classes: int = 200, per_class: int = 1) -> Path:
    root = data_root / "cub200" / "CUB_200_2011"
    images, labels = [], []
    for c in range(1, classes + 1):
        for k in range(per_class):
            image_id = len(images) + 1
            relative = f"{c:03d}.Bird_{c}/Bird_{c}_{k}.jpg"
            write_image(root / "images" / relative, image_id)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {c}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    return root


def make_cars(data_root: Path, classes: int = 196) -> Path:
    """cars_annos.mat as Stanford ships it: a 1xN struct array ``annotations`` and 1xC ``class_names``."""
    root = data_root / "cars196"
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    annotations = np.zeros((1, classes), dtype=[(f, "O") for f in fields])
    for i in range(classes):
        relative = f"car_ims/{i + 1:06d}.jpg"
        write_image(root / relative, i)
        annotations[0, i] = (relative, np.uint8(1), np.uint8(1), np.uint16(9), np.uint16(7), np.uint8(i + 1), np.uint8(i % 2))
    names = np.empty((1, classes), dtype=object)
    names[0, :] = [f"Make Model {c}" for c in range(1, classes + 1)]
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": annotations, "class_names": names})
    return root


def make_sop(data_root: Path, train_classes: int = 9, test_classes: int = 7, per_class: int = 2) -> Path:
    """Ebay_*.txt with the official header; the official split is uneven (like 11318/11316)."""
    root = data_root / "sop" / "Stanford_Online_Products"
    header = "image_id class_id super_class_id path"
    rows = {"train": [], "test": []}
    image_id = 0
    for c in range(1, train_classes + test_classes + 1):
        for k in range(per_class):
            image_id += 1
            relative = f"bicycle_final/{c}_{k}.JPG"
            write_image(root / relative, image_id)
            rows["train" if c <= train_classes else "test"].append(f"{image_id} {c} 1 {relative}")
    for split, lines in rows.items():
        (root / f"Ebay_{split}.txt").write_text("\n".join([header, *lines]) + "\n")
    (root / "Ebay_info.txt").write_text("\n".join([header, *rows["train"], *rows["test"]]) + "\n")
    return root


def make_inshop(data_root: Path, train_items: int = 8, test_items: int = 4) -> Path:
    """Eval/list_eval_partition.txt (count line, header line, rows) and Img/img/...; items are 'id_NNNNNNNN'."""
    root = data_root / "inshop"
    rows = []
    for item in range(1, train_items + test_items + 1):
        roles = ["train", "train"] if item <= train_items else ["query", "gallery", "gallery"]
        for k, role in enumerate(roles):
            name = f"img/WOMEN/Dresses/id_{item:08d}/{k + 1:02d}_{k + 1}_front.jpg"
            write_image(root / "Img" / name, item * 10 + k)
            rows.append(f"{name}   id_{item:08d}   {role}")
    listing = root / "Eval" / "list_eval_partition.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("\n".join([str(len(rows)), "image_name item_id evaluation_status", *rows]) + "\n")
    return root


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``benchmark.cli.main(argv)`` in process, returning (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def small_synthetic_env() -> dict:
    return {**os.environ, "BENCHMARK_SYNTHETIC_SIZE": SMALL_SYNTHETIC}
