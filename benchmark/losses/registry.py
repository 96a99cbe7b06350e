"""Loss registry: name -> builder of a :class:`LossBundle` from typed hyperparameters.

Each builder reproduces how "A Metric Learning Reality Check" configured the loss (through powerful-benchmarker
and an early pytorch-metric-learning), with today's pytorch-metric-learning classes:
- contrastive, triplet, ntxent, fastap, snr_contrastive, multi_similarity: all pairs/triplets of the batch, no miner;
- multi_similarity_miner: the loss on the pairs of a MultiSimilarityMiner (epsilon belongs to the miner);
- proxy_nca, normalized_softmax, cosface, arcface, soft_triple (and proxy_anchor): one weight per training class,
  ``num_classes`` set per fold, trained by a separate RMSprop whose lr (``loss_lr``) is searched -- ``loss_lr`` is an
  optimiser setting, never a constructor argument;
- margin: one learned beta (learn_beta, not per class), trained without weight decay; margin_per_class: one learned
  beta per training class (MLRC's "Margin / class"), also without weight decay.

Hyperparameters arrive validated and typed by the search space (``benchmark.search_space``); keys a loss does
not use (e.g. settings of a scale schedule) are left to their own consumers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pytorch_metric_learning import losses, miners, regularizers

from benchmark.errors import UserError, did_you_mean
from benchmark.losses.bundle import LossBundle, ProxyAttribute, ScaleAttribute

# SoftTriple's centres per class: the paper's K = 10 (MLRC used pytorch-metric-learning without changing it).
SOFT_TRIPLE_CENTERS = 10
# The centre regulariser builds a (classes x centres)^2 boolean mask; beyond this it does not fit in memory (SOP).
_MAX_CENTER_MASK = 2**30


class _NormalizedZeroMeanRegularizer(regularizers.ZeroMeanRegularizer):
    """MLRC's SNR regulariser: mean |sum of components| of the L2-NORMALISED embeddings.

    Today's ZeroMeanRegularizer sees the raw embeddings, because pytorch-metric-learning now normalises inside
    the distance instead of before the loss.
    """

    def compute_loss(self, embeddings):
        return super().compute_loss(torch.nn.functional.normalize(embeddings, p=2, dim=1))


@dataclass(frozen=True)
class _Entry:
    build: Callable[[dict, int, int], LossBundle]
    params: tuple[str, ...]
    # A classification-based loss (a weight or proxy per class): MLRC drew its batches with m = 1 per class.
    classification: bool = False


_REGISTRY: dict[str, _Entry] = {}


def _register(name: str, *params: str, classification: bool = False):
    def decorator(build):
        _REGISTRY[name] = _Entry(build, params, classification)
        return build

    return decorator


@_register("contrastive", "pos_margin", "neg_margin")
def _contrastive(p, num_classes, embedding_size):
    return LossBundle(losses.ContrastiveLoss(pos_margin=p["pos_margin"], neg_margin=p["neg_margin"]))


@_register("triplet", "margin")
def _triplet(p, num_classes, embedding_size):
    return LossBundle(losses.TripletMarginLoss(margin=p["margin"], triplets_per_anchor="all"))


@_register("ntxent", "temperature")
def _ntxent(p, num_classes, embedding_size):
    return LossBundle(losses.NTXentLoss(temperature=p["temperature"]))


@_register("proxy_nca", "loss_lr", "softmax_scale", classification=True)
def _proxy_nca(p, num_classes, embedding_size):
    loss = losses.ProxyNCALoss(num_classes, embedding_size, softmax_scale=p["softmax_scale"])
    return LossBundle(loss, loss_lr=p["loss_lr"], num_classes=num_classes,
                      scale=ScaleAttribute("2*softmax_scale", "softmax_scale", cosine_factor=2.0),
                      proxies=ProxyAttribute("proxies"))


@_register("margin", "loss_lr", "margin", "beta")
def _margin(p, num_classes, embedding_size):
    # num_classes=None: one beta shared by all classes (MLRC's "Margin"; "Margin / class" is a different entry).
    loss = losses.MarginLoss(margin=p["margin"], nu=0, beta=p["beta"], learn_beta=True, num_classes=None,
                             triplets_per_anchor="all")
    return LossBundle(loss, loss_lr=p["loss_lr"], decay_loss_params=False)


@_register("margin_per_class", "loss_lr", "margin", "beta")
def _margin_per_class(p, num_classes, embedding_size):
    # MLRC's "Margin / class" (plots *_margin_param_per_class_no_weight_decay): one learned beta per training class
    # (num_classes set per fold), all initialised to `beta`, trained without weight decay like the shared one.
    loss = losses.MarginLoss(margin=p["margin"], nu=0, beta=p["beta"], learn_beta=True, num_classes=num_classes,
                             triplets_per_anchor="all")
    return LossBundle(loss, loss_lr=p["loss_lr"], decay_loss_params=False, num_classes=num_classes)


@_register("normalized_softmax", "loss_lr", "temperature", classification=True)
def _normalized_softmax(p, num_classes, embedding_size):
    loss = losses.NormalizedSoftmaxLoss(num_classes, embedding_size, temperature=p["temperature"])
    return LossBundle(loss, loss_lr=p["loss_lr"], num_classes=num_classes,
                      scale=ScaleAttribute("1/temperature", "temperature", inverse=True),
                      proxies=ProxyAttribute("W", transposed=True))


@_register("cosface", "loss_lr", "margin", "scale", classification=True)
def _cosface(p, num_classes, embedding_size):
    loss = losses.CosFaceLoss(num_classes, embedding_size, margin=p["margin"], scale=p["scale"])
    return LossBundle(loss, loss_lr=p["loss_lr"], num_classes=num_classes, scale=ScaleAttribute("scale", "scale"),
                      proxies=ProxyAttribute("W", transposed=True))


@_register("arcface", "loss_lr", "margin", "scale", classification=True)
def _arcface(p, num_classes, embedding_size):
    # The margin is in degrees: the constructor converts it to radians once, so loss.margin is in radians after.
    loss = losses.ArcFaceLoss(num_classes, embedding_size, margin=p["margin"], scale=p["scale"])
    return LossBundle(loss, loss_lr=p["loss_lr"], num_classes=num_classes, scale=ScaleAttribute("scale", "scale"),
                      proxies=ProxyAttribute("W", transposed=True))


@_register("fastap", "num_bins")
def _fastap(p, num_classes, embedding_size):
    return LossBundle(losses.FastAPLoss(num_bins=int(p["num_bins"])))


@_register("snr_contrastive", "pos_margin", "neg_margin", "regularizer_weight")
def _snr_contrastive(p, num_classes, embedding_size):
    weight = p["regularizer_weight"]
    regularizer = _NormalizedZeroMeanRegularizer() if weight > 0 else None
    loss = losses.SignalToNoiseRatioContrastiveLoss(
        pos_margin=p["pos_margin"], neg_margin=p["neg_margin"],
        embedding_regularizer=regularizer, embedding_reg_weight=weight,
    )
    return LossBundle(loss)


@_register("multi_similarity", "alpha", "beta", "base")
def _multi_similarity(p, num_classes, embedding_size):
    return LossBundle(losses.MultiSimilarityLoss(alpha=p["alpha"], beta=p["beta"], base=p["base"]))


@_register("multi_similarity_miner", "alpha", "beta", "base", "epsilon")
def _multi_similarity_miner(p, num_classes, embedding_size):
    return LossBundle(
        losses.MultiSimilarityLoss(alpha=p["alpha"], beta=p["beta"], base=p["base"]),
        miner=miners.MultiSimilarityMiner(epsilon=p["epsilon"]),
    )


@_register("soft_triple", "loss_lr", "la", "gamma", "reg_weight", "margin", classification=True)
def _soft_triple(p, num_classes, embedding_size):
    reg_weight = p["reg_weight"]
    regularizer = None
    if reg_weight > 0:
        if (num_classes * SOFT_TRIPLE_CENTERS) ** 2 > _MAX_CENTER_MASK:
            raise UserError(
                f"soft_triple reg_weight > 0 needs a ({num_classes} x {SOFT_TRIPLE_CENTERS})^2 mask, too large; "
                "use reg_weight=0 (MLRC did not use the regulariser on SOP)"
            )
        regularizer = regularizers.SparseCentersRegularizer(num_classes, SOFT_TRIPLE_CENTERS)
    loss = losses.SoftTripleLoss(
        num_classes, embedding_size, centers_per_class=SOFT_TRIPLE_CENTERS,
        la=p["la"], gamma=p["gamma"], margin=p["margin"],  # gamma as in the paper: PML stores 1/gamma
        weight_regularizer=regularizer,
        # MLRC's pytorch-metric-learning divided the summed centre distances by the number of centre pairs; today's
        # SparseCentersRegularizer divides by twice that, so doubling the weight keeps MLRC's tuned values meaningful.
        weight_reg_weight=2 * reg_weight,
    )
    # fc is (dim x classes*centres), a class's centres in consecutive columns (PML views it as classes x centres).
    return LossBundle(loss, loss_lr=p["loss_lr"], num_classes=num_classes, scale=ScaleAttribute("la", "la"),
                      proxies=ProxyAttribute("fc", transposed=True, per_class=SOFT_TRIPLE_CENTERS))


@_register("proxy_anchor", "loss_lr", "alpha", "margin", classification=True)
def _proxy_anchor(p, num_classes, embedding_size):
    loss = losses.ProxyAnchorLoss(num_classes, embedding_size, margin=p["margin"], alpha=p["alpha"])
    return LossBundle(loss, loss_lr=p["loss_lr"], num_classes=num_classes, scale=ScaleAttribute("alpha", "alpha"),
                      proxies=ProxyAttribute("proxies"))


@_register("circle", "m", "gamma")
def _circle(p, num_classes, embedding_size):
    # m is only read here: the constructor derives op, on, delta_p and delta_n from it.
    return LossBundle(losses.CircleLoss(m=p["m"], gamma=p["gamma"]), scale=ScaleAttribute("gamma", "gamma"))


# The losses this repository ships; others come from plugins (benchmark.losses.plugins).
LOSS_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))


def loss_names() -> tuple[str, ...]:
    """Built-in losses and every plugin loss (loaded --loss-module files and installed entry points)."""
    from benchmark.losses.plugins import all_plugins

    return tuple(sorted({*LOSS_NAMES, *(p.name for p in all_plugins())}))


def is_classification_loss(name: str) -> bool:
    """Whether ``name`` is classification-based (class weights or proxies), as MLRC's sampler configs tell them apart."""
    return _entry(name).classification


