"""Your own loss without a fork: --loss-module files, entry points, validation, study identity, losses list/show."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from _tiny import TINY_PROTOCOL, run_benchmark
from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.losses import build_loss, loss_names
from benchmark.losses import plugins
from benchmark.losses.spaces import load_loss_space

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "my_dml_loss"
EXAMPLE_MODULE = EXAMPLE / "my_dml_loss" / "my_loss.py"


@pytest.fixture(autouse=True)
def _forget_plugins(monkeypatch):
    monkeypatch.setattr(plugins, "_LOADED", {})


def _write_loss(folder: Path, body: str, yaml: str, name: str = "toy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml)
    module = folder / "toy_module.py"
    module.write_text(body)
    return module


_TOY_YAML = """source: a test
params:
  margin: {type: float, low: 0.0, high: 1.0, default: 0.2}
"""
_TOY = """import torch
from pytorch_metric_learning import losses
class Toy(losses.ContrastiveLoss):
    def __init__(self, margin):
        super().__init__(pos_margin=0.0, neg_margin=margin)
LOSSES = {"toy": Toy}
"""


def test_module_loss_builds_like_a_builtin(tmp_path):
    import torch

    module = _write_loss(tmp_path, _TOY, _TOY_YAML)
    [plugin] = plugins.load_loss_module(module)
    assert plugin.name == "toy" and len(plugin.source_sha256) == 64
    assert "toy" in loss_names()
    space = load_loss_space("toy", "synthetic")
    assert space.params["margin"].default == 0.2 and space.code_sha256 == plugin.source_sha256
    bundle = build_loss("toy", {"margin": 0.7}, num_classes=3, embedding_size=4)
    assert bundle.loss.neg_margin == 0.7 and bundle.loss_lr is None
    value = bundle.compute(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.isfinite(value)


def test_source_hash_is_part_of_the_fingerprint(tmp_path):
    module = _write_loss(tmp_path, _TOY, _TOY_YAML)
    plugins.load_loss_module(module)
    before = load_loss_space("toy", "synthetic").fingerprint()
    plugins._LOADED.clear()
    module.write_text(_TOY + "# an edit\n")
    (tmp_path / "copy").mkdir()
    moved = shutil.copy(module, tmp_path / "copy" / "toy_module2.py")
    shutil.copy(tmp_path / "toy.yaml", tmp_path / "copy" / "toy.yaml")
    plugins.load_loss_module(moved)
    assert load_loss_space("toy", "synthetic").fingerprint() != before


@pytest.mark.parametrize("body, yaml, message", [
    (_TOY.replace("LOSSES", "NOTHING"), _TOY_YAML, "defines no LOSSES dict"),
    (_TOY, _TOY_YAML.replace("margin:", "other:"), "constructor argument(s) margin have no default"),
    (_TOY.replace("def __init__(self, margin)", "def __init__(self, margin, extra=1)"),
     _TOY_YAML + "  unused: {type: int, low: 1, high: 3, default: 2}\n", "searches unused"),
    (_TOY.replace('"toy"', '"triplet"'), _TOY_YAML, "has no search space"),
    (_TOY + "raise RuntimeError('boom')\n", _TOY_YAML, "failed to import: RuntimeError: boom"),
])
def test_invalid_plugins_are_one_clear_error(tmp_path, body, yaml, message):
    module = _write_loss(tmp_path, body, yaml)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plugins.load_loss_module(module)


def test_builtin_name_is_refused(tmp_path):
    module = _write_loss(tmp_path, _TOY.replace('"toy"', '"triplet"'), _TOY_YAML, name="triplet")
    with pytest.raises(UserError, match="name of a built-in loss"):
        plugins.load_loss_module(module)


def test_trainable_loss_without_loss_lr(tmp_path):
    body = """import torch
class Proxy(torch.nn.Module):
    def __init__(self, num_classes, embedding_size, scale):
        super().__init__()
        self.proxies = torch.nn.Parameter(torch.randn(num_classes, embedding_size))
    def forward(self, embeddings, labels, indices_tuple=None):
        return (embeddings @ self.proxies.t()).logsumexp(1).mean()
