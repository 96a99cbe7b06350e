"""An experiment: one loss on one dataset under one protocol, with everything resolved and validated once.

``run``, ``tune`` and ``test`` all start from here, so they load data, splits and search spaces the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from benchmark.config import Protocol, identity_label, weights_identity
from benchmark.data import ImageDataset, get_dataset
from benchmark.data.registry import get_spec
from benchmark.data.cache import DecodedImageCache
from benchmark.data.samplers import batch_sampler_space
from benchmark.data.splits import Splits, make_splits
from benchmark.data.synthetic import SyntheticConfig
from benchmark.errors import UserError
from benchmark.search_space import SearchSpace
from benchmark.training.fold import FoldTrainer
from benchmark.training.run import FoldRun
from benchmark.training.scale_schedules import adacos_record

@dataclass
class Experiment:
    dataset_name: str
    loss_name: str
    protocol: Protocol
    search_space: SearchSpace
    data_root: Path
    dataset: ImageDataset
    splits: Splits
    device: torch.device
    weights: str
    num_workers: int | None = None
    study_prefix: str = ""  # the study namespace (--study-prefix); "" for none
    compile: bool = False  # torch.compile the model's forward (FoldTrainer)
    # One decoded-image cache for every trial and fold of the experiment: a new one per trial would start with an
    # empty memo and re-read every image from disk.
    _cache: DecodedImageCache | None = field(default=None, repr=False, compare=False)
    weights_id: str = ""  # imagenet | none | sha256:<hex> of the weights file (config.weights_identity)
    weights_dir: Path | None = None  # searched for ImageNet weight files before the torch hub folder

    def __post_init__(self):
        if not self.weights_id:
            self.weights_id = weights_identity(self.weights)

    @property
    def label(self) -> str:
        """The protocol part of the study name: preset, identity settings that differ from it, trunk weights."""
        return identity_label(self.protocol, self.weights_id)

    def identity(self) -> dict:
        """Everything besides the protocol settings that changes a study's numbers; checked when a study resumes."""
        return {"trunk": self.protocol.trunk, "weights": self.weights_id, "precision": self.protocol.precision,
                "batchnorm": self.protocol.batchnorm, "batch_sampler": self.protocol.batch_sampler,
                "search_space": self.search_space.fingerprint()}

    @classmethod
    def create(cls, *, dataset_name, loss_name, protocol, search_space, data_root, device, weights,
               split_scheme="mlrc", num_workers=None, compile=False, study_prefix="", weights_dir=None,
               synthetic=SyntheticConfig()) -> "Experiment":
        """``synthetic``: the size of the generated ``synthetic`` dataset (ignored by the others)."""
        # The batch sampler's own hyperparameters (e.g. the representatives' period) are searched with the loss's.
        extra = batch_sampler_space(protocol.batch_sampler)
        clash = sorted(set(extra) & set(search_space.params))
        if clash:
            raise UserError(f"batch sampler {protocol.batch_sampler} and loss {loss_name} both define {clash}")
        search_space = replace(search_space, params={**search_space.params, **extra})
        dataset = get_dataset(dataset_name, data_root, synthetic)
        splits = make_splits(dataset, split_scheme)
        return cls(
            dataset_name=dataset_name,
            loss_name=loss_name,
            protocol=protocol,
            search_space=search_space,
            data_root=data_root,
            dataset=dataset,
            splits=splits,
            device=device,
            weights=weights,
            num_workers=num_workers,
            study_prefix=study_prefix,
            compile=compile,
            weights_dir=weights_dir,
        )

    @property
    def fold_classes(self) -> list[int]:
        """The number of training classes of each fold (the C of AdaCos)."""
        return [len(fold.train) for fold in self.splits.folds]

    def scale_record(self, params: dict) -> dict:
        """What a result of ``params`` stores about the scale beyond its parameters: AdaCos' C and s per fold."""
        adacos = adacos_record(params, self.fold_classes)
        return {} if adacos is None else {"adacos": adacos}

    @property
    def fold_run(self) -> FoldRun:
        return FoldRun(paths=self.dataset.paths, labels=self.dataset.labels, splits=self.splits)

    @property
    def recall_at(self) -> tuple[int, ...]:
        return get_spec(self.dataset_name).recall_at

    def cache(self) -> DecodedImageCache:
        if self._cache is None or self._cache.resize != self.protocol.resize:
            self._cache = DecodedImageCache(self.data_root, self.protocol.resize)
        return self._cache

    def trainer(self, params: dict, on_epoch: Callable[[int, dict], None] | None = None) -> FoldTrainer:
        return FoldTrainer(
            self.protocol,
            self.loss_name,
            params,
            self.device,
            self.cache(),
            weights=self.weights,
            weights_dir=self.weights_dir,
            num_workers=self.num_workers,
            on_epoch=on_epoch,
            compile=self.compile,
        )
