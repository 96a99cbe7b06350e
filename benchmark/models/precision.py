"""Numeric precision of forward passes (``Protocol.precision``): MLRC trained in fp32; bf16 and fp16 are offered for
speed and labelled not comparable.

``autocast`` is only entered when the protocol asks for a lower precision, on any device; fp16 also needs a
gradient scaler (bf16 has fp32's exponent range and does not). The losses always run in fp32 (LossBundle.compute).
"""

from __future__ import annotations

import contextlib

import torch

from benchmark.config import LOWER_PRECISIONS

# Protocol.precision -> the autocast dtype (None: plain fp32, no autocast region at all).
_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS: tuple[str, ...] = tuple(_AUTOCAST_DTYPES)
assert set(PRECISIONS) - {"fp32"} == set(LOWER_PRECISIONS)


def autocast(precision: str, device: torch.device):
    """The context forward passes run in: ``torch.autocast`` for bf16/fp16, nothing for fp32."""
    dtype = _AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (its small exponent range underflows small gradients)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
