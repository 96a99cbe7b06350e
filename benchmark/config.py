"""Typed protocol configuration: the fixed training settings of a benchmark, validated once at the edge.

Two presets:
- ``mlrc``: the exact "Metric Learning Reality Check" protocol (BN-Inception, 227 px crops, RMSprop lr 1e-6,
  100 iterations per epoch, per-dataset validation interval and patience, at most 1000 epochs).
- ``quick``: the same pipeline sized for a laptop CPU (a small CNN at 48 px from scratch, up to 40 epochs of 30 steps,
  a larger lr because nothing is pretrained). Its numbers are for smoke tests and demos, not for papers.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

from benchmark.errors import UserError

# MLRC validates every `save_interval` epochs and stops after `patience` epochs without improvement: (2, 9) unless
# the dataset has its own schedule, which its DatasetSpec holds (benchmark/data/registry.py, above this module).
MLRC_DEFAULT_VALIDATION = (2, 9)
DEFAULT_BATCH_SAMPLER = "m_per_class"
# Precisions below MLRC's fp32 (benchmark.models.precision): allowed, kept in studies of their own, and labelled not
# comparable in the report.
LOWER_PRECISIONS = ("bf16", "fp16")


@dataclass(frozen=True)
class Protocol:
    name: str
    trunk: str
    resize: int  # short side after resizing (also the decoded-image cache size)
    crop: int  # RandomResizedCrop size for training, CenterCrop size for evaluation
    embedding_size: int = 128
    batch_size: int = 32
    m_per_class: int = 4
    iterations_per_epoch: int = 100
    lr: float = 1e-6
    weight_decay: float = 1e-4
    momentum: float = 0.9
    max_epochs: int = 1000
    save_interval: int = 2
    patience: int = 9
    num_folds: int = 4
    rrc_scale: tuple[float, float] = (0.16, 1.0)
    rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    # BatchNorm during training (benchmark.models.embedder.BATCHNORM_MODES): frozen_stats = running statistics frozen,
    # affine weights trained, as pytorch-metric-learning's freeze_trunk_batchnorm did for MLRC.
    batchnorm: str = "frozen_stats"
    # Numeric precision of the forward passes (benchmark.models.precision): fp32 as MLRC; bf16/fp16 autocast.
    precision: str = "fp32"
    # How training batches are drawn (benchmark.data.samplers): MLRC's m images per class, or fixed
    # class representatives with hard-class mining.
    batch_sampler: str = DEFAULT_BATCH_SAMPLER

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        """The preset's name, plus every identity setting that differs from the preset (batch sampler, precision,
        BatchNorm handling): studies and results of different settings are kept apart, e.g. ``mlrc+bf16``."""
        return "+".join([self.name, *self._label_parts()])

    def _label_parts(self) -> list[str]:  # (identity_label adds the weights)
        preset = _PRESETS.get(self.name)
        parts = [] if self.batch_sampler == DEFAULT_BATCH_SAMPLER else [self.batch_sampler]
        if self.precision in LOWER_PRECISIONS:
            parts.append(self.precision)
        if preset is not None and self.batchnorm != preset.batchnorm:
            parts.append(f"bn_{self.batchnorm}")
        return parts



_PRESETS = {
    "mlrc": Protocol(name="mlrc", trunk="bninception", resize=256, crop=227),
    # MLRC's "CUB200 with Batch 256" (powerful-benchmarker configs/config_general/with_256_batch.yaml: only the
    # batch size changes); its own search ranges and optima are the search spaces' cub200_batch256 sections.
    "mlrc_batch256": Protocol(name="mlrc_batch256", trunk="bninception", resize=256, crop=227, batch_size=256),
    "quick": Protocol(
        name="quick",
        trunk="small_cnn",
        # Sized on held-out 200-class CUB-layout sets (12 small images per class, --weights none): 6 epochs of 15
        # steps stopped at the untrained level (best epoch 0 on most folds). 48 px costs ~1.1x the steps of 32 px
        # and learns more (fine parts survive the crop); lr 1e-3 learned less than 3e-4. On two procedural bird sets
        # (textured shared backgrounds, pose, look-alike species) these 1200 steps reach 7.2-11.6x the untrained
        # validation MAP@R for proxy_anchor, multi_similarity and contrastive. The folds are still improving at
        # epoch 40 (60 epochs: +20-35 %), but 40 x 30 steps is what ~5 min of CPU per run affords.
        resize=54,
        crop=48,
        iterations_per_epoch=30,
        lr=3e-4,
        max_epochs=40,
        save_interval=2,
        patience=10,
        rrc_scale=(0.5, 1.0),
        # The small CNN trains from scratch: its BatchNorm statistics must adapt.
        batchnorm="train",
    ),
    # A modern trunk under MLRC's other settings (optimiser, batches, schedule): ViT-S/16 trained with DINO, from timm
    # (optional extra), at its 224 px input. NOT comparable with MLRC's numbers: another trunk and input size.
    "vit": Protocol(name="vit", trunk="timm:vit_small_patch16_224.dino", resize=256, crop=224),
}
# Presets that start from pretrained weights by default (--weights imagenet) and use MLRC's per-dataset validation
# schedule.
PRETRAINED_PRESETS = ("mlrc", "mlrc_batch256", "vit")

PROTOCOL_NAMES = tuple(_PRESETS)
# Presets whose search ranges and optima are not the dataset's own: the search spaces' "<dataset>_<suffix>" sections.
_SEARCH_SPACE_SUFFIX = {"mlrc_batch256": "batch256"}
# m per class of the classification-based losses (class weights / proxies): powerful-benchmarker's
# configs/config_loss_and_miners/with_classification_based_loss.yaml overrides the MPerClassSampler to m = 1 (batch 32
# = 32 classes). Not for batch 256: PML's MPerClassSampler needs m x classes >= batch, and a CUB fold has 75 classes.
_CLASSIFICATION_M_PER_CLASS = {"mlrc": 1}


def default_weights(protocol_name: str) -> str:
    """The trunk weights a preset uses unless --weights says otherwise."""
    return "imagenet" if protocol_name in PRETRAINED_PRESETS else "none"


def weights_identity(weights: str) -> str:
    """What ``--weights`` means for a study's identity: ``imagenet``, ``none`` or ``sha256:<hex>`` of the file's
    content (two files of the same name but other weights are other studies)."""
    if weights in ("imagenet", "none"):
        return weights
    digest = hashlib.sha256()
    with open(Path(weights).expanduser(), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def identity_label(protocol: Protocol, weights_id: str) -> str:
    """The protocol part of a study's name: ``Protocol.label``, plus ``w-<weights>`` when the trunk's weights are
    not the preset's (a file by the first 12 hex digits of its sha256)."""
    if weights_id == default_weights(protocol.name):
        return protocol.label
    shown = weights_id.removeprefix("sha256:")[:12]
    return f"{protocol.label}+weights_{shown}"