def loss_param_names(name: str) -> tuple[str, ...]:
    """The hyperparameters the loss ``name`` reads (its search-space file may hold more, e.g. schedule settings)."""
    return _entry(name).params


def build_loss(name: str, params: dict, num_classes: int, embedding_size: int) -> LossBundle:
    """A fresh loss for one fold with ``num_classes`` training classes (labels 0..num_classes-1)."""
    entry = _entry(name)
    missing = [key for key in entry.params if key not in params]
    if missing:
        raise UserError(f"loss {name} needs parameter(s) {', '.join(missing)}; got {', '.join(params) or 'none'}")
    if num_classes < 1 or embedding_size < 1:
        raise ValueError(f"num_classes and embedding_size must be positive, got {num_classes}, {embedding_size}")
    return entry.build(params, num_classes, embedding_size)


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        from benchmark.losses.plugins import find_plugin

        plugin = find_plugin(name)
        if plugin is None:
            known = loss_names()
            raise UserError(f"unknown loss {name!r}{did_you_mean(name, known)}; expected one of: {', '.join(known)} "
                            "(or load yours with --loss-module FILE)")
        return _plugin_entry(plugin)
    return _REGISTRY[name]


def _plugin_entry(plugin) -> _Entry:
    """Build a plugin's class the way the built-in builders build PML's: searched values as keyword arguments, the
    fold's class count and embedding size where the constructor takes them."""
    from benchmark.losses.plugins import NOT_CONSTRUCTOR_PARAMS
    from benchmark.search_space import load_search_space_file

    yaml_params = tuple(load_search_space_file(plugin.search_space).params)
    arguments = [k for k in yaml_params if k not in NOT_CONSTRUCTOR_PARAMS]

    def build(p, num_classes, embedding_size):
        kwargs = {k: p[k] for k in arguments}
        per_class = plugin.takes("num_classes")
        if per_class:
            kwargs["num_classes"] = num_classes
        if plugin.takes("embedding_size"):
            kwargs["embedding_size"] = embedding_size
        loss = plugin.loss_class(**kwargs)
        try:
            return LossBundle(loss, loss_lr=p.get("loss_lr"), num_classes=num_classes if per_class else None)
        except ValueError:
            raise UserError(f"loss {plugin.name!r} has trainable parameters: add loss_lr (their learning rate) to "
                            f"{plugin.search_space}") from None

    return _Entry(build, yaml_params)
