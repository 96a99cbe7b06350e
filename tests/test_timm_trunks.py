"""timm trunks (optional extra, installed by the dev extra so CI runs this): tiny models with random weights at
32 px, weights from a file, nothing downloaded."""

from __future__ import annotations

import json

import pytest
import torch

from _tiny import TINY_PROTOCOL
from benchmark.cli import main
from benchmark.errors import UserError

timm = pytest.importorskip("timm")

from benchmark.models.trunks import build_trunk, check_weights  # noqa: E402


def test_a_timm_trunk_trains_one_quick_fold(tiny_env, capsys):
    assert main(["run", "--loss", "contrastive", "--dataset", "synthetic", *TINY_PROTOCOL, "--set",
                 "trunk=timm:test_vit", "--weights", "none", "--folds", "1", "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{"):])
    [fold] = result["folds"]
    assert fold["fold"] == 1 and fold["epochs_trained"] >= 1 and 0 <= fold["best"]["mean_average_precision_at_r"] <= 1


def test_weights_from_a_file_are_loaded(tmp_path):
    source = timm.create_model("test_resnet", pretrained=False, num_classes=10)  # with a classifier head
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    trunk = build_trunk("timm:test_resnet", str(path))
    assert trunk.output_dim == source.num_features
    for key, value in trunk.net.state_dict().items():
        assert torch.equal(value, source.state_dict()[key])
    assert trunk(torch.rand(2, 3, 32, 32)).shape == (2, source.num_features)


def test_no_download_and_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError, match="not in the local cache and are never downloaded"):
        check_weights("timm:vit_small_patch16_224.dino", "imagenet")
    with pytest.raises(UserError, match="unknown timm model 'no_such_net'"):
        build_trunk("timm:no_such_net", "none")
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("test_vit", num_classes=0).state_dict(), other)
    with pytest.raises(UserError, match="do not fit timm model test_resnet"):
        build_trunk("timm:test_resnet", str(other))


def test_vit_preset_is_its_own_protocol():
    from benchmark.config import protocol_for

    vit = protocol_for("vit")
    assert vit.trunk == "timm:vit_small_patch16_224.dino" and vit.crop == 224 and vit.label == "vit"
    assert (vit.save_interval, vit.patience) == (protocol_for("mlrc").save_interval,
                                                 protocol_for("mlrc").patience)
