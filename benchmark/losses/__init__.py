"""pytorch-metric-learning losses configured as "A Metric Learning Reality Check" ran them (see ``registry``)."""

from benchmark.losses.bundle import LossBundle, ScaleAttribute
from benchmark.losses.registry import LOSS_NAMES, build_loss, is_classification_loss, loss_names, loss_param_names

__all__ = ["LOSS_NAMES", "loss_names", "LossBundle", "ScaleAttribute", "build_loss", "is_classification_loss",
           "loss_param_names"]
