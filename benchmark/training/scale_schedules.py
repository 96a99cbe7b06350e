"""Schedules of the softmax scale s during a fold (PROTOCOL.md §3; the seed thesis and AdaCos).

- ``constant``: s stays at the loss's own value (alpha, scale, la, 1/temperature, softmax_scale).
- ``linear`` / ``switch`` / ``quadratic``: after normal training (early stopping as usual), an additional phase of as
  many epochs as the normal phase trained, in which s goes from its value to ``scale_end`` linearly, at once, or
  along a convex quadratic (fast at first, flat at the end). The thesis found decreasing s from the start worse, so
  the decay only ever follows normal training.
- ``adacos_fixed``: s = √2·ln(C − 1) for the fold's C training classes (Zhang et al., CVPR 2019), for the whole fold.
- ``adacos_dynamic``: starts at the fixed value; after each epoch s = ln(B_avg) / cos(min(π/4, θ_med)) from that
  epoch's batches, where B_avg = mean_i Σ_{k≠y_i} exp(s·cos θ_{i,k}) and θ_med is the median angle between a
  sample and its own class proxy. AdaCos updates per batch; we update per epoch so one epoch trains with one s and
  the curve records exactly the s that was used.

A schedule is built per fold from the trial's parameters ``scale_schedule`` and ``scale_end``, defined once in
``search_spaces/schedules/scale.yaml`` and added to every scale-bearing loss's search space (so they can be fixed
with ``--param`` or searched by ``tune``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from benchmark.losses import LossBundle

DEFAULT_SCHEDULE = "constant"


class ScaleSchedule:
    """The constant schedule, and the hooks the fold trainer calls for every other one."""

    def start(self, bundle: LossBundle, num_classes: int) -> None:
        """Set s before the first epoch."""

    def observe(self, bundle: LossBundle, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """See one training batch (only schedules that adapt to the data use it)."""

    def end_epoch(self, bundle: LossBundle) -> None:
        """Adapt s after an epoch of the normal phase."""

    def extra_epochs(self, normal_epochs: int) -> int:
        """Epochs of the additional phase that follows a normal phase of ``normal_epochs``."""
        return 0

    def extra_scale(self, epoch: int, length: int) -> float:
        """s for epoch ``epoch`` (1-based) of an additional phase of ``length`` epochs."""
        raise NotImplementedError(f"{type(self).__name__} has no additional phase")

    @property
    def observes(self) -> bool:
        return type(self).observe is not ScaleSchedule.observe


class _DecayAfterTraining(ScaleSchedule):
    """s moves from its value after normal training to ``end`` over an additional phase of equal length."""

    def __init__(self, end: float, shape: Callable[[float], float]):
        self.end = end
        self.shape = shape  # progress in (0, 1] -> share of the way from the start value to ``end``
        self.begin: float | None = None

    def start(self, bundle: LossBundle, num_classes: int) -> None:
        self.begin = bundle.get_scale()

    def extra_epochs(self, normal_epochs: int) -> int:
        return normal_epochs

    def extra_scale(self, epoch: int, length: int) -> float:
        return self.begin + (self.end - self.begin) * self.shape(epoch / length)


def adacos_fixed_scale(num_classes: int) -> float:
    """AdaCos' fixed scale √2·ln(C − 1); it needs at least 3 classes to be positive."""
    if num_classes < 3:
        raise ValueError(f"the AdaCos scale needs at least 3 classes, got {num_classes}")
    return math.sqrt(2.0) * math.log(num_classes - 1)


class _AdaCosFixed(ScaleSchedule):
    def start(self, bundle: LossBundle, num_classes: int) -> None:
        bundle.set_scale(adacos_fixed_scale(num_classes))


