"""Trunks from timm (the optional extra ``timm``): ``timm:NAME`` is any timm model, e.g.
``timm:vit_small_patch16_224.dino`` (ViT-S/16 trained with DINO).

Nothing is downloaded: ``imagenet`` means the model's pretrained weights as they already lie in the local Hugging Face
cache (or torch hub's checkpoint folder, for models whose weights come from a URL); ``FILE`` is a state-dict file
(.safetensors, .pth, .bin), read without running pickled code and checked key by key; ``none`` is timm's random
initialisation. timm drops the classifier and pools the features (``num_classes=0``); the images are normalised with
the model's own mean/std.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from benchmark.errors import UserError

PREFIX = "timm:"


def is_timm(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX) and len(name) > len(PREFIX)


def build_timm_trunk(name: str, weights: str) -> nn.Module:
    from benchmark.models.trunks import Normalized

    timm = _timm()
    model_name = name[len(PREFIX):]
    if not timm.is_model(model_name):
        raise UserError(f"unknown timm model {model_name!r} (trunk {name}); see timm.list_models()")
    try:
        # Vision transformers take any input size (the protocol's crop) when asked to; other models refuse the flag.
        net = timm.create_model(model_name, num_classes=0, dynamic_img_size=True)
    except TypeError:
        net = timm.create_model(model_name, num_classes=0)
    if weights != "none":
        _load(net, weights_file(name, weights), model_name)
    cfg = net.pretrained_cfg
    return Normalized(net, net.num_features, tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                      tuple(cfg.get("std", (0.229, 0.224, 0.225))))


def _load(net: nn.Module, path: Path, model_name: str) -> None:
    """Every weight of the trunk from ``path``, the classifier's ignored. Strict, unlike timm's own pretrained
    loading, which only warns about keys that do not fit (a file of another model would load nothing)."""
    timm = _timm()
    try:
        state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as error:  # safetensors, pickle and zip errors alike: the file is not a state dict
        raise UserError(f"cannot read weights file {path}: {str(error).splitlines()[0]}") from None
    head = net.pretrained_cfg.get("classifier") or ()
    heads = tuple(f"{h}." for h in ((head,) if isinstance(head, str) else head))
    state = {k: v for k, v in state.items() if not (heads and k.startswith(heads))}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"weights {path} do not fit timm model {model_name}: missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]}")


def weights_file(name: str, weights: str) -> Path:
    """The local file of ``weights`` (``imagenet``: the cached pretrained weights) for the timm trunk ``name``."""
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"weights file {path} not found; expected 'imagenet', 'none' or a state-dict file path")
        return path
    timm = _timm()
    model_name = name[len(PREFIX):]
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is not None and cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    if cfg is not None and cfg.url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / cfg.url.rsplit("/", 1)[-1]
        if candidate.is_file():
            return candidate
    raise UserError(f"pretrained weights of timm model {model_name} are not in the local cache and are never "
                    f"downloaded here: fetch them once (python -c \"import timm; timm.create_model('{model_name}', "
                    "pretrained=True)\"), or pass --weights FILE or --weights none")


def _timm():
    try:
        import timm
    except ImportError:
        raise UserError("timm trunks need timm: pip install 'dml-benchmark[timm]'") from None
    return timm
