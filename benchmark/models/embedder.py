"""The model that is trained and evaluated: a trunk followed by one linear embedding layer (MLRC)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from benchmark.config import Protocol
from benchmark.models.trunks import build_trunk


class EmbeddingModel(nn.Module):
    """``Linear(trunk(x))``: raw (not normalised) embeddings of size ``embedding_size``."""

    def __init__(self, trunk: nn.Module, embedding_size: int = 128):
        super().__init__()
        self.trunk = trunk
        self.embedder = nn.Linear(trunk.output_dim, embedding_size)
        self.embedding_size = embedding_size

    def forward(self, x):
        return self.embedder(self.trunk(x))


class _EvalModeBatchNorm:
    """Mixed into a BatchNorm class: ``train()`` leaves the layer in eval mode, so it always normalises with its
    running statistics and never updates them. Unlike a forward pre-hook that resets ``training`` before each call,
    the mode is fixed outside the forward pass, which ``torch.compile`` can trace without graph breaks."""

    def train(self, mode: bool = True):
        return super().train(False)


_FROZEN_CLASSES: dict[type, type] = {}


def _frozen_class(cls: type) -> type:
    """``cls`` with :class:`_EvalModeBatchNorm` mixed in (same layout, parameters, buffers and state-dict keys)."""
    if issubclass(cls, _EvalModeBatchNorm):
        return cls
    if cls not in _FROZEN_CLASSES:
        _FROZEN_CLASSES[cls] = type(f"EvalMode{cls.__name__}", (_EvalModeBatchNorm, cls), {})
    return _FROZEN_CLASSES[cls]


# torch's public BatchNorm classes (their common base, ``_BatchNorm``, is private).
_BATCHNORM_CLASSES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _batchnorm_layers(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, _BATCHNORM_CLASSES)]


def freeze_batchnorm_statistics(model: nn.Module) -> nn.Module:
    """Every BatchNorm layer of ``model`` normalises with its running statistics and never updates them; its
    affine weights still train.

    This is pytorch-metric-learning's ``freeze_trunk_batchnorm`` (``set_layers_to_eval("BatchNorm")`` after every
    ``set_to_train``), which powerful-benchmarker switched on for MLRC. Here each layer becomes an eval-mode class
    (:class:`_EvalModeBatchNorm`), so a later ``model.train()`` cannot switch batch statistics back on.
    """
    for module in _batchnorm_layers(model):
        module.__class__ = _frozen_class(type(module))
        module.eval()
    return model


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Freeze every BatchNorm layer of ``model`` entirely: running statistics and affine weights (no gradients)."""
    freeze_batchnorm_statistics(model)
    for module in _batchnorm_layers(model):
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(False)
    return model


def _train_batchnorm(model: nn.Module) -> nn.Module:
    return model


# Protocol.batchnorm -> what build_model does to the BatchNorm layers.
_BATCHNORM: dict[str, Callable[[nn.Module], nn.Module]] = {
    "frozen_stats": freeze_batchnorm_statistics,
    "frozen_all": freeze_batchnorm,
    "train": _train_batchnorm,
}
BATCHNORM_MODES: tuple[str, ...] = tuple(_BATCHNORM)


def build_model(protocol: Protocol, weights: str = "imagenet", weights_dir: Path | None = None) -> EmbeddingModel:
    """The protocol's trunk (with ``weights``, see ``build_trunk``) and embedding layer, its BatchNorm layers as the
    protocol says."""
    model = EmbeddingModel(build_trunk(protocol.trunk, weights, weights_dir), protocol.embedding_size)
    return _BATCHNORM[protocol.batchnorm](model)
