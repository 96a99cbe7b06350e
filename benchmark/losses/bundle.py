"""``LossBundle``: a pytorch-metric-learning loss with its miner, the optimiser settings of its own parameters, and
access to its softmax scale."""

from __future__ import annotations

from dataclasses import dataclass

import torch

_SCALE_KEY = "bundle.scale"


@dataclass(frozen=True)
class ScaleAttribute:
    """Where a loss keeps its softmax scale: ``attribute`` on the loss, stored as 1/s when ``inverse``.

    ``cosine_factor``: how many times the attribute multiplies the cosine similarities in the logits. The bundle's
    scale is always this effective cosine scale s (logits = s cos + const), so AdaCos, ``scale_end`` and the recorded
    curves mean the same s for every loss. ProxyNCA's softmax(-softmax_scale ||e - p||^2) on unit vectors has logits
    2 softmax_scale cos - 2 softmax_scale: factor 2. Each loss states its convention in its search-space file
    (``cosine_scale``).
    """

    name: str  # what the loss's paper calls it, e.g. "alpha" or "1/temperature"
    attribute: str
    inverse: bool = False
    cosine_factor: float = 1.0


@dataclass(frozen=True)
class ProxyAttribute:
    """Where a loss keeps its class proxies: ``attribute`` on the loss, a (classes x dim) matrix, or (dim x classes)
    when ``transposed``; ``per_class`` consecutive rows (columns) per class, e.g. SoftTriple's centres."""

    attribute: str
    transposed: bool = False
    per_class: int = 1


class LossBundle:
    """What the trainer needs from a loss.

    ``compute`` always runs the miner and the loss in float32, also inside an autocast region: the softmax
    losses multiply cosines by scales up to a few hundred before ``exp``, which half precision cannot hold, and
    pytorch-metric-learning casts the loss's own weights to the embeddings' dtype on every call.
    """

    def __init__(
        self,
        loss: torch.nn.Module,
        *,
        miner: torch.nn.Module | None = None,
        loss_lr: float | None = None,
        decay_loss_params: bool = True,
        num_classes: int | None = None,
        scale: ScaleAttribute | None = None,
        proxies: ProxyAttribute | None = None,
    ):
        self.loss = loss
        self.miner = miner
        self.loss_lr = loss_lr
        # MLRC trained the margin loss's beta without weight decay; every other loss parameter with it.
        self.decay_loss_params = decay_loss_params
        # Set for losses with one weight per class, whose labels must be 0..num_classes-1.
        self.num_classes = num_classes
        self._scale = scale
        self._proxies = proxies
        if self.parameters() and loss_lr is None:
            raise ValueError(f"{type(loss).__name__} has trainable parameters but no loss_lr")

    # -- training --------------------------------------------------------------------------------------------
    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings = embeddings.float()
            if self.num_classes is not None:
                self._check_labels(labels)
            indices = self.miner(embeddings, labels) if self.miner is not None else None
            return self.loss(embeddings, labels, indices)

    def _check_labels(self, labels: torch.Tensor) -> None:
        # An out-of-range label would index past the class weights. On a GPU, reading the check's result would stall
        # every step until the device catches up; there an asynchronous device assertion fails instead (the
        # trainer's labels are 0..C-1 by construction, see fold_data), and the readable message is the CPU's.
        outside = (labels < 0) | (labels >= self.num_classes)
        if labels.device.type != "cpu":
            # torch's documented asynchronous assert (its name starts with an underscore; no public equivalent).
            torch._assert_async(~outside.any(), "labels must be remapped to 0..num_classes-1 for this loss")
            return
        if outside.any():
            raise ValueError(
                f"labels must be remapped to 0..{self.num_classes - 1} for this loss, got "
                f"{int(labels.min())}..{int(labels.max())}"
            )

    def parameters(self) -> list[torch.nn.Parameter]:
        """The loss's own trainable parameters (proxies, class weights, the margin loss's beta)."""
        modules = [self.loss] + ([self.miner] if self.miner is not None else [])
        return [p for module in modules for p in module.parameters() if p.requires_grad]

    def make_optimizer(self, weight_decay: float, momentum: float) -> torch.optim.RMSprop | None:
        """MLRC's separate RMSprop for the loss's parameters (lr = loss_lr), or None when the loss has none."""
        parameters = self.parameters()
        if not parameters:
            return None
        return torch.optim.RMSprop(
            parameters,
            lr=self.loss_lr,
            weight_decay=weight_decay if self.decay_loss_params else 0.0,
            momentum=momentum,
        )

    def to(self, device) -> LossBundle:
        self.loss.to(device)
        if self.miner is not None:
            self.miner.to(device)
        return self

    # -- softmax scale ---------------------------------------------------------------------------------------
    @property
    def scale_name(self) -> str | None:
        return self._scale.name if self._scale else None

    def get_scale(self) -> float:
        """The effective cosine scale s (see ScaleAttribute)."""
        value = float(getattr(self.loss, self._require_scale().attribute))
        return (1.0 / value if self._scale.inverse else value) * self._scale.cosine_factor

    def set_scale(self, scale: float) -> None:
        """Set the effective cosine scale s; the loss's own attribute becomes s / cosine_factor (or its inverse)."""
        attribute = self._require_scale()
        scale = float(scale)
        if not scale > 0 or scale == float("inf"):
            raise ValueError(f"the scale must be a positive finite number, got {scale}")
        own = scale / attribute.cosine_factor
        setattr(self.loss, attribute.attribute, 1.0 / own if attribute.inverse else own)

    @property
    def scale_convention(self) -> tuple[str, float, bool] | None:
        """(attribute, cosine factor, inverse) of the scale, for checking a search space's ``cosine_scale``."""
        if self._scale is None:
            return None
        return self._scale.attribute, self._scale.cosine_factor, self._scale.inverse

    def _require_scale(self) -> ScaleAttribute:
        if self._scale is None:
            raise AttributeError(f"{type(self.loss).__name__} has no softmax scale")
        return self._scale

    # -- class proxies ---------------------------------------------------------------------------------------
    @property
    def has_proxies(self) -> bool:
        return self._proxies is not None

    def class_proxies(self) -> torch.Tensor:
        """The learned class proxies as a detached (classes x proxies-per-class x dim) tensor."""
        if self._proxies is None:
            raise AttributeError(f"{type(self.loss).__name__} has no class proxies")
        weights = getattr(self.loss, self._proxies.attribute).detach()
        if self._proxies.transposed:
            weights = weights.t()
        return weights.reshape(-1, self._proxies.per_class, weights.shape[-1])

    # -- checkpoints -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The loss's weights, plus the current scale (a schedule may have moved it away from the constructor's)."""
        state = dict(self.loss.state_dict())
        if self._scale is not None:
            state[_SCALE_KEY] = self.get_scale()
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        scale = state.pop(_SCALE_KEY, None)
        self.loss.load_state_dict(state)
        if scale is not None:
            self.set_scale(scale)
