"""Class splits as data: explicit lists of original class ids, identified by a hash of the lists and the images
(relative path, label and file size of each).

``mlrc`` reproduces powerful-benchmarker's MLRCSplitManager (PROTOCOL.md §1): the sorted classes are halved
(train+val, test); with n_trainval train+val classes, each of the 4 folds trains on n_trainval - n_trainval//4
consecutive classes starting at p * n_trainval // 4 (wrapping) and validates on the n_trainval//4 right after them.
(n_trainval//4 == floor(n * 0.125) for n classes, as floor division nests.) ``kfold`` is a plain rotation, fold k
validating on the k-th quarter; its folds differ from MLRC's (e.g. Cars196), so its results are NOT comparable with
the paper.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass

import numpy as np

from benchmark.data.dataset import ImageDataset
from benchmark.errors import UserError

logger = logging.getLogger(__name__)

SCHEMES = ("mlrc", "kfold")


@dataclass(frozen=True)
class Fold:
    train: list[int]
    val: list[int]


@dataclass(frozen=True)
class Splits:
    dataset: str
    scheme: str
    test: list[int]
    folds: list[Fold]
    hash: str

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "scheme": self.scheme,
            "hash": self.hash,
            "test": list(self.test),
            "folds": [asdict(fold) for fold in self.folds],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Splits:
        data = json.loads(text)
        folds = [Fold(train=list(f["train"]), val=list(f["val"])) for f in data["folds"]]
        return cls(data["dataset"], data["scheme"], list(data["test"]), folds, data["hash"])


def make_splits(dataset: ImageDataset, scheme: str = "mlrc", num_folds: int = 4) -> Splits:
    if scheme not in SCHEMES:
        raise UserError(f"unknown split scheme {scheme!r}; expected one of: {', '.join(SCHEMES)}")
    classes = [int(c) for c in dataset.class_ids]
    if dataset.test_classes is not None:
        test = [int(c) for c in dataset.test_classes]
        trainval = sorted(set(classes) - set(test))
    else:
        half = len(classes) // 2
        trainval, test = classes[:half], classes[half:]
    n = len(trainval)
    val_len = n // num_folds
    if val_len < 1 or num_folds < 2:
        raise UserError(
            f"{dataset.name} has {n} train+val classes, too few for {num_folds} class-disjoint folds "
            f"(need at least {max(num_folds, 2)})"
        )
    folds = []
    for p in range(num_folds):
        if scheme == "mlrc":
            start = p * n // num_folds
            order = [trainval[(start + i) % n] for i in range(n)]
            train, val = order[: n - val_len], order[n - val_len : n]
        else:
            lo, hi = p * n // num_folds, (p + 1) * n // num_folds
            val = trainval[lo:hi]
            train = trainval[:lo] + trainval[hi:]
        folds.append(Fold(train=sorted(train), val=sorted(val)))
    if val_len < 2:
        # MAP@R, R-Precision and P@1 among images of one class are 1.0 whatever the model: no signal at all.
        logger.warning("%s: each validation fold holds %d class (%d train+val classes over %d folds): its MAP@R is "
                       "1.0 whatever the model; use a dataset with at least %d train+val classes", dataset.name,
                       val_len, n, num_folds, 2 * num_folds)
    return Splits(dataset.name, scheme, test, folds, _hash(dataset, scheme, test, folds))


def _hash(dataset: ImageDataset, scheme: str, test: list[int], folds: list[Fold]) -> str:
    # The images are part of the hash: a study must not silently continue on changed data. The file size stands
    # in for the content (reading every file would cost as much as decoding it); mtimes would not survive a copy.
    try:
        sizes = [path.stat().st_size for path in dataset.paths]
    except OSError as error:
        raise UserError(f"{dataset.name}: cannot read image {error.filename}: {error.strerror}") from None
    images = sorted(zip(dataset.relative_paths(), dataset.labels.tolist(), sizes))
    payload = {
        "dataset": dataset.name,
        "scheme": scheme,
        "test": test,
        "folds": [asdict(fold) for fold in folds],
        "images": images,
    }
    if dataset.query_mask is not None:
        payload["query"] = sorted(np.array(dataset.relative_paths(), dtype=object)[dataset.query_mask].tolist())
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_split_hash(expected: str, actual: str) -> None:
    """Raise unless the splits a study was created on are the ones the data gives now."""
    if expected != actual:
        raise UserError(
            f"split hash changed: study was created on {expected}, data now gives {actual} "
            "(the images, labels or split scheme differ)"
        )
