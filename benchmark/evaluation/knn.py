"""Cosine k-nearest-neighbour search with faiss (exact search on L2-normalised float32 vectors).

The index is an L2 one, as pytorch-metric-learning's default ``FaissKNN`` (``faiss.IndexFlatL2``): on unit vectors
it ranks like the inner product, and it also orders exact ties (duplicate images, duplicate embeddings) as PML does,
where an inner-product index can put another of the tied neighbours first (P@1 differed by up to 0.23 on such data).
Similarities are returned as cosines, 1 - d^2 / 2.

One flat index is built over the reference set and searched block by block, so the caller holds at most one
block of ``rows x k`` neighbours at a time. The index lives on the GPU when a CUDA-enabled faiss build and a CUDA
device are both present (the process's current CUDA device), on the CPU otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from collections.abc import Iterator

import faiss
import numpy as np

logger = logging.getLogger(__name__)

# faiss's GPU k-selection handles k <= 2048; larger searches run on the CPU.
_GPU_MAX_K = 2048
# Size of one block of search results (float32 similarities + int64 ids) handed to the caller.
_BLOCK_BYTES = 64 * 2**20
_cpu_only = contextvars.ContextVar("knn_cpu_only", default=False)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm, as contiguous float32 (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, np.finfo(np.float32).tiny))


@functools.cache
def _gpu_resources(gpu: int):
    """One ``StandardGpuResources`` per process and GPU: creating it allocates scratch memory and CUDA handles (tens
    of ms and ~1.5 GB by default), which every validation would otherwise pay again."""
    return faiss.StandardGpuResources()


@contextlib.contextmanager
def cpu_only():
    """Search on the CPU inside this block even where a GPU is usable (``benchmark perf --gpu`` times one against
    the other on the same inputs)."""
    token = _cpu_only.set(True)
    try:
        yield
    finally:
        _cpu_only.reset(token)


def _search_gpu(k: int) -> int | None:
    """The GPU to search on: the process's current CUDA device (``resolve_device`` makes ``--device cuda:N`` current,
    so a worker on GPU 1 searches on GPU 1, not on GPU 0 beside another worker); None for the CPU."""
    if (_cpu_only.get() or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0
            or k > _GPU_MAX_K):
        return None
    import torch  # only reached with a CUDA-enabled faiss build

    return torch.cuda.current_device() if torch.cuda.is_available() else None


def iter_knn(
    query: np.ndarray,
    k: int,
    reference: np.ndarray | None = None,
    block_rows: int | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(start, similarities, indices)`` for consecutive blocks of query rows, nearest first.

    Vectors are used as given: L2-normalise them first for cosine similarity. With ``reference=None`` the
    query set is its own reference and each query is excluded from its own neighbours: k + 1 neighbours are
    searched and the query's own index is dropped (not simply column 0, which with duplicate points may hold a
    twin); if ties pushed it out of the k + 1, the last column is dropped instead (as PML does).
    """
    same = reference is None
    query = np.ascontiguousarray(query, dtype=np.float32)
    reference = query if same else np.ascontiguousarray(reference, dtype=np.float32)
    available = len(reference) - int(same)
    if not 1 <= k <= available:
        raise ValueError(f"k={k} neighbours requested but only {available} reference points are available")
    search_k = k + int(same)

    index = faiss.IndexFlatL2(reference.shape[1])
    gpu = _search_gpu(search_k)
    if gpu is not None:
        # The resources must outlive the GPU index: cached for the process.
        index = faiss.index_cpu_to_gpu(_gpu_resources(gpu), gpu, index)
    logger.debug("kNN: %d queries, %d references, k=%d, %s", len(query), len(reference), k,
                 "CPU" if gpu is None else f"GPU {gpu}")
    index.add(reference)

    if block_rows is None:
        block_rows = max(1, _BLOCK_BYTES // (search_k * 12))
    for start in range(0, len(query), block_rows):
        block = query[start:start + block_rows]
        squared_distances, indices = index.search(block, search_k)
        similarities = 1.0 - squared_distances / 2.0
        if same:
            similarities, indices = _drop_self(similarities, indices, start)
        yield start, similarities, indices


def knn(query: np.ndarray, k: int, reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All of :func:`iter_knn` at once: ``(similarities [N, k], indices [N, k])``."""
    blocks = list(iter_knn(query, k, reference))
    return np.concatenate([b[1] for b in blocks]), np.concatenate([b[2] for b in blocks])


def _drop_self(similarities: np.ndarray, indices: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = indices.shape
    is_self = indices == np.arange(start, start + rows)[:, None]
    is_self[~is_self.any(axis=1), -1] = True  # faiss returns each id at most once, so one drop per row
    keep = ~is_self
    return similarities[keep].reshape(rows, cols - 1), indices[keep].reshape(rows, cols - 1)
