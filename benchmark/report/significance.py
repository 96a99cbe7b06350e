"""Which differences between losses are real: paired tests over reproductions, Holm-corrected, and bootstrap ranks.

Reproduction i of every loss trains with the same seeds (common random numbers: ``test`` derives reproduction i's
seed from ``--seed`` and i only), so loss A's i-th value and loss B's i-th value form a pair, and the seed's share
of the variation cancels in their difference. The test is the paired t-test (``scipy.stats.ttest_rel``): with the
2-10 reproductions a CPU affords, the Wilcoxon signed-rank test cannot reach p < 0.05 at all below 6 pairs (its
smallest two-sided p is 2 / 2^n), while the t-test on differences of averaged retrieval metrics is well calibrated
there. The p-values of one table are Holm-corrected (scipy has no Holm step-down; it is four lines below).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
BOOTSTRAP_SAMPLES = 2000


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate), in the input's order; NaN stays NaN."""
    order = [i for i in np.argsort(pvalues) if math.isfinite(pvalues[i])]
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def paired_pvalue(a: dict[int, float], b: dict[int, float]) -> tuple[float, int]:
    """Two-sided paired t-test of the reproductions both have (keyed by reproduction number); (p, pairs).
    Fewer than 2 pairs, or identical pairs, give NaN: nothing can be told apart."""
    common = sorted(set(a) & set(b))
    x = np.asarray([a[i] for i in common], dtype=float)
    y = np.asarray([b[i] for i in common], dtype=float)
    if len(common) < 2:
        return math.nan, len(common)
    diff = x - y
    if np.all(diff == diff[0]):  # scipy gives NaN: equal pairs tell nothing, a constant gap is certain
        return (math.nan if diff[0] == 0 else 0.0), len(common)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        # scipy warns on nearly constant differences; the p it returns is still the right (tiny or large) one.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(x, y).pvalue), len(common)


@dataclass(frozen=True)
class Standing:
    """One loss in one leaderboard column."""

    tied_with_best: bool  # the best itself, or not told apart from it
    pvalue: float  # Holm-adjusted p of "differs from the best" (NaN for the best itself / untestable)
    rank_low: int  # bootstrap 95 % interval of the rank (1 = best)
    rank_high: int


def standings(values: dict[str, dict[int, float]], eligible: set[str], seed: int = 0) -> dict[str, Standing]:
    """For each loss (its values keyed by reproduction): tied with the best or not, and its rank interval.

    The best is the highest mean among ``eligible`` losses (those that learned); a loss is tied with it unless the
    Holm-corrected paired test says it is worse. Losses that are not eligible are never tied with the best."""
    means = {loss: float(np.mean(list(v.values()))) for loss, v in values.items() if v}
    candidates = [loss for loss in means if loss in eligible]
    best = max(candidates, key=lambda loss: means[loss]) if candidates else None
    others = [loss for loss in candidates if loss != best]
    raw = [paired_pvalue(values[best], values[loss])[0] for loss in others]
    adjusted = dict(zip(others, holm(raw)))
    ranks = rank_intervals(values, seed=seed)
    out = {}
    for loss in means:
        p = adjusted.get(loss, math.nan)
        tied = loss == best or (loss in adjusted and not (p < ALPHA and means[loss] < means[best]))
        out[loss] = Standing(tied, p, *ranks[loss])
    return out


def rank_intervals(values: dict[str, dict[int, float]], seed: int = 0,
                   samples: int = BOOTSTRAP_SAMPLES) -> dict[str, tuple[int, int]]:
    """95 % percentile-bootstrap interval of each loss's rank by mean (1 = highest). Reproductions are resampled
    together across losses where they share reproduction numbers (the pairs stay pairs)."""
    losses = [loss for loss in values if values[loss]]
    if not losses:
        return {}
    rng = np.random.default_rng(seed)
    reps = sorted(set().union(*(values[loss] for loss in losses)))
    matrix = np.full((len(losses), len(reps)), np.nan)
    for row, loss in enumerate(losses):
        for col, rep in enumerate(reps):
            matrix[row, col] = values[loss].get(rep, np.nan)
    draws = rng.integers(0, len(reps), size=(samples, len(reps)))
    ranks = np.empty((samples, len(losses)), dtype=int)
    for s, draw in enumerate(draws):
        resampled = matrix[:, draw]
        means = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nanmean(m)
                          for r, m in zip(resampled, matrix)])
        ranks[s] = (-means).argsort().argsort() + 1
    return {loss: (int(np.percentile(ranks[:, i], 2.5, method="lower")),
                   int(np.percentile(ranks[:, i], 97.5, method="higher"))) for i, loss in enumerate(losses)}


@dataclass(frozen=True)
class Difference:
    first: str  # the loss with the higher mean
    second: str
    mean_difference: float
    pairs: int
    pvalue: float  # Holm-adjusted over the table's pairs
    real: bool


def pairwise(values: dict[str, dict[int, float]]) -> list[Difference]:
    """Every pair of losses: mean paired difference, Holm-adjusted paired-test p, and whether it is real."""
    losses = sorted(loss for loss in values if values[loss])
    pairs, raw = [], []
    for i, a in enumerate(losses):
        for b in losses[i + 1:]:
            p, n = paired_pvalue(values[a], values[b])
            common = sorted(set(values[a]) & set(values[b]))
            diff = float(np.mean([values[a][r] - values[b][r] for r in common])) if common else math.nan
            if diff < 0:
                a_, b_, diff = b, a, -diff
            else:
                a_, b_ = a, b
            pairs.append((a_, b_, diff, n))
            raw.append(p)
    adjusted = holm(raw)
    return [Difference(a, b, d, n, p, bool(p < ALPHA)) for (a, b, d, n), p in zip(pairs, adjusted)]