def label_not_comparable(label: str) -> bool:
    """Whether a study label (``identity_label``) names a lower precision, whose numbers are not comparable."""
    return bool(set(label.split("+")) & set(LOWER_PRECISIONS))


def check_same_identity(stored: dict, current: dict, study: str) -> None:
    """Refuse to add trials to a study whose recorded identity (weights, search space, ...) differs from this
    run's: the best trial would be picked across incomparable trials. Keys the study did not record are skipped."""
    changed = [f"{key} {stored[key]} -> {current[key]}" for key in current
               if key in stored and stored[key] != current[key]]
    if changed:
        raise UserError(f"study {study} was created with other settings ({', '.join(changed)}); use the same "
                        "--weights/--space as it was created with, or another --storage")


def protocol_for(name: str, *, validation: tuple[int, int] = MLRC_DEFAULT_VALIDATION,
                 classification_loss: bool = False, **overrides) -> Protocol:
    """The preset ``name`` with the dataset's MLRC ``validation`` schedule (interval, patience: the dataset
    registry's ``mlrc_validation``), the m per class MLRC used for a classification-based loss
    (``classification_loss``: the loss registry knows which), and explicit ``overrides`` applied."""
    if name not in _PRESETS:
        raise UserError(f"unknown protocol {name!r}; expected one of: {', '.join(_PRESETS)}")
    protocol = _PRESETS[name]
    if name in PRETRAINED_PRESETS:
        interval, patience = validation
        protocol = replace(protocol, save_interval=interval, patience=patience)
    if classification_loss and name in _CLASSIFICATION_M_PER_CLASS:
        protocol = replace(protocol, m_per_class=_CLASSIFICATION_M_PER_CLASS[name])
    unknown = set(overrides) - set(Protocol.__dataclass_fields__)
    if unknown:
        raise UserError(f"unknown protocol setting(s) {sorted(unknown)}; expected some of {sorted(Protocol.__dataclass_fields__)}")
    protocol = replace(protocol, **{k: v for k, v in overrides.items() if v is not None})
    _validate(protocol)
    return protocol


def search_space_section(protocol_name: str, dataset: str) -> str:
    """The search-space section (``dataset_overrides`` / ``defaults_by_dataset`` key) a preset tunes ``dataset``
    with: the dataset's own, or e.g. ``cub200_batch256`` for ``mlrc_batch256``."""
    suffix = _SEARCH_SPACE_SUFFIX.get(protocol_name)
    return f"{dataset}_{suffix}" if suffix else dataset


