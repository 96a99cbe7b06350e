"""Search-space files: their ranges are MLRC's (read from the reference CSVs); bad files or values are UserErrors."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import optuna
import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.search_space import available_losses, load_search_space, shipped_directory

REFERENCE = Path(__file__).resolve().parent.parent / "benchmark" / "reference"
MLRC_DATASETS = ("cub200", "cars196", "sop")
NOT_IN_MLRC = {"proxy_anchor", "circle"}
# Ours, not MLRC's: on every loss with a softmax scale, not searched unless asked for.
SCHEDULE_PARAMS = {"scale_schedule", "scale_end"}
SCHEDULE_DEFAULTS = {"scale_schedule": "constant", "scale_end": 4.0}


def _rows(name: str) -> list[dict]:
    with open(REFERENCE / name, newline="") as handle:
        return list(csv.DictReader(handle))


def _mlrc_ranges() -> dict[tuple[str, str], dict]:
    return {(row["loss"], row["param"]): row for row in _rows("mlrc_search_spaces.csv")}


# -- the data matches the reference CSVs -----------------------------------------------------------------------
def test_every_mlrc_loss_has_a_file_and_the_extra_losses_too():
    mlrc_losses = {row["loss"] for row in _rows("mlrc_search_spaces.csv")}
    assert set(available_losses()) == mlrc_losses | NOT_IN_MLRC
    assert len(mlrc_losses) == 14  # "Margin / class" is margin_per_class


@pytest.mark.parametrize("dataset", MLRC_DATASETS + ("cub200_batch256", "synthetic"))
def test_ranges_match_the_mlrc_csv(dataset):
    ranges = _mlrc_ranges()
    for loss in {loss for loss, _ in ranges}:
        space = load_search_space(loss, dataset)
        assert set(space.params) - SCHEDULE_PARAMS == {param for l, param in ranges if l == loss}, loss
        for name, spec in space.params.items():
            if name in SCHEDULE_PARAMS:
                continue
            row = ranges[(loss, name)]
            low, high, tune = float(row["low"]), float(row["high"]), True
            note = row["dataset_overrides"]
            for ds, key, value in re.findall(r"(\w+): (low|high) ([-\d.e]+)", note):
                if ds == dataset:
                    low, high = (float(value), high) if key == "low" else (low, float(value))
            if f"{dataset}: not tuned" in note:
                tune = False
            assert spec.tune is tune, (loss, name)
            assert math.isclose(spec.low, low) and math.isclose(spec.high, high), (loss, name, spec.low, spec.high)
            assert spec.log is (row["scale"] == "log"), (loss, name)
            assert spec.type == ("int" if row["scale"] == "int" else "float"), (loss, name)
            assert spec.unit == ("degrees" if note == "degrees" else None), (loss, name)


def test_defaults_by_dataset_are_mlrc_optima():
    for row in _rows("mlrc_optimal_hparams.csv"):
        for dataset in MLRC_DATASETS + ("cub200_batch256",):
            spec = load_search_space(row["loss"], dataset).params[row["param"]]
            if row[dataset] == "":  # MLRC did not tune it there (SoftTriple's reg_weight on SOP): fixed at 0
                assert spec.tune is False and spec.default == 0
            else:
                assert math.isclose(spec.default, float(row[dataset]), rel_tol=1e-9), (row, dataset)


def test_every_default_lies_in_its_range_and_non_mlrc_losses_cite_their_papers():
    for loss in available_losses():
        for dataset in MLRC_DATASETS + ("synthetic",):
            space = load_search_space(loss, dataset)
            assert space.source
            for spec in space.params.values():
                if spec.tune:
                    assert spec.low <= spec.default <= spec.high, (loss, dataset, spec)
    assert "CVPR 2020" in load_search_space("proxy_anchor", "cub200").source
    assert load_search_space("proxy_anchor", "cub200").defaults() == {"loss_lr": 2e-3, "alpha": 32.0, "margin": 0.1,
                                                                      **SCHEDULE_DEFAULTS}
    assert load_search_space("circle", "cub200").defaults() == {"m": 0.4, "gamma": 80.0, **SCHEDULE_DEFAULTS}


def test_scale_schedules_are_offered_exactly_where_a_loss_has_a_scale():
    from benchmark.losses import build_loss
    from benchmark.training.scale_schedules import NEEDS_PROXIES, SCHEDULE_NAMES

    with_scale = set()
    for loss in available_losses():
        space = load_search_space(loss, "cub200")
        bundle = build_loss(loss, space.defaults(), num_classes=5, embedding_size=8)
        if bundle.scale_name is None:
            assert not SCHEDULE_PARAMS & set(space.params), loss
            continue
        with_scale.add(loss)
        schedule, end = space.params["scale_schedule"], space.params["scale_end"]
        assert not schedule.tune and not end.tune, loss
        expected = [n for n in SCHEDULE_NAMES if bundle.has_proxies or n not in NEEDS_PROXIES]
        assert list(schedule.choices) == expected, loss
    assert with_scale == {"proxy_nca", "normalized_softmax", "cosface", "arcface", "soft_triple", "proxy_anchor",
                          "circle"}


def test_dataset_overrides_apply_to_that_dataset_only():
    assert load_search_space("ntxent", "cub200").params["temperature"].low == pytest.approx(1e-4)
    assert load_search_space("ntxent", "cars196").params["temperature"].low == pytest.approx(1e-5)
    assert load_search_space("multi_similarity", "cub200").params["alpha"].low == pytest.approx(0.001)
    assert load_search_space("arcface", "sop").params["scale"].high == 300
    assert load_search_space("arcface", "cub200").params["scale"].high == 200
    # Datasets MLRC never tuned get the paper defaults and MLRC's generic ranges.
    synthetic = load_search_space("arcface", "synthetic")
    assert synthetic.defaults() == {"loss_lr": pytest.approx(2.01e-3), "margin": 28.6, "scale": 64.0,
                                    **SCHEDULE_DEFAULTS}


# -- user values ---------------------------------------------------------------------------------------------------
def test_coerce_types_values_and_checks_the_domain_not_the_range():
    space = load_search_space("ntxent", "cub200")
    assert space.coerce({"temperature": "0.5"}) == {"temperature": 0.5}
    assert space.coerce({"temperature": "500"}) == {"temperature": 500.0}  # beyond the search range: allowed
    with pytest.raises(UserError, match=r"temperature=-0.1 is outside the loss's domain \(0, inf\)"):
        space.coerce({"temperature": "-0.1"})
    with pytest.raises(UserError, match="temperature='abc' is not a number"):
        space.coerce({"temperature": "abc"})
    with pytest.raises(UserError, match="expected a finite number"):
        space.coerce({"temperature": "nan"})
    with pytest.raises(UserError, match=r"unknown parameter\(s\) temp for loss ntxent; valid: temperature"):
        space.coerce({"temp": "0.1"})

    fastap = load_search_space("fastap", "cub200")
    value = fastap.coerce({"num_bins": "40"})["num_bins"]
    assert value == 40 and isinstance(value, int)
    with pytest.raises(UserError, match="expected an integer"):
        fastap.coerce({"num_bins": "4.5"})
    with pytest.raises(UserError, match=r"degrees is outside the loss's domain \[0, 180\)"):
        load_search_space("arcface", "cub200").coerce({"margin": "200"})


def test_with_overrides_changes_ranges_scale_and_fixes_values():
    space = load_search_space("proxy_anchor", "cub200")
    changed = space.with_overrides({"alpha": "1:64:log", "margin": "0.2", "loss_lr": "1e-4:1e-2"})
    assert (changed.params["alpha"].low, changed.params["alpha"].high, changed.params["alpha"].log) == (1, 64, True)
    assert changed.params["margin"].tune is False and changed.params["margin"].default == 0.2
    assert changed.params["loss_lr"].log is True  # keeps the file's scale
    assert space.params["alpha"].high == 128  # the original is untouched
    assert changed.fingerprint() != space.fingerprint()
    for bad, message in [
        ({"alpha": "64:1"}, "low 64 > high 1"),
        ({"alpha": "1:64:cubic"}, "must be 'log' or 'linear'"),
        ({"margin": "-1:1:log"}, "outside the loss's domain"),
        ({"alpha": "1:2:3:4"}, "expected low:high"),
        ({"nope": "1:2"}, r"unknown parameter\(s\) nope for loss proxy_anchor; valid: loss_lr, alpha, margin"),
    ]:
        with pytest.raises(UserError, match=message):
            space.with_overrides(bad)


def test_suggest_samples_inside_the_ranges_and_keeps_fixed_parameters():
    space = load_search_space("soft_triple", "sop")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = space.suggest(trial)
        assert set(values) == set(space.params)
        assert values["reg_weight"] == 0.0 and "reg_weight" not in trial.params  # not tuned on SOP
        for name, spec in space.params.items():
            if spec.tune:
                assert spec.low <= values[name] <= spec.high
                assert trial.distributions[name].log is spec.log
        study.tell(trial, 0.0)
    assert 100 < max(t.params["la"] for t in study.trials) <= 200  # SOP's wider la range is sampled


def test_fingerprint_is_stable_and_tracks_ranges_only(tmp_path):
    assert load_search_space("arcface", "cub200").fingerprint() == load_search_space("arcface", "cub200").fingerprint()
    assert load_search_space("arcface", "cub200").fingerprint() != load_search_space("arcface", "sop").fingerprint()
    # Different optima but the same ranges: the same search.
    assert load_search_space("arcface", "cub200").fingerprint() == load_search_space("arcface", "cars196").fingerprint()
    text = (shipped_directory() / "triplet.yaml").read_text()
    (tmp_path / "triplet.yaml").write_text(text.replace("triplet should exceed", "triplet must exceed"))
    edited = load_search_space("triplet", "cub200", tmp_path)
    assert edited.fingerprint() == load_search_space("triplet", "cub200").fingerprint()


def test_the_schedule_block_is_defined_once_and_attached_to_every_scale_bearing_loss(tmp_path):
    shutil.copytree(shipped_directory(), tmp_path, dirs_exist_ok=True)
    # A new scale-bearing loss declares its cosine_scale and gets the schedule parameters without a copy.
    (tmp_path / "my_scaled.yaml").write_text("source: test\ncosine_scale: {parameter: s}\n"
                                             "params:\n  s: {type: float, low: 1, high: 64, log: true, default: 16}\n")
    space = load_search_space("my_scaled", "cub200", tmp_path)
    assert space.defaults() == {"s": 16.0, **SCHEDULE_DEFAULTS}
    assert not space.params["scale_schedule"].tune
    # Editing the shared block is a new search for every loss that carries it.
    before = {loss: load_search_space(loss, "cub200", tmp_path).fingerprint() for loss in ("arcface", "my_scaled")}
    shared = tmp_path / "schedules" / "scale.yaml"
    shared.write_text(shared.read_text().replace("high: 64.0", "high: 32.0"))
    for loss, fingerprint in before.items():
        assert load_search_space(loss, "cub200", tmp_path).fingerprint() != fingerprint, loss
    assert load_search_space("arcface", "cub200", tmp_path).params["scale_end"].high == 32.0
    assert load_search_space("triplet", "cub200", tmp_path).fingerprint() == \
        load_search_space("triplet", "cub200").fingerprint()  # no cosine_scale, no schedule
    # A copy of the block in a loss file is refused: there is one place to edit it.
    copied = (tmp_path / "my_scaled.yaml").read_text() + "  scale_end: {type: float, low: 1, high: 8, default: 4}\n"
    (tmp_path / "my_scaled.yaml").write_text(copied)
    with pytest.raises(UserError, match=r"params.scale_end: defined once in .*scale.yaml"):
        load_search_space("my_scaled", "cub200", tmp_path)


# -- file validation -----------------------------------------------------------------------------------------------
_GOOD = """\
source: test
params:
  alpha:
    type: float
    low: 1
    high: 10
    log: true
    default: 2
  kind:
    type: categorical
    choices: [a, b]
    default: a
