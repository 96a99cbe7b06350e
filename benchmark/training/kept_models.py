"""Embeddings from kept fold models (``benchmark test --keep-models``): the model rebuilt from its file, images
embedded exactly as the test phase embedded them (same evaluation transform, same code path)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from benchmark.config import Protocol
from benchmark.data.cache import DecodedImageCache
from benchmark.evaluation.embed import compute_embeddings, concatenate_normalized
from benchmark.models import build_model
from benchmark.training.fold import FoldTrainer


def protocol_of(meta: dict) -> Protocol:
    """The Protocol a kept model was trained under (settings this version does not know are refused)."""
    known = {f.name for f in fields(Protocol)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["protocol"].items() if k in known}
    return Protocol(**values)


def embed_with(files: list[dict], paths: list[Path], labels: np.ndarray, device: torch.device,
               data_root: Path | None) -> np.ndarray:
    """Embeddings of ``paths`` by one kept model (raw 128-d, as the test phase scored them) or, with several,
    their L2-normalised concatenation (MLRC's concatenated-512)."""
    protocol = protocol_of(files[0]["meta"])
    trainer = FoldTrainer(protocol, files[0]["meta"]["loss"], {}, device, DecodedImageCache(data_root, protocol.resize))
    parts = []
    for content in files:
        model = build_model(protocol, weights="none")
        model.trunk.load_state_dict(content["trunk"])
        model.embedder.load_state_dict(content["embedder"])
        embeddings, _ = compute_embeddings(model.to(device), trainer.eval_loader(paths, labels), device)
        parts.append(embeddings)
    return parts[0] if len(parts) == 1 else concatenate_normalized(parts)
