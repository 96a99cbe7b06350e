"""A forgiving CLI: close-match suggestions, no prefix abbreviations, global flags after the subcommand, read-only
commands that never create a database, and a missing weights file caught before any study exists."""

from __future__ import annotations

import pytest

from benchmark.cli import main


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("argv, suggestion", [
    (["tunee"], "did you mean 'tune'?"),
    (["run", "--loss", "proxy_anchr", "--dataset", "synthetic", "--protocol", "quick"], "'proxy_anchor'"),
    (["datasets", "verify", "synthetc"], "did you mean 'synthetic'?"),
    (["tune", "--loss", "contrastive", "--dataset", "synthetic", "--protocol", "quick", "--trial", "1"],
     "did you mean '--trials'"),
    (["db", "init", "--storag", "sqlite:///x.db"], "did you mean '--storage'?"),
    (["embed", "--study", "s", "--concatenated", "--image", "x", "--out", "o.npy"], "'--images'"),
    (["losses", "show", "arcface", "--datset", "cub200"], "did you mean '--dataset'?"),
    (["run", "--loss", "contrastive", "--dataset", "synthetic", "--protocol", "quick", "--set", "max_epoch=2"],
     "did you mean 'max_epochs'?"),
])
def test_typos_get_a_close_match(argv, suggestion, capsys, tmp_path):
    assert main(argv) == 2
    assert suggestion in _error(capsys)


def test_parameter_typo_suggested(tmp_path):
    from benchmark.errors import UserError
    from benchmark.search_space import load_search_space

    with pytest.raises(UserError, match="did you mean 'alpha'"):
        load_search_space("proxy_anchor", "synthetic").coerce({"alpah": "3"})


def test_no_prefix_abbreviation(capsys):
    # `--trial 1` once silently meant `--trials 1`.
    assert main(["tune", "--loss", "contrastive", "--dataset", "synthetic", "--trial", "1"]) == 2
    assert "unrecognized arguments: --trial 1" in _error(capsys)


def test_global_flags_after_the_subcommand(tmp_path, capsys):
    missing = tmp_path / "none.db"
    assert main(["status", "--storage", f"sqlite:///{missing}", "--quiet"]) == 2
    assert main(["status", "-v", "--storage", f"sqlite:///{missing}"]) == 2
    assert "no database at" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["status"], ["report", "--format", "md"], ["check", "--baseline", "b.json"]])
def test_read_only_commands_create_no_database(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.json").write_text('{"format": 1, "source": "storage", "settings": {}, "metrics": {"m": {"value": 1}}}')
    for url in (f"sqlite:///{tmp_path / 'typo.db'}", f"journal:///{tmp_path / 'typo.log'}"):
        assert main([*command, "--storage", url]) == 2
        assert "no database at" in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]


def test_tune_without_imagenet_weights_fails_before_any_study(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BENCHMARK_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    db = tmp_path / "s.db"
    assert main(["tune", "--loss", "contrastive", "--dataset", "cub200", "--data-root", str(tmp_path / "data"),
                 "--storage", f"sqlite:///{db}"]) == 2
    error = _error(capsys)
    assert "ImageNet weights for bninception not found" in error and str(tmp_path / "no-weights") in error
    assert not db.exists()


def test_tune_help_shows_the_categorical_space_form(capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    assert "NAME=LOW:HIGH[:log]|A,B,C" in capsys.readouterr().out
