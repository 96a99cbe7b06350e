"""Batches around fixed class representatives, with hard-class mining (PROTOCOL.md §4; seed paper "Deep Metric
Learning with Alternating Projections onto Feasible Sets").

Every batch holds ``P = batch_size // m_per_class`` classes with ``m_per_class`` images each. The first image of
each class group is the class's current representative, so ``batch[::m_per_class]`` are the anchors; a class keeps
its representative for ``period`` iterations (counted across epochs), then a new one is drawn.

Classes per batch: the first at random; then ``ceil(hard_class_share * (P - 1))`` hard classes, the ones whose
representatives are nearest (cosine) to the FIRST class's representative; the rest at random. Nearest to the first
class rather than greedily to any chosen class, so the hard classes all crowd one anchor: a greedy chain would
drift away from it, one neighbour at a time. Classes whose representative has no embedding yet cannot be ranked
and are only drawn at random, so the first batches are random.

The trainer feeds embeddings back through ``observe`` once per consumed batch. PyTorch iterates a batch sampler in
the main process and delivers batches in the order it drew them, even with workers prefetching, so a FIFO of the
drawn batches tells which classes each ``observe`` call belongs to. Prefetching means the ranking lags the model
by a few batches, which the mining tolerates. On a GPU the anchors' embeddings are copied to the host without
waiting (pinned memory, a CUDA event), and the ranking uses a copy only once :data:`GPU_LAG` later batches have
been observed: by then the copy has finished, so reading it never stalls the step in flight (a host sync at every
step otherwise), and which embeddings a ranking sees does not depend on timing.

PML's ``MPerClassSampler`` has no representatives and no feedback, hence this sampler.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import UserError


GPU_LAG = 2


class RepresentativeBatchSampler:
    """A batch sampler for ``DataLoader(batch_sampler=...)``: ``iterations`` batches of dataset indices per epoch."""

    def __init__(self, labels: np.ndarray, batch_size: int, m_per_class: int, iterations: int, period: int,
                 hard_class_share: float, seed: int):
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise UserError(f"batch sampler: expected a non-empty 1-D array of labels, got shape {labels.shape}")
        classes, class_of_sample = np.unique(labels, return_inverse=True)
        if m_per_class < 1 or batch_size % m_per_class:
            raise UserError(f"batch size {batch_size} is not a multiple of m_per_class {m_per_class}; "
                            f"expected m_per_class >= 1 dividing the batch size")
        per_batch = batch_size // m_per_class
        if per_batch < 2:
            raise UserError(f"batch size {batch_size} // m_per_class {m_per_class} = {per_batch} classes per batch; "
                            f"the representative sampler needs at least 2")
        if per_batch > len(classes):
            raise UserError(f"batch size {batch_size} // m_per_class {m_per_class} = {per_batch} classes per batch, "
                            f"but the training set has only {len(classes)} classes")
        if iterations < 1:
            raise UserError(f"iterations per epoch {iterations}: expected at least 1")
        if period < 1:
            raise UserError(f"period {period}: expected at least 1 iteration")
        if not 0.0 <= hard_class_share <= 1.0:
            raise UserError(f"hard_class_share {hard_class_share}: expected a value in [0, 1]")
        self.m = m_per_class
        self.per_batch = per_batch
        self.iterations = iterations
        self.period = period
        self.hard_classes = math.ceil(hard_class_share * (per_batch - 1))
        self.classes = classes
        order = np.argsort(class_of_sample, kind="stable")
        self._members = np.split(order, np.cumsum(np.bincount(class_of_sample))[:-1])  # dataset indices per class
        self._sizes = np.array([len(members) for members in self._members])
        self._rng = np.random.default_rng(seed)
        self._step = 0  # batches drawn so far, across epochs: the representative period runs over epoch ends
        self._representative = np.zeros(len(classes), dtype=np.int64)  # position in _members, per class
        self._pending: deque[np.ndarray] = deque()  # the class ids of each drawn, not yet observed batch
        self._table: torch.Tensor | None = None  # classes x D, unit-length representative embeddings
        self._seen = torch.zeros(len(classes), dtype=torch.bool)
        self._copies: deque[tuple[np.ndarray, torch.Tensor, object]] = deque()  # (classes, host tensor, CUDA event)

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[list[int]]:
        # An epoch left unfinished leaves batches that will never be observed; the next epoch starts clean.
        self._pending.clear()
        for _ in range(self.iterations):
            if self._step % self.period == 0:
                self._representative = self._rng.integers(0, self._sizes)
            self._step += 1
            chosen = self._choose_classes()
            self._pending.append(chosen)
            yield [int(i) for c in chosen for i in self._group(c)]

    def representatives(self) -> dict:
        """The current representative (a dataset index) of each class label."""
        return {label: int(self._members[c][self._representative[c]]) for c, label in enumerate(self.classes.tolist())}

    def observe(self, embeddings: torch.Tensor) -> None:
        """Record the representatives' embeddings of the oldest drawn batch not yet observed (rows ``::m``)."""
        if not self._pending:
            raise RuntimeError("observe() called more often than batches were drawn")
        chosen = self._pending.popleft()
        if embeddings.shape[0] != len(chosen) * self.m:
            raise RuntimeError(f"observe() got {embeddings.shape[0]} embeddings for a batch of {len(chosen) * self.m}")
        anchors = F.normalize(embeddings[:: self.m].detach().float(), dim=1)
        if anchors.device.type == "cuda":
            host = torch.empty(anchors.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(anchors, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            self._copies.append((chosen, host, done))
        else:
            self._record(chosen, anchors.cpu())

    def _record(self, chosen: np.ndarray, anchors: torch.Tensor) -> None:
        if self._table is None:
            self._table = torch.zeros(len(self.classes), anchors.shape[1])
        # After a re-draw a class keeps its old representative's embedding until the new one is seen: both are
        # images of the class, so the old one still points roughly where the class lies, and the ranking keeps
        # every class it has ever seen instead of going random again each period.
        index = torch.from_numpy(chosen)
        self._table[index] = anchors
        self._seen[index] = True

    def _collect_copies(self) -> None:
        """Apply the GPU copies older than the last :data:`GPU_LAG`, in order."""
        while len(self._copies) > GPU_LAG:
            chosen, host, done = self._copies.popleft()
            done.synchronize()
            self._record(chosen, host)

    def _choose_classes(self) -> np.ndarray:
        self._collect_copies()
        first = int(self._rng.integers(len(self.classes)))
        chosen = [first]
        if self.hard_classes and self._seen[first]:
            similarity = self._table @ self._table[first]
            similarity[~self._seen] = -math.inf
            similarity[first] = -math.inf
            count = min(self.hard_classes, int(self._seen.sum()) - 1)
            chosen += torch.topk(similarity, count).indices.tolist()
        rest = np.setdiff1d(np.arange(len(self.classes)), chosen, assume_unique=True)
        chosen += self._rng.choice(rest, self.per_batch - len(chosen), replace=False).tolist()
        return np.array(chosen, dtype=np.int64)

    def _group(self, c: int) -> np.ndarray:
        """The representative of class ``c``, then ``m - 1`` other images of it."""
        members, size, own = self._members[c], self._sizes[c], self._representative[c]
        others = self.m - 1
        if size == 1:
            picks = np.zeros(others, dtype=np.int64)
        else:
            # Draw among the size - 1 other positions, then skip over the representative's.
            picks = self._rng.choice(size - 1, others, replace=size - 1 < others)
            picks += picks >= own
        return members[np.concatenate(([own], picks))]
