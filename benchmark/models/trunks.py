"""Trunk networks: image -> feature vector, with their own input normalisation and optional ImageNet weights.

Every trunk takes float RGB images in [0, 1] ([B, 3, H, W]), normalises them the way its weights expect inside
``forward``, and has an ``output_dim`` attribute. Weights are never downloaded: ``"imagenet"`` looks for the file
the original code would have downloaded in the caller's ``weights_dir`` (the CLI's ``$BENCHMARK_WEIGHTS_DIR``) or the
torch hub checkpoint folder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from benchmark.errors import UserError
from benchmark.models.bninception import BNInception
from benchmark.models.timm_trunks import build_timm_trunk, is_timm, weights_file

logger = logging.getLogger(__name__)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalized(nn.Module):
    """``net((x - mean) / std)``; ``net`` keeps the parameter names of its weight files."""

    def __init__(self, net: nn.Module, output_dim: int, mean: tuple, std: tuple):
        super().__init__()
        self.net = net
        self.output_dim = output_dim
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU blocks (16-32-64-128 channels) and global average pooling, for 32 px CPU runs.

    Narrow on purpose: ~1000 img/s for a training step on 2 CPU cores (3x the 32-256 version), so the quick
    preset can afford enough steps per fold to learn.
    """

    output_dim = 128

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = (3, 16, 32, 64, 128)
        for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < len(channels) - 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features((x - self.mean) / self.std)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def _resnet50() -> nn.Module:
    net = torchvision.models.resnet50(weights=None)
    net.fc = nn.Identity()
    return Normalized(net, 2048, _IMAGENET_MEAN, _IMAGENET_STD)


def _googlenet() -> nn.Module:
    # torchvision's ImageNet GoogLeNet was ported from TensorFlow and expects (x - 0.5) / 0.5; torchvision gets
    # there with transform_input=True on ImageNet-normalised input. We normalise to that directly instead.
    # dropout=0: the dropout belongs to the removed classifier.
    net = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=True,
                                       dropout=0.0)
    net.fc = nn.Identity()
    return Normalized(net, 1024, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass(frozen=True)
class TrunkSpec:
    build: Callable[[], nn.Module]  # randomly initialised trunk
    weights_target: Callable[[nn.Module], nn.Module]  # the submodule whose names the weight files use
    imagenet_file: str | None  # file name in the torch hub checkpoint folder
    imagenet_url: str | None  # where that file comes from (told to the user, never downloaded)
    head_prefixes: tuple[str, ...] = ()  # classifier keys in the ImageNet file, dropped when loading


def _itself(trunk: nn.Module) -> nn.Module:
    return trunk


def _inner(trunk: nn.Module) -> nn.Module:
    return trunk.net


def _url_file(url: str) -> str:
    return url.rsplit("/", 1)[-1]


_BNINCEPTION_URL = "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth"
_RESNET50_URL = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
_GOOGLENET_URL = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.url

class _TrunkRegistry(dict):
    """The built-in trunks by name; ``timm:NAME`` also names a trunk (any timm model, the optional extra)."""

    def __contains__(self, name) -> bool:
        return super().__contains__(name) or is_timm(name)


TRUNKS: dict[str, TrunkSpec] = _TrunkRegistry({
    "bninception": TrunkSpec(BNInception, _itself, _url_file(_BNINCEPTION_URL), _BNINCEPTION_URL, ("last_linear.",)),
    "resnet50": TrunkSpec(_resnet50, _inner, _url_file(_RESNET50_URL), _RESNET50_URL, ("fc.",)),
    "googlenet": TrunkSpec(_googlenet, _inner, _url_file(_GOOGLENET_URL), _GOOGLENET_URL, ("fc.", "aux1.", "aux2.")),
    # Trained from scratch by the quick preset: no ImageNet weights exist, "imagenet" means random init.
    "small_cnn": TrunkSpec(SmallCNN, _itself, None, None),
})


def weight_dirs(weights_dir: Path | None = None) -> list[Path]:
    """Folders searched for ImageNet weight files, in order: ``weights_dir``, then torch hub's checkpoints."""
    return [*([Path(weights_dir)] if weights_dir else []), Path(torch.hub.get_dir()) / "checkpoints"]


def build_trunk(name: str, weights: str = "imagenet", weights_dir: Path | None = None) -> nn.Module:
    """Trunk ``name`` with ``weights``: ``"imagenet"`` (its file found in ``weight_dirs(weights_dir)``), ``"none"``
    (random init) or the path of a state-dict file."""
    if is_timm(name):
        return build_timm_trunk(name, weights)
    if name not in TRUNKS:
        raise UserError(f"unknown trunk {name!r}; expected one of: {', '.join(TRUNKS)}")
    spec = TRUNKS[name]
    trunk = spec.build()
    if weights == "none":
        return trunk
    if weights == "imagenet":
        if spec.imagenet_file is None:
            logger.info("trunk %s has no ImageNet weights; it starts from random initialisation", name)
            return trunk
        path = _find_imagenet_file(name, spec, weights_dir)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"weights file {path} not found; expected 'imagenet', 'none' or a state-dict file path")
    load_weights(spec.weights_target(trunk), path, spec.head_prefixes)
    logger.debug("trunk %s: loaded weights from %s", name, path)
    return trunk