dataset_overrides:
  cub200:
    alpha: {low: 2}
defaults_by_dataset:
  cub200: {alpha: 5}
"""


def _write(tmp_path, text, name="toy"):
    (tmp_path / f"{name}.yaml").write_text(text)
    return tmp_path


def test_a_good_file_loads_with_categoricals_and_overrides(tmp_path):
    space = load_search_space("toy", "cub200", _write(tmp_path, _GOOD))
    assert space.defaults() == {"alpha": 5.0, "kind": "a"}
    assert space.params["alpha"].domain.low == 0  # log scale implies a positive domain
    assert space.coerce({"kind": "b"}) == {"kind": "b"}
    with pytest.raises(UserError, match="kind='c': expected one of a, b"):
        space.coerce({"kind": "c"})
    assert space.with_overrides({"kind": "b"}).params["kind"].default == "b"
    assert load_search_space("toy", "cars196", tmp_path).defaults() == {"alpha": 2.0, "kind": "a"}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("high: 10", "high: 0.5"), "params.alpha: low 1 > high 0.5"),
        (lambda t: t.replace("low: 1\n", "low: 0\n"), "params.alpha: a log-scale range needs low > 0, got 0"),
        (lambda t: t.replace("default: 2", "default: 20"), r"params.alpha.default: 20 is outside the range \[1, 10\]"),
        (lambda t: t.replace("type: float", "type: double"), "params.alpha: type 'double' is not one of float, int"),
        (lambda t: t.replace("source: test", "source: test\nschedule: x"), r"unknown key\(s\) schedule"),
        (lambda t: t.replace("log: true", "log: true\n    lgo: 1"), r"params.alpha: unknown key\(s\) lgo"),
        (lambda t: t.replace("alpha: {low: 2}", "beta: {low: 2}"), "dataset_overrides.cub200.beta: unknown parameter"),
        (lambda t: t.replace("alpha: {low: 2}", "alpha: {low: 6}"), r"cub200.alpha: 5 is outside the range \[6, 10\]"),
        (lambda t: t.replace("{alpha: 5}", "{alpha: five}"), "defaults_by_dataset.cub200.alpha: expected a number"),
        (lambda t: t.replace("default: a", "default: c"), "params.kind.default: 'c' is not one of the choices"),
        (lambda t: t.replace("source: test\n", ""), "missing 'source'"),
        (lambda t: t.replace("log: true", "log: true\n    domain: (5, inf)"), r"leaves the domain \(5, inf\)"),
        (lambda t: t.replace("log: true", "log: true\n    domain: 0..inf"), "is not an interval"),
        (lambda t: "loss: other\n" + t, "loss 'other' does not match the file name 'toy'"),
        (lambda t: t.replace("params:", "params: [\n"), "malformed YAML at line"),
    ],
)
def test_malformed_files_are_user_errors_naming_the_file_and_problem(tmp_path, edit, message):
    directory = _write(tmp_path, edit(_GOOD))
    with pytest.raises(UserError, match=message) as info:
        load_search_space("toy", "sop", directory)  # every dataset section is checked, not just the one asked for
    text = str(info.value)
    assert text.startswith(str(tmp_path / "toy.yaml")) and "\n" not in text


def test_unknown_loss_lists_the_available_ones(tmp_path):
    with pytest.raises(UserError, match="unknown loss 'nope'; expected one of: .*arcface.*triplet"):
        load_search_space("nope", "cub200")
    with pytest.raises(UserError, match="does not exist"):
        available_losses(tmp_path / "missing")


def test_the_cli_environment_variable_points_at_another_folder(tmp_path, monkeypatch, capsys):
    _write(tmp_path, _GOOD)
    monkeypatch.setenv("BENCHMARK_SEARCH_SPACES", str(tmp_path))
    assert main(["losses", "show", "toy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["search_space_file"] == str(tmp_path / "toy.yaml")
    assert load_search_space("triplet", "cub200").path.parent == shipped_directory()  # the library reads no variable
    monkeypatch.setenv("BENCHMARK_SEARCH_SPACES", str(tmp_path / "missing"))
    assert main(["losses", "show", "triplet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: $BENCHMARK_SEARCH_SPACES=") and "is not a folder" in err and err.count("\n") == 1
