"""The one in-memory description of a dataset that every later stage uses: image paths and original class ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ImageDataset:
    """All images of a dataset, train+val and test together; the splits say which classes go where.

    ``labels`` are the ORIGINAL class ids (1-based for CUB200 and Cars196, SOP's class_id, In-Shop's item number,
    the sorted-folder index for ``folder`` and ``synthetic``). For In-Shop, ``query_mask`` and ``gallery_mask`` are
    boolean arrays over ALL images (``paths[i]`` is a query image iff ``query_mask[i]``; train images are in
    neither); they are None for datasets whose test is query = reference. ``test_classes`` is set where the dataset's own protocol fixes the
    test classes (In-Shop: the query/gallery items); None means MLRC's rule, the second half of the sorted classes.
    """

    name: str
    root: Path
    paths: list[Path]
    labels: np.ndarray
    query_mask: np.ndarray | None = None
    gallery_mask: np.ndarray | None = None
    test_classes: np.ndarray | None = None
    class_ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.class_ids = np.unique(self.labels)

    def __len__(self) -> int:
        return len(self.paths)

    def indices_of(self, class_ids) -> np.ndarray:
        """Indices (in dataset order) of the images whose label is in ``class_ids``."""
        return np.flatnonzero(np.isin(self.labels, np.asarray(list(class_ids), dtype=np.int64)))

    def relative_paths(self) -> list[str]:
        """Paths relative to ``root`` in POSIX form: what identifies an image independently of where data lives."""
        return [path.relative_to(self.root).as_posix() for path in self.paths]
