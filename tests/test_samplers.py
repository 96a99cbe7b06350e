"""Batch samplers: PML's m-per-class batches, and fixed representatives with hard-class mining."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmark.data.samplers import (
    BATCH_SAMPLERS,
    ObservingBatchSampler,
    RepresentativeBatchSampler,
    batch_sampler_space,
    build_batch_sampler,
)
from benchmark.data.samplers.registry import SPACE_FOLDER
from benchmark.errors import UserError
from benchmark.search_space import load_search_space_file, shipped_directory

CLASSES, PER_CLASS = 12, 6
LABELS = np.repeat(np.arange(CLASSES) * 10 + 3, PER_CLASS)  # labels need not be 0..C-1
RNG = np.random.default_rng(123)
LABELS = LABELS[RNG.permutation(len(LABELS))]  # nor grouped by class
DIRECTIONS = RNG.normal(size=(CLASSES * 10 + 3, 16))  # one embedding direction per label value


def _sampler(batch_size=8, m=2, iterations=5, period=4, share=0.5, seed=0, labels=LABELS):
    return RepresentativeBatchSampler(labels, batch_size, m, iterations, period=period, hard_class_share=share,
                                      seed=seed)


IMAGE_NOISE = RNG.normal(size=(len(LABELS), 16))  # with it, each image of a class has its own direction


def _embed(batch, noise: float = 0.0) -> torch.Tensor:
    """Each image embedded near its class's direction, scaled, as a model output that still requires grad."""
    scale = torch.rand(len(batch), 1) + 0.5
    vectors = DIRECTIONS[LABELS[batch]] + noise * IMAGE_NOISE[batch]
    return (torch.tensor(vectors, dtype=torch.float32) * scale).requires_grad_()


def _nearest(label: int, candidates, noise: float = 0.0, representatives: dict | None = None) -> list[int]:
    """``candidates`` by cosine similarity to ``label`` (of their representatives' embeddings), nearest first."""

    def unit(other):
        vector = DIRECTIONS[other] + (noise * IMAGE_NOISE[representatives[other]] if noise else 0.0)
        return vector / np.linalg.norm(vector)

    return sorted(candidates, key=lambda other: -unit(label) @ unit(other))


def _run(sampler, epochs: int, observe: bool = True) -> list[list[int]]:
    batches = []
    for _ in range(epochs):
        for batch in sampler:
            batches.append(batch)
            if observe:
                sampler.observe(_embed(batch))
    return batches


def _group_labels(batch, m=2) -> list[int]:
    return [int(label) for label in LABELS[batch[::m]]]


def _mined(batch, seen: set, hard: int, **nearest) -> bool | None:
    """Whether the classes after the first are the first's ``hard`` nearest among the classes observed so far;
    None where that cannot be told (the first class, or too few others, not observed yet)."""
    first, *rest = _group_labels(batch)
    if first not in seen or len(seen) <= hard:
        return None
    return rest[:hard] == _nearest(first, seen - {first}, **nearest)[:hard]


# -- batch structure -------------------------------------------------------------------------------------------
def test_batches_are_p_classes_times_m_images_representative_first():
    sampler = _sampler(batch_size=12, m=3, iterations=7)
    assert len(sampler) == 7
    count = 0
    for batch in sampler:
        count += 1
        groups = np.array(batch).reshape(4, 3)
        assert len(set(LABELS[groups[:, 0]])) == 4
        current = sampler.representatives()
        for group in groups:
            assert len(set(LABELS[group])) == 1
            assert len(set(group)) == 3  # 6 images per class: no repeats, the representative once
            assert group[0] == current[int(LABELS[group[0]])]
        sampler.observe(_embed(batch))
    assert count == 7


def test_small_classes_repeat_images_but_the_representative_only_when_alone():
    labels = np.array([0, 1, 1, 2, 2, 2, 2])  # class 0: one image, class 1: two, class 2: four
    sampler = _sampler(batch_size=9, m=3, iterations=20, period=1, share=0.0, labels=labels)
    seen_pairs = set()
    for batch in sampler:
        groups = {int(labels[group[0]]): list(group) for group in np.array(batch).reshape(3, 3)}
        assert groups[0] == [0, 0, 0]
        representative, *others = groups[1]
        assert others[0] == others[1] != representative and {representative, others[0]} == {1, 2}
        seen_pairs.add(representative)
        assert len(set(groups[2])) == 3 and set(groups[2]) <= {3, 4, 5, 6}
    assert seen_pairs == {1, 2}  # re-drawn every iteration, both images take a turn


