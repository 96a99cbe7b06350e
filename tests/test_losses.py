"""The loss registry: every loss trains from its search-space defaults, in float32, with pytorch-metric-learning's
quirks (degrees, 1/gamma, derived circle margins, per-fold num_classes, MLRC's regularisers) handled."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.errors import UserError
from benchmark.losses import LOSS_NAMES, build_loss, loss_param_names
from benchmark.search_space import available_losses, load_search_space

NUM_CLASSES, PER_CLASS, IN_FEATURES, EMBEDDING = 8, 4, 16, 8
WITH_WEIGHTS = {"proxy_nca", "margin", "margin_per_class", "normalized_softmax", "cosface", "arcface", "soft_triple",
                "proxy_anchor"}
# loss -> (the search-space parameter that sets the scale at construction, effective cosine scale -> that parameter's
# value; ProxyNCA's logits are 2 softmax_scale cos, see its search space's cosine_scale)
SCALES = {
    "proxy_anchor": ("alpha", lambda s: s),
    "arcface": ("scale", lambda s: s),
    "cosface": ("scale", lambda s: s),
    "soft_triple": ("la", lambda s: s),
    "normalized_softmax": ("temperature", lambda s: 1 / s),
    "proxy_nca": ("softmax_scale", lambda s: s / 2),
    "circle": ("gamma", lambda s: s),
}


def _batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(NUM_CLASSES * PER_CLASS, IN_FEATURES, generator=generator)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(PER_CLASS)
    return x, labels


def _bundle(name, dataset="synthetic", num_classes=NUM_CLASSES, **params):
    values = {**load_search_space(name, dataset).defaults(), **params}
    return build_loss(name, values, num_classes, EMBEDDING)


def test_registry_and_search_space_files_agree():
    assert LOSS_NAMES == available_losses()
    for name in LOSS_NAMES:
        # The scale schedule's parameters are read by the trainer, not the loss.
        own = tuple(p for p in load_search_space(name, "cub200").params if p not in ("scale_schedule", "scale_end"))
        assert loss_param_names(name) == own


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_each_loss_trains_a_few_steps_from_its_defaults(name):
    torch.manual_seed(0)
    x, labels = _batch()
    model = torch.nn.Linear(IN_FEATURES, EMBEDDING)
    bundle = _bundle(name)
    model_before = model.weight.detach().clone()
    loss_before = [p.detach().clone() for p in bundle.parameters()]
    model_optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-2)
    loss_optimizer = bundle.make_optimizer(weight_decay=1e-4, momentum=0.9)
    values = []
    for _ in range(5):
        model_optimizer.zero_grad()
        if loss_optimizer:
            loss_optimizer.zero_grad()
        loss = bundle.compute(model(x), labels)
        loss.backward()
        model_optimizer.step()
        if loss_optimizer:
            loss_optimizer.step()
        values.append(loss.item())
    assert all(math.isfinite(v) for v in values) and values[0] > 0
    assert values[-1] < values[0]
    assert not torch.equal(model.weight, model_before)
    assert (len(loss_before) > 0) is (name in WITH_WEIGHTS)
    assert all(not torch.equal(p, q) for p, q in zip(bundle.parameters(), loss_before))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_mlrc_optima_build_and_give_finite_losses(name):
    x, labels = _batch()
    for dataset in ("cub200", "cars196", "sop"):
        bundle = _bundle(name, dataset)
        assert math.isfinite(bundle.compute(torch.nn.Linear(IN_FEATURES, EMBEDDING)(x), labels).item())


def test_loss_parameters_get_their_own_rmsprop_with_loss_lr():
    bundle = _bundle("proxy_anchor", loss_lr=0.03)
    optimizer = bundle.make_optimizer(weight_decay=1e-4, momentum=0.9)
    assert isinstance(optimizer, torch.optim.RMSprop) and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert group["params"] == bundle.parameters() == [bundle.loss.proxies]
    assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.03, 1e-4, 0.9)
    assert bundle.loss_lr == 0.03 and not hasattr(bundle.loss, "loss_lr")
    # MLRC's margin loss: a single learned beta, without weight decay.
    margin = _bundle("margin", beta=0.9)
    assert margin.parameters() == [margin.loss.beta] and margin.loss.beta.shape == (1,)
    assert margin.loss.beta.item() == pytest.approx(0.9)
    assert margin.make_optimizer(weight_decay=1e-4, momentum=0.9).param_groups[0]["weight_decay"] == 0.0
    assert _bundle("triplet").make_optimizer(1e-4, 0.9) is None and _bundle("triplet").loss_lr is None


def test_num_classes_is_set_per_fold_and_labels_must_be_remapped():
    for name, attribute, shape in [
        ("proxy_anchor", "proxies", (5, EMBEDDING)),
        ("proxy_nca", "proxies", (5, EMBEDDING)),
        ("arcface", "W", (EMBEDDING, 5)),
        ("normalized_softmax", "W", (EMBEDDING, 5)),
        ("soft_triple", "fc", (EMBEDDING, 50)),
    ]:
        bundle = _bundle(name, num_classes=5)
        assert tuple(getattr(bundle.loss, attribute).shape) == shape, name
        with pytest.raises(ValueError, match="labels must be remapped to 0..4"):
            bundle.compute(torch.randn(4, EMBEDDING), torch.tensor([0, 1, 5, 5]))


def test_multi_similarity_miner_epsilon_goes_to_the_miner():
    bundle = _bundle("multi_similarity_miner", epsilon=0.37, alpha=3.0)
    assert bundle.miner.epsilon == 0.37 and not hasattr(bundle.loss, "epsilon")
    assert bundle.loss.alpha == 3.0
    assert _bundle("multi_similarity").miner is None


def test_compute_is_float32_under_bfloat16_autocast():
    x, labels = _batch()
    model = torch.nn.Linear(IN_FEATURES, EMBEDDING)
    for name in ("arcface", "proxy_anchor", "soft_triple", "multi_similarity_miner"):
        torch.manual_seed(0)
        bundle = _bundle(name)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            embeddings = model(x)
            assert embeddings.dtype == torch.bfloat16  # the guarantee is tested where it matters
            loss = bundle.compute(embeddings, labels)
        assert loss.dtype == torch.float32
        assert all(p.dtype == torch.float32 for p in bundle.parameters())
        assert torch.equal(loss, bundle.compute(embeddings.detach().float(), labels))
        # Without the guard, pytorch-metric-learning computes in bfloat16 and casts its own weights down with it.
        raw = _bundle(name)
        assert raw.loss(embeddings.detach(), labels).dtype == torch.bfloat16


def test_arcface_margin_is_given_in_degrees_and_stored_in_radians():
    bundle = _bundle("arcface", margin=23.22)
    assert bundle.loss.margin == pytest.approx(math.radians(23.22))


def test_soft_triple_stores_one_over_gamma_and_uses_ten_centres():
    bundle = _bundle("soft_triple", gamma=0.1, la=17.0)
    assert bundle.loss.gamma == pytest.approx(10.0)
    assert bundle.loss.centers_per_class == 10 and bundle.get_scale() == 17.0


def test_circle_derives_its_margins_from_m():
    loss = _bundle("circle", m=0.25, gamma=256.0).loss
    assert (loss.op, loss.on, loss.delta_p, loss.delta_n) == pytest.approx((1.25, -0.25, 0.75, 0.25))


@pytest.mark.parametrize("name", sorted(SCALES))
def test_set_scale_acts_like_building_with_that_scale(name):
    param, to_param = SCALES[name]
    x, labels = _batch()
    embeddings = torch.nn.Linear(IN_FEATURES, EMBEDDING)(x).detach()
    torch.manual_seed(0)
    moved = _bundle(name, **{param: to_param(5.0)})
    assert moved.get_scale() == pytest.approx(5.0)
    moved.set_scale(12.5)
    assert moved.get_scale() == pytest.approx(12.5)
    torch.manual_seed(0)
    built = _bundle(name, **{param: to_param(12.5)})
    assert torch.allclose(moved.compute(embeddings, labels), built.compute(embeddings, labels))
    with pytest.raises(ValueError, match="positive finite"):
        moved.set_scale(0)


def test_losses_without_a_softmax_scale_say_so():
    bundle = _bundle("triplet")
    assert bundle.scale_name is None
    with pytest.raises(AttributeError, match="no softmax scale"):
        bundle.get_scale()
    assert _bundle("normalized_softmax").scale_name == "1/temperature"


def test_state_dict_round_trip_keeps_weights_and_scale():
    source = _bundle("proxy_anchor")
    source.set_scale(7.0)
    target = _bundle("proxy_anchor")
    target.load_state_dict(source.state_dict())
    assert torch.equal(target.loss.proxies, source.loss.proxies) and target.get_scale() == 7.0
    margin = _bundle("margin", beta=0.5)
    restored = _bundle("margin")
    restored.load_state_dict(margin.state_dict())
    assert restored.loss.beta.item() == pytest.approx(0.5)


def test_soft_triple_regulariser_matches_mlrc_normalisation():
    torch.manual_seed(0)
    embeddings, labels = torch.randn(NUM_CLASSES * PER_CLASS, EMBEDDING), _batch()[1]
    plain = _bundle("soft_triple", reg_weight=0.0)
    regularised = _bundle("soft_triple", reg_weight=0.3)
    regularised.loss.load_state_dict(plain.loss.state_dict())
    # MLRC-era formula: sum over same-class centre pairs of sqrt(2 - 2 cos), divided by the number of such pairs.
    centres = torch.nn.functional.normalize(plain.loss.fc, dim=0)
    similarity = centres.t() @ centres
    k = plain.loss.centers_per_class
    pairs = [(c * k + i, c * k + j) for c in range(NUM_CLASSES) for i in range(k) for j in range(i + 1, k)]
    rows, cols = zip(*pairs)
    expected = torch.sqrt(2.0 - 2.0 * similarity[list(rows), list(cols)]).sum() / len(pairs)
    difference = regularised.compute(embeddings, labels) - plain.compute(embeddings, labels)
    assert difference.item() == pytest.approx(0.3 * expected.item(), rel=1e-4)
    with pytest.raises(UserError, match="reg_weight=0"):
        _bundle("soft_triple", num_classes=5000, reg_weight=0.1)
    assert _bundle("soft_triple", num_classes=5000, reg_weight=0.0).loss.weight_regularizer is None


def test_snr_regulariser_acts_on_normalised_embeddings():
    torch.manual_seed(0)
    embeddings, labels = 3 * torch.randn(NUM_CLASSES * PER_CLASS, EMBEDDING), _batch()[1]
    plain = _bundle("snr_contrastive", regularizer_weight=0.0)
    regularised = _bundle("snr_contrastive", regularizer_weight=0.5)
    expected = torch.nn.functional.normalize(embeddings, dim=1).sum(dim=1).abs().mean()
    difference = regularised.compute(embeddings, labels) - plain.compute(embeddings, labels)
    assert difference.item() == pytest.approx(0.5 * expected.item(), rel=1e-5)


def test_bad_names_and_missing_parameters_are_user_errors():
    with pytest.raises(UserError, match="unknown loss 'nope'; expected one of: arcface, circle"):
        build_loss("nope", {}, NUM_CLASSES, EMBEDDING)
    with pytest.raises(UserError, match="loss arcface needs parameter"):
        build_loss("arcface", {"margin": 20.0}, NUM_CLASSES, EMBEDDING)
    # Keys a loss does not read (e.g. a scale schedule's) are left to their consumers.
    params = {**load_search_space("circle", "cub200").defaults(), "scale_schedule": "linear"}
    assert build_loss("circle", params, NUM_CLASSES, EMBEDDING).loss.gamma == 80.0
