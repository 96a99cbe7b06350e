"""Trunks, their weight files, the embedding model and frozen BatchNorm."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from benchmark.config import protocol_for
from benchmark.errors import UserError
from benchmark.models import TRUNKS, EmbeddingModel, build_model, build_trunk, freeze_batchnorm


@pytest.fixture
def empty_weight_dirs(tmp_path, monkeypatch):
    """No weight file anywhere: an empty weights folder (passed as ``weights_dir``) and an empty torch hub folder."""
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return weights_dir


@pytest.mark.parametrize("name, size, dim", [
    ("bninception", 227, 1024),
    ("resnet50", 64, 2048),
    ("googlenet", 64, 1024),
    ("small_cnn", 32, 128),
])
def test_trunk_output_shapes(name, size, dim):
    torch.manual_seed(0)
    trunk = build_trunk(name, "none").eval()
    with torch.no_grad():
        features = trunk(torch.rand(2, 3, size, size))
    assert trunk.output_dim == dim
    assert features.shape == (2, dim)
    assert torch.isfinite(features).all()


def test_registry_and_unknown_trunk():
    assert set(TRUNKS) == {"bninception", "resnet50", "googlenet", "small_cnn"}
    with pytest.raises(UserError, match="unknown trunk"):
        build_trunk("vgg16", "none")


def test_bninception_state_dict_uses_cadene_names():
    keys = build_trunk("bninception", "none").state_dict().keys()
    for key in ("conv1_7x7_s2.weight", "conv1_7x7_s2_bn.running_mean", "conv2_3x3_reduce.bias",
                "inception_3a_1x1.weight", "inception_3c_double_3x3_2_bn.bias", "inception_5b_pool_proj.weight"):
        assert key in keys
    assert not any(k.startswith(("last_linear", "bgr_mean")) for k in keys)
    # Cadene's BNInception without last_linear has exactly this many parameters.
    assert sum(p.numel() for p in build_trunk("bninception", "none").parameters()) == 10_270_240


def cadene_style_file(trunk: nn.Module, path) -> dict:
    """The trunk's weights as Cadene's file stores them: BN vectors as [1, C], no num_batches_tracked, a classifier."""
    state = {}
    for key, value in trunk.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        value = value.clone()
        state[key] = value.unsqueeze(0) if "_bn." in key else value
    state["last_linear.weight"] = torch.zeros(1000, 1024)
    state["last_linear.bias"] = torch.zeros(1000)
    torch.save(state, path)
    return state


def test_bninception_weights_round_trip(empty_weight_dirs):
    torch.manual_seed(1)
    source = build_trunk("bninception", "none").eval()
    for module in source.modules():  # non-trivial running statistics, so loading them is checked too
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    cadene_style_file(source, empty_weight_dirs / "bn_inception-52deb4733.pth")

    loaded = build_trunk("bninception", "imagenet", empty_weight_dirs).eval()  # found in the weights folder
    explicit = build_trunk("bninception", str(empty_weight_dirs / "bn_inception-52deb4733.pth"))
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.state_dict()[key], value), key
            assert torch.equal(explicit.state_dict()[key], value), key
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(loaded(x), source(x), atol=1e-5)


def test_googlenet_imagenet_file_matches_torchvision_pipeline(empty_weight_dirs):
    """torchvision's pretrained GoogLeNet: ImageNet-normalised input, transform_input=True, aux heads dropped."""
    torch.manual_seed(2)
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    torch.save(reference.state_dict(), empty_weight_dirs / "googlenet-1378be20.pth")
    trunk = build_trunk("googlenet", "imagenet", empty_weight_dirs).eval()
    reference.fc = nn.Identity()
    reference.eval()
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(trunk(x), reference((x - mean) / std), atol=1e-5)