def test_representatives_stay_for_a_period_across_epochs_then_change():
    sampler = _sampler(iterations=3, period=5)
    snapshots = []
    for _ in range(4):  # 12 batches: periods cover batches 0-4, 5-9 (spanning two epoch ends) and 10-11
        for batch in sampler:
            snapshots.append(sampler.representatives())
            sampler.observe(_embed(batch))
    assert all(s == snapshots[0] for s in snapshots[:5])
    assert all(s == snapshots[5] for s in snapshots[5:10])
    assert snapshots[10] == snapshots[11]
    assert snapshots[0] != snapshots[5] != snapshots[10]
    for label, index in snapshots[0].items():
        assert LABELS[index] == label


def test_batches_are_deterministic_per_seed():
    first, again, other = (_run(_sampler(seed=seed), epochs=3) for seed in (7, 7, 8))
    assert first == again
    assert first != other


# -- hard-class mining -----------------------------------------------------------------------------------------
def _mining_outcomes(sampler, epochs: int, hard: int, noise: float = 0.0) -> list[bool | None]:
    seen, outcomes = set(), []
    for _ in range(epochs):
        for batch in sampler:
            outcomes.append(_mined(batch, seen, hard, noise=noise, representatives=sampler.representatives()))
            sampler.observe(_embed(batch, noise))
            seen |= set(_group_labels(batch))
    return outcomes


def test_hard_classes_are_the_nearest_to_the_first_class_once_observed():
    # period 3: after each re-draw the old embeddings keep ranking the classes whose new representative is unseen
    outcomes = _mining_outcomes(_sampler(iterations=100, period=3, share=1.0), epochs=2, hard=3)
    assert outcomes[0] is None  # nothing observed yet: random classes
    assert outcomes.count(True) > 180 and False not in outcomes


def test_the_ranking_uses_the_representatives_own_embeddings():
    # Images of a class differ (noise), so the ranking tells the representative's row from the others'.
    sampler = _sampler(iterations=100, period=1000, share=1.0)
    outcomes = _mining_outcomes(sampler, epochs=1, hard=3, noise=1.5)
    assert outcomes.count(True) > 80 and False not in outcomes


def test_a_share_mixes_nearest_and_random_classes():
    sampler = _sampler(iterations=100, share=0.5)  # ceil(0.5 * 3) = 2 hard classes, then 1 random
    outcomes = _mining_outcomes(sampler, epochs=2, hard=2)
    assert outcomes.count(True) > 150 and False not in outcomes
    third_is_next_nearest = sum(
        _group_labels(b)[3] == _nearest(_group_labels(b)[0], set(LABELS.tolist()) - {_group_labels(b)[0]})[2]
        for b in _run(sampler, epochs=1)
    )
    assert third_is_next_nearest < 40  # a random pick among 9 classes, not the next nearest


def test_share_zero_ignores_the_embeddings():
    observed = _run(_sampler(share=0.0, iterations=50), epochs=2)
    blind = _run(_sampler(share=0.0, iterations=50), epochs=2, observe=False)
    assert observed == blind
    everything = set(LABELS.tolist())
    assert sum(bool(_mined(b, everything, 3)) for b in observed) < 5


def test_observe_follows_the_order_batches_were_drawn_in():
    """With prefetching, several batches are drawn before the first is observed; each observe is the oldest's."""
    sampler = _sampler(iterations=60, period=1000, share=1.0)
    iterator, seen = iter(sampler), set()
    ahead = [next(iterator) for _ in range(3)]
    for batch in [*iterator, None, None, None]:
        if batch is not None:
            ahead.append(batch)
        oldest = ahead.pop(0)
        sampler.observe(_embed(oldest))
        seen |= set(_group_labels(oldest))
    with pytest.raises(RuntimeError, match="more often"):
        sampler.observe(_embed(oldest))
    # The table as the delayed observations left it ranks the next batches right.
    outcomes = [_mined(batch, seen, 3) for batch in _run(sampler, epochs=1, observe=False)]
    assert outcomes.count(True) > 40 and False not in outcomes


