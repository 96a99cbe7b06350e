"""Train and eval transforms of the protocol, on uint8 CHW tensors from the decoded-image cache.

They stay uint8: batches cross from DataLoader workers and to the GPU at a quarter of float32's size, and the last
step, :func:`to_model_input` (float RGB in [0, 1], bit-identical to ``v2.ToDtype(torch.float32, scale=True)``),
runs on the model's device. Trunk-specific normalisation (BN-Inception's BGR x 255 with its means, ImageNet
mean/std) belongs to the model, so every trunk gets the same data. The random ops draw from torch's global RNG, so
``torch.manual_seed`` (and the DataLoader's per-worker seeding) makes them reproducible.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from benchmark.config import Protocol


def train_transform(protocol: Protocol) -> v2.Compose:
    # Resize returns its input unchanged when the cached image already has the short side `resize`.
    return v2.Compose([
        v2.Resize(protocol.resize, antialias=True),
        v2.RandomResizedCrop(protocol.crop, scale=tuple(protocol.rrc_scale), ratio=tuple(protocol.rrc_ratio),
                             antialias=True),
        v2.RandomHorizontalFlip(protocol.hflip),
    ])


def eval_transform(protocol: Protocol) -> v2.Compose:
    return v2.Compose([
        v2.Resize(protocol.resize, antialias=True),
        v2.CenterCrop(protocol.crop),
    ])


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch from the transforms (uint8) as the model's float input in [0, 1], converted on ``device``.
    Float batches (made by a caller, not the data path) pass through unchanged."""
    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        images = v2.functional.to_dtype(images, torch.float32, scale=True)
    return images
