"""Resolve the user's ``--device`` once, at the edge."""

from __future__ import annotations

import torch

from benchmark.errors import UserError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA GPU if there is one, else the CPU; ``cpu``; ``cuda`` / ``cuda:N``."""
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"unknown device {spec!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {spec} requested but no CUDA GPU is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {spec} does not exist: {torch.cuda.device_count()} CUDA GPU(s) visible")
        # The chosen GPU becomes the process's current one, so what allocates on "the current device" (faiss's
        # search index, a bare .cuda()) lands beside the model instead of on GPU 0.
        if device.index is not None:
            torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UserError(f"unsupported device {spec!r}; expected auto, cpu, cuda or cuda:N")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"