def check_same_protocol(stored: dict, protocol: Protocol, study: str) -> None:
    """Refuse to add to a study created under other protocol settings (e.g. another ``--set``): its trials would not
    be comparable. A setting the stored dict lacks (written by an older version) counts as its default."""
    current = json.loads(json.dumps(protocol.to_dict()))  # tuples -> lists, as the stored JSON has them
    if "freeze_batchnorm" in stored and "batchnorm" not in stored:  # written before batchnorm had three modes
        stored = {**stored, "batchnorm": "frozen_all" if stored["freeze_batchnorm"] else "train"}
    changed = []
    for field in fields(Protocol):
        before = stored.get(field.name, None if field.default is MISSING else json.loads(json.dumps(field.default)))
        if before != current[field.name]:
            changed.append(f"{field.name} {before} -> {current[field.name]}")
    if changed:
        raise UserError(f"study {study} was created with other protocol settings ({', '.join(changed)}); use the "
                        "same --protocol/--set/--batch-sampler, or another --storage")


# Every setting's domain, checked once for presets, --set values and programmatic overrides alike: (check, what is
# expected). A field not listed gets its type's default below, so a setting added later is checked too.
_MAX_INT = 2**31 - 1
MLRC_FOLDS = 4  # the class-disjoint folds every split scheme makes; a protocol may train the first num_folds of them
_DOMAINS = {
    "m_per_class": (lambda v: 1 <= v <= _MAX_INT, "an integer >= 1 (images per class in a batch)"),
    "num_folds": (lambda v: 1 <= v <= MLRC_FOLDS, f"an integer from 1 to {MLRC_FOLDS} (the splits have "
                                                  f"{MLRC_FOLDS} folds)"),
    "lr": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "hflip": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "rrc_scale": (lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1,
                  "two numbers low,high with 0 < low <= high <= 1 (the crop's share of the image area)"),
    "rrc_ratio": (lambda v: len(v) == 2 and all(math.isfinite(x) for x in v) and 0 < v[0] <= v[1],
                  "two finite numbers low,high with 0 < low <= high (the crop's aspect ratios)"),
}
_TYPE_DOMAINS = {
    "int": (lambda v: 1 <= v <= _MAX_INT, f"an integer from 1 to {_MAX_INT}"),
    "float": (math.isfinite, "a finite number"),
    "bool": (lambda v: True, "true or false"),
    "str": (bool, "a non-empty name"),
    "tuple": (lambda v: all(math.isfinite(x) for x in v), "comma-separated finite numbers"),
}
_IS_TYPE = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "tuple": lambda v: isinstance(v, (tuple, list)) and all(_IS_TYPE["float"](x) for x in v),
}


def _kind(field) -> str:
    """int, float, bool, str or tuple (the field's annotation is a string under postponed evaluation)."""
    return "tuple" if str(field.type).startswith("tuple") else str(field.type)


def parse_setting(key: str, text: str):
    """A ``--set key=text`` value typed like the Protocol field ``key`` (its domain is checked by protocol_for)."""
    kind = _kind(Protocol.__dataclass_fields__[key])
    try:
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if kind == "tuple":
            return tuple(float(part) for part in text.split(","))
        return {"int": int, "float": float, "str": str}[kind](text)
    except ValueError:
        expected = _DOMAINS.get(key, _TYPE_DOMAINS[kind])[1]
        raise UserError(f"protocol setting {key}={text!r} is not valid; expected {expected}") from None


def _validate(protocol: Protocol) -> None:
    """Types, domains and consistency of the settings. The names of trunks, batch samplers, BatchNorm modes and
    precisions belong to the registries above this module: the CLI checks them (``cli._common.protocol_from_args``)."""
    for field in fields(Protocol):
        value, kind = getattr(protocol, field.name), _kind(field)
        check, expected = _DOMAINS.get(field.name, _TYPE_DOMAINS[kind])
        if not _IS_TYPE[kind](value) or not check(value):
            shown = ",".join(f"{x:g}" for x in value) if kind == "tuple" and _IS_TYPE[kind](value) else value
            raise UserError(f"protocol setting {field.name}={shown} is out of range; expected {expected}")
    if protocol.batch_size % protocol.m_per_class:
        raise UserError(
            f"batch size {protocol.batch_size} is not a multiple of m_per_class {protocol.m_per_class}"
        )
    if protocol.crop > protocol.resize:
        raise UserError(f"crop {protocol.crop} is larger than the resized short side {protocol.resize}")
