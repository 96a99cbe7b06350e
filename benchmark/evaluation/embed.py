"""Embedding a data set with a model: eval mode, no gradients, in the protocol's precision."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.data.transforms import to_model_input
from benchmark.evaluation.knn import l2_normalize
from benchmark.models.precision import autocast

__all__ = ["compute_embeddings", "concatenate_normalized", "l2_normalize"]


@torch.no_grad()
def compute_embeddings(model: torch.nn.Module, loader, device: torch.device,
                       precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings float32 [N, D], labels int64 [N])`` for every batch ``(images, labels, ...)`` of ``loader``
    (uint8 images from the data path are converted on ``device``).

    The embeddings are returned as the model outputs them, not normalised. The model's train/eval mode is
    restored afterwards. ``precision`` (``Protocol.precision``): autocast for bf16/fp16 only.
    """

    device = torch.device(device)
    was_training = model.training
    model.eval()
    embeddings, labels = [], []
    try:
        for batch in loader:
            images, batch_labels = batch[0], batch[1]
            with autocast(precision, device):
                output = model(to_model_input(images, device))
            embeddings.append(output.float().cpu())
            labels.append(torch.as_tensor(batch_labels).reshape(-1).cpu())
    finally:
        model.train(was_training)
    if not embeddings:
        raise ValueError("the loader yielded no batches")
    return torch.cat(embeddings).numpy(), torch.cat(labels).numpy().astype(np.int64)


def concatenate_normalized(parts: list[np.ndarray]) -> np.ndarray:
    """MLRC's concatenated embedding: each model's embedding L2-normalised, then side by side ([N, sum of D])."""
    return np.concatenate([l2_normalize(np.asarray(part, dtype=np.float32)) for part in parts], axis=1)
