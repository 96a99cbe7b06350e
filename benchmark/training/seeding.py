"""Seeds: one user seed fans out into independent, reproducible streams (per fold, per reproduction)."""

from __future__ import annotations

import random

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A 31-bit seed determined by ``keys`` (e.g. ``derive_seed(seed, fold)``), decorrelated between keys."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    # PML's MPerClassSampler draws from numpy's global RNG; transforms and init from torch's.
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
