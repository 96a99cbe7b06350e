"""Dataset registry: name -> how to find, read and download it.

Where pytorch-metric-learning's dataset classes read the official layout they are reused (``CUB``,
``StanfordOnlineProducts``, with ``download=False``: fetching is ours, checksummed and atomic). They do not fit
Cars196 (PML reads a Kaggle re-packaging with ``names.csv``/``anno_*.csv``, not ``cars_annos.mat``) nor In-Shop
(no PML class), so those two parse the official files here.

Each dataset lives in a documented subfolder of the data root (``<root>/cub200/CUB_200_2011/...``); the dataset
folder itself is accepted as the data root too. ``folder`` is the exception: its data root IS the
``<class>/<image>`` tree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from benchmark.config import MLRC_DEFAULT_VALIDATION
from benchmark.data.dataset import ImageDataset
from benchmark.data.synthetic import SyntheticConfig, ensure_synthetic
from benchmark.errors import UserError, did_you_mean

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})


@dataclass(frozen=True)
class Download:
    url: str
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    layout: str  # the expected files, as the error messages and `datasets list` show them
    source: str  # where to get the data, one line
    load: Callable[[Path], ImageDataset]
    download: Download | None = None
    # Recall@K cut-offs reported at test: the literature's 1-8 for small datasets, powers of 10 for SOP-sized ones.
    recall_at: tuple[int, ...] = (1, 2, 4, 8)
    # MLRC published figures for it (benchmark/reference/): the report shows them beside ours.
    mlrc_reference: bool = False
    # MLRC's validation schedule on it, (interval, patience) in epochs (powerful-benchmarker's
    # configs/config_general/with_<dataset>.yaml); the pretrained presets follow it.
    mlrc_validation: tuple[int, int] = MLRC_DEFAULT_VALIDATION
    # For a generated dataset: writes <data_root>/<name> from a SyntheticConfig (unless already there), before load.
    generate: Callable[[Path, SyntheticConfig], Path] | None = None


def _locate(spec_name: str, data_root: Path, candidates: list[Path], markers: list[str]) -> Path:
    """The first candidate folder that holds every marker file; else a one-line error naming the layout."""
    for folder in candidates:
        if all((folder / marker).is_file() for marker in markers):
            return folder
    raise _not_found(spec_name, data_root)


def _not_found(spec_name: str, data_root: Path) -> UserError:
    spec = DATASETS[spec_name]
    how = f"run `benchmark datasets download {spec_name}` (source: {spec.source})" if spec.download else spec.source
    return UserError(f"{spec_name} not found in {data_root}: expected {data_root / spec_name}/{spec.layout}; {how}")


def _check_exists(name: str, root: Path, paths: list[Path], listing: str) -> None:
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise UserError(
            f"{name} under {root} is incomplete: {len(missing)} of {len(paths)} images listed in {listing} are "
            f"missing, e.g. {missing[0]}"
        )


def _load_cub(data_root: Path) -> ImageDataset:
    candidates = [data_root / "cub200" / "CUB_200_2011", data_root / "CUB_200_2011"]
    if data_root.name == "CUB_200_2011":
        candidates.append(data_root)
    root = _locate("cub200", data_root, candidates, ["images.txt", "image_class_labels.txt"])
    try:
        from pytorch_metric_learning.datasets import CUB  # imports torch: only when the dataset is read

        pml = CUB(str(root.parent), split="train+test", download=False)
        listed = sum(1 for line in (root / "images.txt").read_text().splitlines() if line.strip())
    except (OSError, ValueError) as error:
        raise UserError(f"cub200: cannot read {root}/images.txt and image_class_labels.txt: {error}") from None
    if len(pml.paths) != listed:
        raise UserError(
            f"cub200: {root}/images.txt and image_class_labels.txt disagree "
            f"({listed} images listed, {len(pml.paths)} with a matching image id on the same line)"
        )
    paths = [Path(p) for p in pml.paths]
    _check_exists("cub200", root, paths, "images.txt")
    return ImageDataset("cub200", root, paths, np.array(pml.labels))


def _load_cars(data_root: Path) -> ImageDataset:
    import scipy.io  # only Cars196 needs it; kept out of every command's start-up

    root = _locate("cars196", data_root, [data_root / "cars196", data_root], ["cars_annos.mat"])
    try:
        annotations = scipy.io.loadmat(root / "cars_annos.mat", squeeze_me=True)["annotations"]
        relative = [str(p) for p in np.atleast_1d(annotations["relative_im_path"])]
        labels = np.atleast_1d(annotations["class"]).astype(np.int64)
    except (OSError, ValueError, KeyError, TypeError, scipy.io.matlab.MatReadError) as error:
        raise UserError(
            f"cars196: {root}/cars_annos.mat is not the official annotation file "
            f"(a struct array 'annotations' with fields relative_im_path and class): {error}"
        ) from None
    paths = [root / p for p in relative]
    _check_exists("cars196", root, paths, "cars_annos.mat")
    return ImageDataset("cars196", root, paths, labels)


def _load_sop(data_root: Path) -> ImageDataset:
    candidates = [data_root / "sop" / "Stanford_Online_Products", data_root / "Stanford_Online_Products"]
    if data_root.name == "Stanford_Online_Products":
        candidates.append(data_root)
    root = _locate("sop", data_root, candidates, ["Ebay_train.txt", "Ebay_test.txt"])
    try:
        from pytorch_metric_learning.datasets import StanfordOnlineProducts  # imports torch: only when read

        pml = StanfordOnlineProducts(str(root.parent), split="train+test", download=False)
    except (OSError, ValueError, IndexError) as error:
        raise UserError(f"sop: cannot read {root}/Ebay_train.txt and Ebay_test.txt: {error}") from None
    paths = [Path(p) for p in pml.paths]
    _check_exists("sop", root, paths, "Ebay_train.txt/Ebay_test.txt")
    return ImageDataset("sop", root, paths, np.array(pml.labels))


def _load_inshop(data_root: Path) -> ImageDataset:
    candidates = [data_root / "inshop", data_root]
    for folder in candidates:
        for listing in (folder / "list_eval_partition.txt", folder / "Eval" / "list_eval_partition.txt"):
            if listing.is_file():
                return _read_inshop(folder, listing)
    raise _not_found("inshop", data_root)


def _read_inshop(root: Path, listing: Path) -> ImageDataset:
    # Line 1: the image count; line 2: the header "image_name item_id evaluation_status".
    rows = [line.split() for line in listing.read_text().splitlines()[2:] if line.strip()]
    try:
        names = [row[0] for row in rows]
        labels = np.array([int(row[1].removeprefix("id_")) for row in rows], dtype=np.int64)
        roles = np.array([row[2] for row in rows])
    except (IndexError, ValueError) as error:
        raise UserError(f"inshop: {listing} has a line that is not 'image_name id_NNNNNNNN status': {error}") from None
    if not rows or not set(roles) <= {"train", "query", "gallery"}:
        raise UserError(f"inshop: {listing} must list images with status train, query or gallery")
    # The official archive unpacks to Img/img/...; list_eval_partition.txt names img/...
    base = root / "Img" if (root / "Img" / names[0]).is_file() else root
    paths = [base / name for name in names]
    _check_exists("inshop", root, paths, listing.name)
    train_items = set(labels[roles == "train"].tolist())
    overlap = train_items & set(labels[roles != "train"].tolist())
    if overlap:
        raise UserError(f"inshop: {len(overlap)} items are both train and query/gallery in {listing}, e.g. id {min(overlap)}")
    return ImageDataset("inshop", root, paths, labels, query_mask=roles == "query", gallery_mask=roles == "gallery",
                        test_classes=np.unique(labels[roles != "train"]))


def scan_folder(name: str, root: Path) -> ImageDataset:
    """A ``root/<class>/<image>`` tree; class id = index of the class folder among the sorted ones with images."""
    if not root.is_dir():
        raise UserError(f"{name}: {root} is not a folder; expected {root}/<class>/<image>")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    real_root = root.resolve()
    for folder in class_dirs:
        # A class folder linked to the dataset itself (zz -> ., or -> another class) would hold images of other
        # classes again, under a new label; a link to a folder elsewhere is fine.
        real = folder.resolve()
        if folder.is_symlink() and (real_root.is_relative_to(real) or real.is_relative_to(real_root)):
            raise UserError(f"{name}: class folder {folder} links to {real}, inside the dataset itself; expected "
                            "each class's images in a folder of their own (remove the link)")
    paths: list[Path] = []
    labels: list[int] = []
    for folder in class_dirs:
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if images:
            class_id = len({*labels})
            paths += images
            labels += [class_id] * len(images)
    if len(set(labels)) < 2:
        raise UserError(f"{name}: {root} holds images in {len(set(labels))} class folder(s); expected "
                        f"{root}/<class>/<image> with at least 2 classes")
    return ImageDataset(name, root, paths, np.array(labels))


def _load_folder(data_root: Path) -> ImageDataset:
    return scan_folder("folder", data_root)


def _load_synthetic(data_root: Path) -> ImageDataset:
    return scan_folder("synthetic", data_root / "synthetic")


_SPECS = [
    DatasetSpec(
        name="cub200",
        description="CUB-200-2011 birds: 11,788 images, 200 classes (1-100 train+val, 101-200 test)",
        layout="CUB_200_2011/{images.txt,image_class_labels.txt,images/<class>/<image>.jpg}",
        source="https://www.vision.caltech.edu/datasets/cub_200_2011/",
        load=_load_cub,
        mlrc_reference=True,
        download=Download(
            url="https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
            md5="97eceeb196236b17998738112f37df78",
        ),
    ),
    DatasetSpec(
        name="cars196",
        description="Stanford Cars: 16,185 images, 196 classes (1-98 train+val, 99-196 test)",
        layout="{cars_annos.mat,car_ims/<image>.jpg}",
        source="no public direct download since the Stanford site went offline: get car_ims.tgz and "
               "cars_annos.mat from a mirror of ai.stanford.edu/~jkrause/cars/car_dataset.html",
        load=_load_cars,
        mlrc_reference=True,
        mlrc_validation=(5, 14),
    ),
    DatasetSpec(
        name="sop",
        description="Stanford Online Products: 120,053 images, 22,634 classes (MLRC: halves of the sorted "
                    "classes, 11,317/11,317, not the official split)",
        layout="Stanford_Online_Products/{Ebay_info.txt,Ebay_train.txt,Ebay_test.txt,<category>_final/<image>.JPG}",
        source="https://cvgl.stanford.edu/projects/lifted_struct/",
        load=_load_sop,
        recall_at=(1, 10, 100, 1000),
        mlrc_reference=True,
        mlrc_validation=(20, 39),
        # The Google Drive file that pytorch-metric-learning downloads. No official checksum is published:
        # the download is reported with its sha256 and accepted unverified unless --md5/--sha256 is given.
        download=Download(
            url="https://drive.usercontent.google.com/download?id=1TclrpQOF_ullUP99wk_gjGN8pKvtErG8"
                "&export=download&authuser=0&confirm=t",
        ),
    ),
    DatasetSpec(
        name="inshop",
        description="DeepFashion In-Shop Clothes Retrieval: 52,712 images, 7,982 items; test is query -> gallery",
        layout="{Eval/list_eval_partition.txt,Img/img/<...>.jpg} (or both at the top level)",
        source="no direct download (a Google Drive folder with a password-protected img.zip): see "
               "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html",
        load=_load_inshop,
        recall_at=(1, 10, 20, 30, 40, 50),
    ),
    DatasetSpec(
        name="folder",
        description="your own images: class id = index of the sorted class folder; --data-root is the tree itself",
        layout="<class>/<image>.{jpg,png,...} directly under --data-root",
        source="your own images (nothing to download)",
        load=_load_folder,
    ),
    DatasetSpec(
        name="synthetic",
        description="embedded fine-grained default, generated offline on first use (200 classes x 30, 48 px; "
                    "$BENCHMARK_SYNTHETIC_SIZE=CLASSESxPER_CLASS shrinks it)",
        layout="synthetic/<class>/<n>.png and synthetic/manifest.json (generated)",
        source="generated locally on first use (nothing to download)",
        load=_load_synthetic,
        generate=ensure_synthetic,
    ),
]

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; expected one of: {', '.join(DATASETS)}") from None


def mlrc_validation(name: str) -> tuple[int, int]:
    """Dataset ``name``'s MLRC validation schedule; MLRC's default for a name not registered here."""
    spec = DATASETS.get(name)
    return spec.mlrc_validation if spec is not None else MLRC_DEFAULT_VALIDATION


def get_dataset(name: str, data_root: Path, synthetic: SyntheticConfig = SyntheticConfig()) -> ImageDataset:
    """Read dataset ``name`` from ``data_root``; ``synthetic`` is generated there on first use, at that size."""
    spec = get_spec(name)
    data_root = Path(data_root).expanduser()
    if spec.generate is not None:
        spec.generate(data_root / name, synthetic)
    dataset = spec.load(data_root)
    logger.debug("%s: %d images, %d classes under %s", name, len(dataset), len(dataset.class_ids), dataset.root)
    return dataset