@pytest.mark.parametrize("name, file_name", [
    ("bninception", "bn_inception-52deb4733.pth"),
    ("resnet50", "resnet50-0676ba61.pth"),
    ("googlenet", "googlenet-1378be20.pth"),
])
def test_missing_imagenet_weights_say_where_to_put_them(empty_weight_dirs, name, file_name):
    with pytest.raises(UserError) as error:
        build_trunk(name, "imagenet", empty_weight_dirs)
    message = str(error.value)
    assert file_name in message and str(empty_weight_dirs) in message and "--weights none" in message
    assert "\n" not in message


def test_bad_weight_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        build_trunk("small_cnn", str(tmp_path / "absent.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        build_trunk("small_cnn", str(garbage))
    wrong = tmp_path / "wrong.pth"
    torch.save(build_trunk("small_cnn", "none").state_dict(), wrong)
    with pytest.raises(UserError, match="does not fit"):
        build_trunk("bninception", str(wrong))


def test_small_cnn_has_no_imagenet_weights_and_starts_random(empty_weight_dirs):
    assert build_trunk("small_cnn", "imagenet", empty_weight_dirs).output_dim == 128


def test_embedding_model_outputs_raw_embeddings():
    model = build_model(protocol_for("quick", embedding_size=64), weights="none").eval()
    assert isinstance(model, EmbeddingModel)
    assert model.embedder.in_features == 128 and model.embedder.out_features == 64
    with torch.no_grad():
        embeddings = model(torch.rand(3, 3, 32, 32))
    assert embeddings.shape == (3, 64)
    assert not torch.allclose(embeddings.norm(dim=1), torch.ones(3))


def batchnorm_layers(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_batchnorm_survives_train():
    torch.manual_seed(3)
    model = build_model(protocol_for("quick", batchnorm="frozen_all"), weights="none")
    x = torch.rand(8, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        eval_output = model(x)
    stats = [(bn.running_mean.clone(), bn.running_var.clone(), bn.weight.clone()) for bn in batchnorm_layers(model)]

    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    output = model(x)
    assert torch.allclose(output, eval_output, atol=1e-6)  # running statistics used, not the batch's
    output.pow(2).sum().backward()
    optimizer.step()

    for bn, (mean, var, weight) in zip(batchnorm_layers(model), stats):
        assert not bn.training
        assert not bn.weight.requires_grad and not bn.bias.requires_grad
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
        assert torch.equal(bn.weight, weight)
    assert len(trainable) == 6  # four convolutions (no bias), the embedding layer's weight and bias

    freeze_batchnorm(model)  # idempotent, and without forward hooks (torch.compile traces it without breaks)
    assert all(not bn._forward_pre_hooks and not bn.training for bn in batchnorm_layers(model))
    assert all(type(bn).__mro__[2] is torch.nn.BatchNorm2d for bn in batchnorm_layers(model))
    assert set(model.state_dict()) == set(build_model(protocol_for("quick"), weights="none").state_dict())


@pytest.mark.parametrize("batchnorm", ["frozen_all", "frozen_stats", "train"])
def test_every_batchnorm_mode_compiles_as_one_graph(batchnorm):
    """``--compile``: torch.compile must trace the model without graph breaks (fullgraph) in every BatchNorm mode,
    and compute what the uncompiled model does, in training and in evaluation. The "eager" backend runs the traced
    graph without generating kernels, so this checks tracing (what the BN handling affects) in seconds."""
    torch.manual_seed(0)
    model = build_model(protocol_for("quick", batchnorm=batchnorm), weights="none")
    reference = build_model(protocol_for("quick", batchnorm=batchnorm), weights="none")
    reference.load_state_dict(model.state_dict())
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    x = torch.rand(8, 3, 32, 32)
    for mode in (True, False):
        model.train(mode), reference.train(mode)
        assert torch.allclose(compiled(x), reference(x), atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    torch.compiler.reset()


def test_unfrozen_batchnorm_trains():
    model = build_model(protocol_for("quick"), weights="none").train()  # quick: BN not frozen
    bn = batchnorm_layers(model)[0]
    before = bn.running_mean.clone()
    model(torch.rand(8, 3, 32, 32))
    assert bn.training and bn.weight.requires_grad
    assert not torch.equal(bn.running_mean, before)