def check_weights(name: str, weights: str, weights_dir: Path | None = None) -> None:
    """The error ``build_trunk`` would raise for missing weights, without building anything: commands call it
    at the edge, before they read data or create a study."""
    if is_timm(name):
        if weights != "none":
            weights_file(name, weights)
        return
    spec = TRUNKS[name]
    if weights == "imagenet" and spec.imagenet_file is not None:
        _find_imagenet_file(name, spec, weights_dir)
    elif weights not in ("imagenet", "none"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"weights file {path} not found; expected 'imagenet', 'none' or a state-dict file path")
        read_state_dict(path)  # a file that is no state dict fails here, not in the middle of the first trial


def _find_imagenet_file(name: str, spec: TrunkSpec, weights_dir: Path | None) -> Path:
    dirs = weight_dirs(weights_dir)
    for folder in dirs:
        if (folder / spec.imagenet_file).is_file():
            return folder / spec.imagenet_file
    raise UserError(
        f"ImageNet weights for {name} not found: download {spec.imagenet_url} into "
        f"{' or '.join(str(d) for d in dirs)} (or set $BENCHMARK_WEIGHTS_DIR), or pass --weights none"
    )


def read_state_dict(path: Path) -> dict:
    """The state dict in ``path``, read without running pickled code; anything else is a UserError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - arbitrary bytes break the unpickler in arbitrary ways (IndexError, ...)
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"cannot read weights file {path}: {text[:200]}; expected a PyTorch state-dict file") from None
    if not isinstance(state, dict):
        raise UserError(f"weights file {path} does not hold a state dict (got {type(state).__name__})")
    return state


def load_weights(module: nn.Module, path: Path, drop_prefixes: tuple[str, ...] = ()) -> None:
    """Load the state dict in ``path`` onto ``module``, without running pickled code.

    Keys starting with ``drop_prefixes`` (a classifier head) are ignored; tensors whose shape differs only by
    size-1 axes (old exports store BatchNorm vectors as [1, C]) are reshaped. Anything else that does not match
    is a UserError.
    """
    state = read_state_dict(path)
    expected = module.state_dict()
    adapted = {}
    for key, value in state.items():
        if key.startswith(drop_prefixes):
            continue
        target = expected.get(key)
        if target is not None and isinstance(value, torch.Tensor) and _squeezed(value.shape) == _squeezed(target.shape):
            value = value.reshape(target.shape)
        adapted[key] = value
    try:
        module.load_state_dict(adapted, strict=True)
    except RuntimeError as error:
        # BatchNorm fills in a missing num_batches_tracked itself (files older than PyTorch 0.4.1 lack it).
        missing = sorted(k for k in set(expected) - set(adapted) if not k.endswith("num_batches_tracked"))
        unexpected = sorted(set(adapted) - set(expected))
        detail = f"missing {missing[:3]}, unexpected {unexpected[:3]}" if missing or unexpected else \
            str(error).splitlines()[-1].strip()
        raise UserError(f"weights file {path} does not fit this trunk: {detail}") from None


def _squeezed(shape: torch.Size) -> list[int]:
    return [d for d in shape if d != 1]
