"""Trunks (BN-Inception, ResNet-50, GoogLeNet, a small CNN) and the embedding model built on them."""

from benchmark.models.embedder import EmbeddingModel, build_model, freeze_batchnorm
from benchmark.models.trunks import TRUNKS, build_trunk

__all__ = ["TRUNKS", "EmbeddingModel", "build_model", "build_trunk", "freeze_batchnorm"]
