"""The model that is trained and evaluated: a trunk followed by one linear embedding layer (MLRC)."""

from __future__ import annotations

from collections.abc import Callable

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


def _keep_in_eval(module: nn.Module, _inputs) -> None:
    module.training = False


def _batchnorm_layers(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_batchnorm_statistics(model: nn.Module) -> nn.Module:
    """Every BatchNorm layer of ``model`` normalises with its running statistics and never updates them; its
    affine weights still train.

    This is pytorch-metric-learning's ``freeze_trunk_batchnorm`` (``set_layers_to_eval("BatchNorm")`` after every
    ``set_to_train``), which powerful-benchmarker switched on for MLRC. Here each layer is put in eval mode and
    re-put there before every forward pass, so a later ``model.train()`` cannot switch batch statistics back on.
    """
    for module in _batchnorm_layers(model):
        module.eval()
        if _keep_in_eval not in module._forward_pre_hooks.values():
            module.register_forward_pre_hook(_keep_in_eval)
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


def build_model(protocol: Protocol, weights: str = "imagenet") -> EmbeddingModel:
    """The protocol's trunk (with ``weights``) and embedding layer, its BatchNorm layers as the protocol says."""
    model = EmbeddingModel(build_trunk(protocol.trunk, weights), protocol.embedding_size)
    return _BATCHNORM[protocol.batchnorm](model)