class _AdaCosDynamic(_AdaCosFixed):
    def __init__(self):
        # Summed on the embeddings' device and read once per epoch: a read per step would stall a GPU every step.
        self._b_sum: torch.Tensor | None = None
        self._count = 0
        self._angles: list[torch.Tensor] = []

    def observe(self, bundle: LossBundle, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.no_grad():
            cosines = _class_cosines(bundle, embeddings.detach().float())  # (batch x classes)
            own = cosines.gather(1, labels.view(-1, 1)).squeeze(1)
            others = torch.exp(bundle.get_scale() * cosines).sum(dim=1) - torch.exp(bundle.get_scale() * own)
            self._b_sum = others.sum() if self._b_sum is None else self._b_sum + others.sum()
            self._count += int(labels.numel())
            self._angles.append(torch.acos(own.clamp(-1.0, 1.0)))

    def end_epoch(self, bundle: LossBundle) -> None:
        if not self._count:
            return
        b_avg = float(self._b_sum) / self._count
        theta_med = float(torch.cat(self._angles).median())
        scale = math.log(b_avg) / math.cos(min(math.pi / 4, theta_med))
        # A degenerate epoch (B_avg <= 1: every other class already at cosine -1) would give s <= 0: keep s then.
        if math.isfinite(scale) and scale > 0:
            bundle.set_scale(scale)
        self._b_sum, self._count, self._angles = None, 0, []


def _class_cosines(bundle: LossBundle, embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine of each embedding to each class: to its proxy, or to its nearest centre for several per class."""
    proxies = torch.nn.functional.normalize(bundle.class_proxies().float(), dim=-1)  # classes x k x dim
    embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
    return torch.einsum("bd,ckd->bck", embeddings, proxies.to(embeddings.device)).amax(dim=2)


_SCHEDULES: dict[str, Callable[[float], ScaleSchedule]] = {
    "constant": lambda end: ScaleSchedule(),
    "linear": lambda end: _DecayAfterTraining(end, lambda progress: progress),
    "switch": lambda end: _DecayAfterTraining(end, lambda progress: 1.0),
    "quadratic": lambda end: _DecayAfterTraining(end, lambda progress: 1.0 - (1.0 - progress) ** 2),
    "adacos_fixed": lambda end: _AdaCosFixed(),
    "adacos_dynamic": lambda end: _AdaCosDynamic(),
}
SCHEDULE_NAMES: tuple[str, ...] = tuple(_SCHEDULES)
# Schedules that read the class proxies; a loss without proxies (circle) cannot offer them.
NEEDS_PROXIES = frozenset({"adacos_dynamic"})


def adacos_record(params: dict, fold_classes: list[int]) -> list[dict] | None:
    """For an AdaCos schedule, per fold: its C training classes and the fixed scale s = √2·ln(C − 1) it trains with
    (adacos_dynamic: the scale it starts from). None for the other schedules. Stored with every result of such a
    configuration, because C (and so s) is the fold's: 75 for CUB200, 74 for Cars196, ~8.5k for SOP -- the
    thesis' 6.50 is C = 100."""
    name = params.get("scale_schedule", DEFAULT_SCHEDULE)
    if name not in ("adacos_fixed", "adacos_dynamic"):
        return None
    return [{"fold": fold, "schedule": name, "classes": classes, "scale": adacos_fixed_scale(classes)}
            for fold, classes in enumerate(fold_classes)]


def build_schedule(params: dict, bundle: LossBundle) -> ScaleSchedule:
    """The schedule a trial's parameters ask for (``constant`` when the loss's search space has none)."""
    name = params.get("scale_schedule", DEFAULT_SCHEDULE)
    if name == DEFAULT_SCHEDULE:
        return ScaleSchedule()
    if not bundle.scale_name:
        raise ValueError(f"scale schedule {name!r} on a loss without a softmax scale")
    if name in NEEDS_PROXIES and not bundle.has_proxies:
        raise ValueError(f"scale schedule {name!r} needs class proxies, which this loss does not have")
    return _SCHEDULES[name](float(params.get("scale_end", 0.0)))
