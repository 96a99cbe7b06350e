"""The torch Dataset over a list of images: cached decode, then the protocol's transform."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from benchmark.data.cache import DecodedImageCache


class ImageSet(Dataset):
    """``(transform(image), label)`` pairs; labels are given by the caller (the trainer remaps them to 0..C-1)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int] | np.ndarray,
                 transform: Callable[[torch.Tensor], torch.Tensor], cache: DecodedImageCache):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.cache = cache

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        array = self.cache.get(self.paths[index])
        # A copy: the cache's arrays are shared (and read-only) across samples and epochs.
        image = tv_tensors.Image(torch.tensor(array).permute(2, 0, 1))
        return self.transform(image).as_subclass(torch.Tensor), int(self.labels[index])