LOSSES = {"toy": Proxy}
"""
    plugins.load_loss_module(_write_loss(tmp_path, body, _TOY_YAML.replace("margin", "scale")))
    with pytest.raises(UserError, match="add loss_lr"):
        build_loss("toy", {"scale": 0.5}, num_classes=3, embedding_size=4)


def test_entry_point_is_found_without_any_flag(tmp_path, monkeypatch, capsys):
    """An installed distribution's entry point (a dist-info folder on sys.path, as pip leaves it)."""
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE / "my_dml_loss", site / "my_dml_loss")
    info = site / "my_dml_loss-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-dml-loss\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[dml_benchmark.losses]\nmy_loss = my_dml_loss.my_loss:HardPairSoftMarginLoss\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "my_dml_loss", raising=False)
    assert main(["losses", "show", "my_loss", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["code"]["origin"].startswith("entry point my_dml_loss.my_loss:HardPairSoftMarginLoss (my-dml-loss)")
    assert info["params"]["margin"]["low"] == 0.0 and info["params"]["scale"]["log"] is True
    assert main(["losses", "list"]) == 0
    listing = capsys.readouterr().out
    assert any(line.split()[:2] == ["my_loss", "plugin"] for line in listing.splitlines())
    assert any(line.split()[:2] == ["proxy_anchor", "built-in"] for line in listing.splitlines())


def test_show_unknown_loss_is_exit_2(capsys):
    assert main(["losses", "show", "nope"]) == 2
    assert "unknown loss 'nope'" in capsys.readouterr().err


def test_example_loss_tuned_tested_and_reported_beside_a_builtin(tiny_env, tmp_path, capsys):
    """The README's workflow: tune the example for 2 trials, test it, report it beside a built-in loss."""
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    own = ["--loss-module", str(EXAMPLE_MODULE), "--loss", "my_loss", "--dataset", "synthetic", *TINY_PROTOCOL,
           "--storage", storage]
    builtin = ["--loss", "contrastive", "--dataset", "synthetic", *TINY_PROTOCOL, "--storage", storage]
    for args in (["tune", *own, "--trials", "2"], ["test", *own, "--reproductions", "1"],
                 ["tune", *builtin, "--trials", "1"], ["test", *builtin, "--reproductions", "1"]):
        assert main(args) == 0, capsys.readouterr().err
    out = tmp_path / "r.html"
    assert main(["report", "--storage", storage, "--out", str(out)]) == 0
    html = out.read_text()
    board = html.split("<h2>Leaderboard</h2>")[1].split("</table>")[0]
    assert ">my_loss<" in board and ">contrastive<" in board
    # the cost column: tuning + test wall-clock of each loss
    assert "<th>compute (wall)</th>" in board
    for row in board.split("<tr data-loss=")[1:]:
        assert float(row.split("<td")[3].split('data-sort="')[1].split('"')[0]) > 0
    assert "best validation MAP@R vs tuning compute" in html
    # retrieval examples of the best configuration, marked against the stored labels, within the budget
    from benchmark.report.collect import collect, leaderboard
    from benchmark.report.retrieval import best_configurations

    data = collect(storage, storage)
    [(best, queries)] = best_configurations(leaderboard(data), data.examples)
    hits = sum(int(n["label"]) == int(q.query_label) for q in queries.itertuples() for n in q.neighbours)
    section = html.split('<h2 id="retrieval">')[1].split("<h2")[0]
    assert f": {best['loss']}, reproduction 1</h3>" in section
    assert section.count('class="hit"') == hits and section.count('class="miss"') == 8 * 5 - hits
    assert section.count('src="data:image/jpeg;base64,') == 8 * 6
    assert sum(len(part.split('"', 1)[0]) for part in section.split('src="')[1:]) <= 1_000_000
    capsys.readouterr()
    assert main(["status", "--storage", storage]) == 0
    status = capsys.readouterr().out
    [line] = [line for line in status.splitlines() if line.startswith("synthetic-my_loss-quick")]
    kept_size = re.search(r"(\d+(?:\.\d+)?) (KiB|MiB)", line)  # its kept fold models' size
    assert kept_size and float(kept_size.group(1)) > 0
    assert "kept models: 8 files" in status
    # Without the module (a new process), test cannot build the loss: one line, exit 2.
    done = run_benchmark(["test", *own[2:], "--reproductions", "1"], tiny_env, tmp_path)
    assert done.returncode == 2 and "unknown loss 'my_loss'" in done.stderr and "--loss-module" in done.stderr


def test_edited_loss_module_is_refused_by_its_study(tiny_env, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    module = _write_loss(tmp_path / "loss", _TOY, _TOY_YAML)
    args = ["tune", "--loss-module", str(module), "--loss", "toy", "--dataset", "synthetic", *TINY_PROTOCOL,
            "--storage", storage, "--trials", "1"]
    assert main(args) == 0
    module.write_text(_TOY.replace("pos_margin=0.0", "pos_margin=0.1"))
    done = run_benchmark([*args[:-1], "2"], tiny_env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "was tuned with loss code sha256" in done.stderr and "Traceback" not in done.stderr
