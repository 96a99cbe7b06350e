"""Cosine similarities between the class proxies of a proxy/class-weight loss (the seed thesis' §5.1 diagnostic).

How spread out the proxies are tells how the scale s shapes training: a small s leaves proxies close together
(high mean cosine), a large s pushes them apart. We summarise the distribution over all pairs of different
classes at each validation: mean, variance, quantiles and a fixed-bin histogram (comparable across epochs/runs).

The pairs are visited in blocks of rows and only running sums, the histogram and a bounded sample are kept: the
full matrix would not fit at SOP scale (SoftTriple with 10 centres on a fold's ~8.5k classes: 85k proxies, a
29 GB similarity matrix).
"""

from __future__ import annotations

import torch

# Fixed bins over [-1, 1]: histograms of different epochs, folds and runs can be overlaid directly.
HISTOGRAM_BINS = 40
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# Quantiles are exact up to this many pairs (torch.quantile's own limit is 2^24 elements); beyond it they come from a
# seeded uniform sample of 99 % of it (a Bernoulli sample's size varies: 1 % is hundreds of standard deviations),
# exact to well under the histogram's bin width.
QUANTILE_LIMIT = 2**24
# Similarities computed at once: a block of rows against all proxies (64 MiB of float32).
_BLOCK_ELEMENTS = 2**24


def proxy_cosine_summary(proxies: torch.Tensor, block_elements: int = _BLOCK_ELEMENTS) -> dict:
    """Summary of cosines between proxies of different classes; ``proxies`` is (classes x per-class x dim)."""
    classes, per_class, _ = proxies.shape
    flat = torch.nn.functional.normalize(proxies.detach().float().reshape(classes * per_class, -1), dim=1)
    rows = flat.shape[0]
    owner = torch.arange(classes, device=flat.device).repeat_interleave(per_class)
    column = torch.arange(rows, device=flat.device)
    # Each unordered pair once, and never two centres of the same class (SoftTriple keeps several per class).
    pairs = rows * (rows - 1) // 2 - classes * per_class * (per_class - 1) // 2
    if pairs == 0:
        raise ValueError("proxy diagnostics need at least 2 classes")
    keep = 1.0 if pairs <= QUANTILE_LIMIT else 0.99 * QUANTILE_LIMIT / pairs
    generator = torch.Generator(device=flat.device).manual_seed(0)
    total = total_sq = 0.0
    low, high = float("inf"), float("-inf")
    histogram = torch.zeros(HISTOGRAM_BINS, dtype=torch.float64, device=flat.device)
    sample = []
    step = max(1, block_elements // rows)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        block = flat[start:stop] @ flat.t()
        row = column[start:stop, None]
        mask = (column[None, :] > row) & (owner[None, :] != owner[start:stop, None])
        values = block[mask].clamp(-1.0, 1.0).double()
        if values.numel() == 0:
            continue
        total += float(values.sum())
        total_sq += float((values * values).sum())
        low, high = min(low, float(values.min())), max(high, float(values.max()))
        histogram += torch.histc(values, bins=HISTOGRAM_BINS, min=-1.0, max=1.0)
        if keep < 1.0:
            values = values[torch.rand(values.numel(), generator=generator, device=flat.device) < keep]
        sample.append(values)
    mean = total / pairs
    quantiles = torch.quantile(torch.cat(sample).cpu(), torch.tensor(_QUANTILES, dtype=torch.float64))
    return {
        "pairs": int(pairs),
        "mean": mean,
        "variance": max(0.0, total_sq / pairs - mean * mean),
        "min": low,
        "max": high,
        "quantiles": {f"{q:g}": float(v) for q, v in zip(_QUANTILES, quantiles)},
        "histogram": [int(c) for c in histogram.tolist()],
    }