# -- registry, search space, DataLoader ------------------------------------------------------------------------
def test_m_per_class_wraps_pml_into_batches():
    np.random.seed(0)  # PML draws from numpy's global RNG
    sampler = build_batch_sampler("m_per_class", LABELS, batch_size=12, m_per_class=3, iterations=6, params={},
                                  seed=0)
    assert isinstance(sampler, ObservingBatchSampler) and batch_sampler_space("m_per_class") == {}
    batches = list(sampler)
    assert len(sampler) == len(batches) == 6
    for batch in batches:
        groups = LABELS[np.array(batch)].reshape(4, 3)
        assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 4
        sampler.observe(torch.zeros(12, 4))


def test_representative_space_and_defaults():
    space = batch_sampler_space("representative")
    assert set(space) == {"period", "hard_class_share"}
    period = space["period"]
    assert (period.type, period.low, period.high, period.log, period.default) == ("int", 1, 100, True, 10)
    assert (space["hard_class_share"].low, space["hard_class_share"].high) == (0.0, 1.0)
    path = shipped_directory() / SPACE_FOLDER / "representative.yaml"
    assert "Alternating Projections" in load_search_space_file(path).source
    sampler = build_batch_sampler("representative", LABELS, batch_size=8, m_per_class=2, iterations=4,
                                  params={"period": 2}, seed=1)
    assert isinstance(sampler, ObservingBatchSampler)
    assert (sampler.period, sampler.hard_classes) == (2, 2)  # hard_class_share took its default 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=4, m=4), "at least 2"),
        (dict(batch_size=26, m=2), "only 12 classes"),
        (dict(batch_size=9, m=2), "not a multiple"),
        (dict(period=0), "period 0"),
        (dict(share=1.5), "hard_class_share 1.5"),
        (dict(share=-0.1), "hard_class_share -0.1"),
        (dict(iterations=0), "iterations"),
        (dict(labels=np.array([])), "non-empty"),
    ],
)
def test_bad_arguments_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        _sampler(**kwargs)


def test_bad_names_and_parameters_are_user_errors():
    common = dict(batch_size=8, m_per_class=2, iterations=2, seed=0)
    with pytest.raises(UserError, match="m_per_class, representative"):
        build_batch_sampler("nope", LABELS, params={}, **common)
    with pytest.raises(UserError, match="unknown parameter.*valid: period, hard_class_share"):
        build_batch_sampler("representative", LABELS, params={"T": 3}, **common)
    with pytest.raises(UserError, match=r"valid: \(none\)"):
        build_batch_sampler("m_per_class", LABELS, params={"period": 3}, **common)
    with pytest.raises(UserError, match="at most 12 classes"):
        build_batch_sampler("m_per_class", LABELS, params={}, **(common | dict(batch_size=26)))
    assert set(BATCH_SAMPLERS) == {"m_per_class", "representative"}


@pytest.mark.parametrize("name", sorted(BATCH_SAMPLERS))
def test_a_dataloader_takes_it_as_batch_sampler(name):
    images = torch.tensor(DIRECTIONS[LABELS], dtype=torch.float32)
    dataset = TensorDataset(images, torch.from_numpy(LABELS))
    sampler = build_batch_sampler(name, LABELS, batch_size=8, m_per_class=2, iterations=5, params={}, seed=3)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=0)
    model = torch.nn.Linear(16, 4)
    for epoch in range(2):
        batches = 0
        for x, y in loader:
            assert x.shape == (8, 16) and (y.view(4, 2) == y.view(4, 2)[:, :1]).all()
            embeddings = model(x)
            embeddings.sum().backward()  # the trainer's step; observe must cope with a graph-attached tensor
            sampler.observe(embeddings)
            batches += 1
        assert batches == len(loader) == 5
