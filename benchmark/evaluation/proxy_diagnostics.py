"""Cosine similarities between the class proxies of a proxy/class-weight loss (the seed thesis' §5.1 diagnostic).

How spread out the proxies are tells how the scale s shapes training: a small s leaves proxies close together
(high mean cosine), a large s pushes them apart. We summarise the distribution over all pairs of different
classes at each validation: mean, variance, quantiles and a fixed-bin histogram (comparable across epochs/runs).
"""

from __future__ import annotations

import torch

# Fixed bins over [-1, 1]: histograms of different epochs, folds and runs can be overlaid directly.
HISTOGRAM_BINS = 40
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# torch.quantile refuses inputs above 2^24 elements (SOP has ~64M proxy pairs): quantiles then come from a fixed
# random subset of that size, which is exact to well under the histogram's bin width.
_QUANTILE_LIMIT = 2**24


def proxy_cosine_summary(proxies: torch.Tensor) -> dict:
    """Summary of cosines between proxies of different classes; ``proxies`` is (classes x per-class x dim)."""
    classes, per_class, _ = proxies.shape
    flat = torch.nn.functional.normalize(proxies.detach().float().reshape(classes * per_class, -1), dim=1)
    cosines = flat @ flat.t()
    owner = torch.arange(classes, device=flat.device).repeat_interleave(per_class)
    # Each unordered pair once, and never two centres of the same class (SoftTriple keeps several per class).
    upper = torch.triu(torch.ones_like(cosines, dtype=torch.bool), diagonal=1)
    values = cosines[upper & (owner[:, None] != owner[None, :])].clamp(-1.0, 1.0).cpu().double()
    if values.numel() == 0:
        raise ValueError("proxy diagnostics need at least 2 classes")
    histogram = torch.histc(values, bins=HISTOGRAM_BINS, min=-1.0, max=1.0)
    quantiles = torch.quantile(_at_most(values, _QUANTILE_LIMIT), torch.tensor(_QUANTILES, dtype=values.dtype))
    return {
        "pairs": int(values.numel()),
        "mean": float(values.mean()),
        "variance": float(values.var(unbiased=False)),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {f"{q:g}": float(v) for q, v in zip(_QUANTILES, quantiles)},
        "histogram": [int(c) for c in histogram.tolist()],
    }


def _at_most(values: torch.Tensor, limit: int) -> torch.Tensor:
    if values.numel() <= limit:
        return values
    generator = torch.Generator().manual_seed(0)
    return values[torch.randperm(values.numel(), generator=generator)[:limit]]
