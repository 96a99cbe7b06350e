"""The model that is trained and evaluated: a trunk followed by one linear embedding layer (MLRC)."""

from __future__ import annotations

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


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Freeze every BatchNorm layer of ``model``: running statistics and affine parameters stay as they are.

    Each layer is put in eval mode and re-put there before every forward pass, so a later ``model.train()``
    cannot switch batch statistics back on; its affine parameters stop requiring gradients.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)
            if _keep_in_eval not in module._forward_pre_hooks.values():
                module.register_forward_pre_hook(_keep_in_eval)
    return model


def build_model(protocol: Protocol, weights: str = "imagenet") -> EmbeddingModel:
    """The protocol's trunk (with ``weights``) and embedding layer, BatchNorm frozen if the protocol says so."""
    model = EmbeddingModel(build_trunk(protocol.trunk, weights), protocol.embedding_size)
    if protocol.freeze_batchnorm:
        freeze_batchnorm(model)
    return model
