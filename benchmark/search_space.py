"""Hyperparameter search spaces: one YAML file per loss in ``search_spaces/``, validated once when loaded.

A file holds ``source`` (where the ranges come from), ``params`` (name -> type, range, log scale, default,
domain, unit, description), ``dataset_overrides`` (ranges that differ per dataset) and ``defaults_by_dataset``
(the values a plain ``benchmark run`` uses on that dataset, e.g. MLRC's optima). Two intervals matter per
parameter: the search range ``[low, high]`` that Optuna samples from, and the ``domain`` where the loss is defined
at all. ``coerce`` accepts any value inside the domain, so ``run`` may try values the search never would.

The files live in the repository's top-level ``search_spaces/``, which a wheel carries as ``benchmark/search_spaces/``;
``$BENCHMARK_SEARCH_SPACES`` points elsewhere
(e.g. for an installation without the repository).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import UserError, did_you_mean

ENV_VAR = "BENCHMARK_SEARCH_SPACES"
TYPES = ("float", "int", "categorical")

_FILE_KEYS = {"loss", "pml_class", "description", "source", "params", "dataset_overrides", "defaults_by_dataset",
              "cosine_scale"}
# ``cosine_scale``: how a softmax loss's scale parameter multiplies the cosine similarities in its logits (the
# effective cosine scale that AdaCos, scale_end and the recorded curves use; LossBundle's ScaleAttribute).
_COSINE_SCALE_KEYS = {"parameter", "factor", "inverse", "proxies", "note"}
# The scale-schedule parameters, defined once and added to every file with a ``cosine_scale`` (a new scale-bearing
# loss needs no copy); they enter the fingerprint like the loss's own, so editing them makes a new study.
SCHEDULE_FILE = Path("schedules") / "scale.yaml"
_SCHEDULE_FILE_KEYS = {"source", "needs_proxies", "params"}
_PARAM_KEYS = {"type", "low", "high", "log", "choices", "default", "domain", "tune", "unit", "description"}
# What a dataset may change: the range and whether the parameter is searched at all (MLRC left some fixed).
_OVERRIDE_KEYS = {"low", "high", "log", "choices", "tune"}
# Integer parameters become tensor sizes or loop counts: beyond int32 they overflow in torch, long before any use.
MAX_INT = 2**31 - 1
_SCALARS = (str, int, float, bool)
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


def default_directory() -> Path:
    """``$BENCHMARK_SEARCH_SPACES``, else the search spaces shipped with the package: ``benchmark/search_spaces/`` in
    an installed wheel (the build maps the repository's top-level folder there), ``search_spaces/`` next to the
    ``benchmark`` package in a source checkout."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent
    installed = package / "search_spaces"
    return installed if installed.is_dir() else package.parent / "search_spaces"


def available_losses(directory: Path | None = None) -> tuple[str, ...]:
    """The loss names that have a search-space file, sorted."""
    directory = Path(directory) if directory is not None else default_directory()
    if not directory.is_dir():
        raise UserError(
            f"search-space folder {directory} does not exist; set ${ENV_VAR} to the folder of <loss>.yaml files"
        )
    return tuple(sorted(p.stem for p in directory.glob("*.yaml")))


@dataclass(frozen=True)
class Domain:
    """An interval, open or closed at each end, e.g. ``(0, inf)`` or ``[0, 180)``."""

    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = False
    high_closed: bool = False

    def __contains__(self, value: float) -> bool:
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self) -> str:
        def text(x: float) -> str:
            return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"

        return f"{'[' if self.low_closed else '('}{text(self.low)}, {text(self.high)}{']' if self.high_closed else ')'}"

    @classmethod
    def parse(cls, text: str) -> Domain:
        match = _INTERVAL.match(str(text))
        if not match:
            raise ValueError(f"domain {text!r} is not an interval like '(0, inf)' or '[0, 1]'")
        opening, low, high, closing = match.groups()
        domain = cls(float(low), float(high), opening == "[", closing == "]")
        if domain.low > domain.high:
            raise ValueError(f"domain {text!r} is empty")
        return domain


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: its search range (``low``/``high``/``log`` or ``choices``) and where it is defined."""

    name: str
    type: str
    default: float | int | str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple | None = None
    domain: Domain = field(default_factory=Domain)
    tune: bool = True
    unit: str | None = None
    description: str = ""

    def parse(self, text: str) -> float | int | str:
        """A user's value for this parameter, typed and checked against the domain (not the search range)."""
        text = str(text).strip()
        if self.type == "categorical":
            for choice in self.choices:
                if str(choice) == text:
                    return choice
            raise UserError(f"{self.name}={text!r}: expected one of {', '.join(map(str, self.choices))}")
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{self.name}={text!r} is not a number") from None
        if not math.isfinite(value):
            raise UserError(f"{self.name}={text!r}: expected a finite number")
        if self.type == "int":
            if not value.is_integer() or abs(value) > MAX_INT:
                raise UserError(f"{self.name}={text!r}: expected an integer of at most {MAX_INT} in magnitude")
            value = int(value)
        if value not in self.domain:
            unit = f" {self.unit}" if self.unit else ""
            raise UserError(f"{self.name}={text}{unit} is outside the loss's domain {self.domain}")
        return value

    def to_dict(self) -> dict:
        spec: dict[str, Any] = {"type": self.type, "tune": self.tune, "default": self.default}
        if self.type == "categorical":
            spec["choices"] = list(self.choices)
        else:
            spec.update(low=self.low, high=self.high, log=self.log, domain=str(self.domain))
        if self.unit:
            spec["unit"] = self.unit
        return spec


@dataclass(frozen=True)
class SearchSpace:
    """The search space of one loss on one dataset (dataset overrides and defaults already applied)."""

    loss: str
    dataset: str
    params: dict[str, ParamSpec]
    source: str = ""
    path: Path | None = None
    cosine_scale: dict | None = None  # {"parameter", "factor", "inverse", "note"}: the file's scale convention
    # sha256 of a plugin loss's source file (benchmark.losses.plugins): other code, other study.
    code_sha256: str | None = None

    def defaults(self) -> dict[str, float | int | str]:
        return {name: spec.default for name, spec in self.params.items()}

    def coerce(self, raw: dict[str, str]) -> dict[str, float | int | str]:
        """Type user values (``--param name=value``); each must lie in its parameter's domain."""
        unknown = sorted(set(raw) - set(self.params))
        if unknown:
            raise UserError(
                f"unknown parameter(s) {', '.join(unknown)}{did_you_mean(unknown[0], self.params)} for loss "
                f"{self.loss}; valid: {', '.join(self.params)}"
            )
        return {name: self.params[name].parse(text) for name, text in raw.items()}

    def with_overrides(self, spec: dict[str, str]) -> SearchSpace:
        """Change search ranges from the command line.

        ``low:high`` keeps the scale, ``low:high:log`` / ``low:high:linear`` set it, a single value fixes the
        parameter (it is not searched); categorical parameters take ``a,b,c`` or one fixed choice.
        """
        unknown = sorted(set(spec) - set(self.params))
        if unknown:
            raise UserError(
                f"unknown parameter(s) {', '.join(unknown)}{did_you_mean(unknown[0], self.params)} for loss "
                f"{self.loss}; valid: {', '.join(self.params)}"
            )
        params = dict(self.params)
        for name, text in spec.items():
            params[name] = _override_from_text(params[name], str(text))
        return replace(self, params=params)

    def suggest(self, trial) -> dict[str, float | int | str]:
        """Draw one configuration from an Optuna trial; parameters that are not searched keep their default."""
        values: dict[str, float | int | str] = {}
        for name, spec in self.params.items():
            if not spec.tune:
                values[name] = spec.default
            elif spec.type == "float":
                values[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
            elif spec.type == "int":
                values[name] = trial.suggest_int(name, spec.low, spec.high, log=spec.log)
            else:
                values[name] = trial.suggest_categorical(name, list(spec.choices))
        return values

    def to_dict(self) -> dict:
        return {"loss": self.loss, "dataset": self.dataset, "params": {n: s.to_dict() for n, s in self.params.items()}}

    def fingerprint(self) -> str:
        """A stable hash of what the search samples from: the ranges, and the values of fixed parameters."""
        searched = {}
        for name, spec in self.params.items():
            entry = spec.to_dict()
            entry.pop("domain", None)
            if spec.tune:
                entry.pop("default")
            searched[name] = entry
        identity = {"loss": self.loss, "params": searched}
        if self.code_sha256:
            identity["code_sha256"] = self.code_sha256
        text = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_same_code(stored: str | None, space: SearchSpace, study: str) -> None:
    """Refuse to add to a study whose plugin loss was another version of its source file (``stored``: the sha256
    the study was created with): trials of two versions of a loss are not one search."""
    if (stored or None) != space.code_sha256:
        raise UserError(f"study {study} was tuned with loss code sha256 {(stored or 'built-in')[:12]}, the loaded "
                        f"{space.loss} is {(space.code_sha256 or 'built-in')[:12]}; restore that source or use "
                        "another --storage")


def format_params(params: dict) -> str:
    """``alpha=32, loss_lr=0.002`` with numbers to 4 significant digits: how logs and printouts show parameters."""
    return ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in params.items()) or "(none)"


def load_search_space(loss: str, dataset: str, directory: Path | None = None) -> SearchSpace:
    """The search space of built-in loss ``loss`` (its file in the search-space folder) with ``dataset``'s overrides
    and defaults applied; ``benchmark.losses.spaces.load_loss_space`` also finds plugin losses'."""
    directory = Path(directory) if directory is not None else default_directory()
    path = directory / f"{loss}.yaml"
    if not path.is_file():
        names = ", ".join(available_losses(directory)) or f"(no .yaml files in {directory})"
        raise UserError(f"unknown loss {loss!r}{did_you_mean(loss, available_losses(directory))}; expected one of: "
                        f"{names} (or load yours with --loss-module FILE)")
    return _SpaceFile(path).resolve(dataset)


def load_search_space_file(path: Path, dataset: str = "") -> SearchSpace:
    """A search-space file outside the per-loss folder (e.g. ``batch_samplers/<name>.yaml``), validated the same
    way; ``dataset`` picks its overrides and defaults, ``""`` the file's generic ones."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"search-space file {path} does not exist; set ${ENV_VAR} to the search_spaces folder")
    return _SpaceFile(path).resolve(dataset)


class _SpaceFile:
    """One parsed and fully validated file; every dataset section is checked, not only the one asked for."""

    def __init__(self, path: Path):
        self.path = path
        data = self._read()
        self._no_unknown_keys(data, _FILE_KEYS, "")
        for key in ("source", "params"):
            if not data.get(key):
                self._fail(f"missing '{key}'")
        if data.get("loss", path.stem) != path.stem:
            self._fail(f"loss {data['loss']!r} does not match the file name {path.stem!r}")
        self.source = " ".join(str(data["source"]).split())
        self.params = {name: self._param(name, spec) for name, spec in self._mapping(data["params"], "params").items()}
        self.cosine_scale = self._cosine_scale(data.get("cosine_scale"))
        if self.cosine_scale is not None:
            self.params.update(self._schedule_params(self.cosine_scale["proxies"]))
        self.overrides = {
            dataset: self._dataset_overrides(dataset, section)
            for dataset, section in self._mapping(data.get("dataset_overrides") or {}, "dataset_overrides").items()
        }
        self.dataset_defaults = {
            dataset: self._dataset_defaults(dataset, section)
            for dataset, section in self._mapping(data.get("defaults_by_dataset") or {}, "defaults_by_dataset").items()
        }
        # A dataset's narrower range must still hold the default that dataset will use.
        for dataset in self.overrides:
            for name, spec in self.resolve(dataset).params.items():
                self._check_default(spec, spec.default, f"dataset_overrides.{dataset}.{name}: default")

    def _read(self):
        path = self.path
        try:
            data = yaml.safe_load(path.read_bytes().decode("utf-8"))
        except OSError as error:
            raise UserError(f"cannot read the search space {path}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise UserError(f"{path}: not UTF-8 text (byte {error.start}); expected a UTF-8 YAML file") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise UserError(f"{path}: malformed YAML{where}: {getattr(error, 'problem', error)}") from None
        except RecursionError:
            raise UserError(f"{path}: YAML nested too deeply; expected the flat layout of search_spaces/*.yaml") from None
        if not isinstance(data, dict):
            self._fail("expected a mapping with 'source' and 'params'")
        return data

    def resolve(self, dataset: str) -> SearchSpace:
        params = dict(self.overrides.get(dataset, self.params))
        for name, value in self.dataset_defaults.get(dataset, {}).items():
            params[name] = replace(params[name], default=value)
        return SearchSpace(loss=self.path.stem, dataset=dataset, params=params, source=self.source, path=self.path,
                           cosine_scale=self.cosine_scale)

    def _cosine_scale(self, section) -> dict | None:
        if section is None:
            return None
        section = self._mapping(section, "cosine_scale")
        self._no_unknown_keys(section, _COSINE_SCALE_KEYS, "cosine_scale: ")
        if section.get("parameter") not in self.params:
            self._fail(f"cosine_scale.parameter {section.get('parameter')!r} is not one of the params")
        factor = self._number(section.get("factor", 1), "float", "cosine_scale.factor")
        if not factor > 0:
            self._fail(f"cosine_scale.factor must be positive, got {factor:g}")
        flags = {"inverse": section.get("inverse", False), "proxies": section.get("proxies", True)}
        for key, value in flags.items():
            if not isinstance(value, bool):
                self._fail(f"cosine_scale.{key} must be true or false, got {value!r}")
        return {"parameter": section["parameter"], "factor": factor, **flags,
                "note": " ".join(str(section.get("note", "")).split())}

    def _schedule_params(self, proxies: bool) -> dict[str, ParamSpec]:
        """The shared schedule parameters (next to this file's folder, else the shipped ones); without class
        proxies, the schedules that read them are left out."""
        own = self.path.parent / SCHEDULE_FILE
        shared = _ScheduleFile(own if own.is_file() else default_directory() / SCHEDULE_FILE)
        copied = sorted(set(shared.params) & set(self.params))
        if copied:
            self._fail(f"params.{copied[0]}: defined once in {shared.path} for every loss with a cosine_scale; "
                       "remove it from this file")
        params = dict(shared.params)
        if not proxies:
            for name, spec in params.items():
                if spec.type == "categorical":
                    choices = tuple(c for c in spec.choices if str(c) not in shared.needs_proxies)
                    params[name] = replace(spec, choices=choices)
                    self._check_default(params[name], spec.default, f"{shared.path}: params.{name}.default")
        return params

    # -- validation ------------------------------------------------------------------------------------------
    def _fail(self, problem: str):
        raise UserError(f"{self.path}: {problem}")

    def _no_unknown_keys(self, given: dict, allowed: set, prefix: str) -> None:
        unknown = sorted(set(given) - allowed)
        if unknown:
            self._fail(f"{prefix}unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(allowed))}")

    def _mapping(self, value, where: str) -> dict:
        if not isinstance(value, dict):
            self._fail(f"{where}: expected a mapping, got {type(value).__name__}")
        odd = [key for key in value if not isinstance(key, str)]
        if odd:
            self._fail(f"{where}: key {odd[0]!r} is not a name; expected text keys")
        return value

    def _choices(self, choices, where: str) -> tuple:
        # Optuna stores only None, bool, int, float and str choices; a list or mapping would fail mid-study.
        if not isinstance(choices, list) or not choices:
            self._fail(f"{where}: choices must be a non-empty list")
        odd = [c for c in choices if not isinstance(c, _SCALARS)]
        if odd:
            self._fail(f"{where}: choice {odd[0]!r} is not a single value; expected text, numbers or true/false")
        return tuple(choices)

    def _param(self, name: str, spec) -> ParamSpec:
        where = f"params.{name}"
        spec = self._mapping(spec, where)
        self._no_unknown_keys(spec, _PARAM_KEYS, f"{where}: ")
        kind = spec.get("type")
        if kind not in TYPES:
            self._fail(f"{where}: type {kind!r} is not one of {', '.join(TYPES)}")
        if "default" not in spec:
            self._fail(f"{where}: missing 'default'")
        for key in ("log", "tune"):
            if key in spec and not isinstance(spec[key], bool):
                self._fail(f"{where}: {key} must be true or false, got {spec[key]!r}")
        common = dict(
            name=name,
            type=kind,
            tune=spec.get("tune", True),
            unit=spec.get("unit"),
            description=" ".join(str(spec.get("description", "")).split()),
        )
        if kind == "categorical":
            stray = sorted({"low", "high", "log", "domain"} & set(spec))
            if stray:
                self._fail(f"{where}: a categorical parameter takes 'choices', not {', '.join(stray)}")
            param = ParamSpec(choices=self._choices(spec.get("choices"), where), default=spec["default"], **common)
        else:
            if "choices" in spec:
                self._fail(f"{where}: only categorical parameters take 'choices'")
            for key in ("low", "high"):
                if key not in spec:
                    self._fail(f"{where}: missing '{key}'")
            log = spec.get("log", False)
            try:
                if "domain" in spec:
                    domain = Domain.parse(spec["domain"])
                else:
                    domain = Domain(0.0, math.inf) if log else Domain()
            except ValueError as error:
                self._fail(f"{where}: {error}")
            param = ParamSpec(
                low=self._number(spec["low"], kind, f"{where}.low"),
                high=self._number(spec["high"], kind, f"{where}.high"),
                log=log,
                domain=domain,
                default=self._number(spec["default"], kind, f"{where}.default"),
                **common,
            )
        self._check_range(param, where)
        self._check_default(param, param.default, f"{where}.default")
        return param

    def _number(self, value, kind: str, where: str) -> float | int:
        # YAML 1.1 reads "1e-6" (no dot) as a string; accept it rather than make every editor remember that.
        if isinstance(value, bool):
            self._fail(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            self._fail(f"{where}: expected a number, got {value!r}")
        except OverflowError:  # an integer beyond any float
            self._fail(f"{where}: expected a finite number, got {str(value)[:40]}...")
        if not math.isfinite(number):
            self._fail(f"{where}: expected a finite number, got {value!r}")
        if kind == "int":
            if not number.is_integer() or abs(number) > MAX_INT:
                self._fail(f"{where}: expected an integer of at most {MAX_INT} in magnitude, got {value!r}")
            return int(number)
        return number

    def _check_range(self, param: ParamSpec, where: str) -> None:
        if param.type == "categorical":
            if len(set(map(str, param.choices))) != len(param.choices):
                self._fail(f"{where}: choices repeat a value")
            return
        if param.low > param.high:
            self._fail(f"{where}: low {param.low:g} > high {param.high:g}")
        if param.log and param.low <= 0:
            self._fail(f"{where}: a log-scale range needs low > 0, got {param.low:g}")
        for bound in (param.low, param.high):
            if bound not in param.domain:
                self._fail(f"{where}: range [{param.low:g}, {param.high:g}] leaves the domain {param.domain}")

    def _check_default(self, param: ParamSpec, value, where: str) -> None:
        if param.type == "categorical":
            if value not in param.choices:
                self._fail(f"{where}: {value!r} is not one of the choices {list(param.choices)}")
        elif not param.tune:
            if value not in param.domain:
                self._fail(f"{where}: {value:g} is outside the domain {param.domain}")
        elif not param.low <= value <= param.high:
            self._fail(f"{where}: {value:g} is outside the range [{param.low:g}, {param.high:g}]")

    def _dataset_overrides(self, dataset: str, section) -> dict[str, ParamSpec]:
        params = dict(self.params)
        for name, change in self._mapping(section, f"dataset_overrides.{dataset}").items():
            where = f"dataset_overrides.{dataset}.{name}"
            if name not in params:
                self._fail(f"{where}: unknown parameter; expected one of {', '.join(params)}")
            change = self._mapping(change, where)
            self._no_unknown_keys(change, _OVERRIDE_KEYS, f"{where}: ")
            base = params[name]
            updates: dict[str, Any] = {}
            for key in ("low", "high"):
                if key in change:
                    updates[key] = self._number(change[key], base.type, f"{where}.{key}")
            for key in ("log", "tune"):
                if key in change:
                    if not isinstance(change[key], bool):
                        self._fail(f"{where}: {key} must be true or false, got {change[key]!r}")
                    updates[key] = change[key]
            if "choices" in change:
                updates["choices"] = self._choices(change["choices"], where)
            params[name] = replace(base, **updates)
            self._check_range(params[name], where)
        return params

    def _dataset_defaults(self, dataset: str, section) -> dict[str, float | int | str]:
        params = self.overrides.get(dataset, self.params)
        values = {}
        for name, value in self._mapping(section, f"defaults_by_dataset.{dataset}").items():
            where = f"defaults_by_dataset.{dataset}.{name}"
            if name not in params:
                self._fail(f"{where}: unknown parameter; expected one of {', '.join(params)}")
            spec = params[name]
            if spec.type != "categorical":
                value = self._number(value, spec.type, where)
            self._check_default(spec, value, where)
            values[name] = value
        return values


class _ScheduleFile(_SpaceFile):
    """``schedules/scale.yaml``: parameters validated like a loss's, plus the choices that need class proxies."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise UserError(f"scale-schedule file {path} does not exist; expected it in the search_spaces folder")
        data = self._read()
        self._no_unknown_keys(data, _SCHEDULE_FILE_KEYS, "")
        self.params = {name: self._param(name, spec) for name, spec in self._mapping(data.get("params"), "params").items()}
        needs = data.get("needs_proxies", [])
        if not isinstance(needs, list):
            self._fail(f"needs_proxies: expected a list of choices, got {type(needs).__name__}")
        self.needs_proxies = frozenset(map(str, needs))


def _override_from_text(spec: ParamSpec, text: str) -> ParamSpec:
    where = f"search range {spec.name}={text!r}"
    if spec.type == "categorical":
        choices = tuple(spec.parse(part) for part in text.split(",") if part.strip())
        if not choices:
            raise UserError(f"{where}: expected one or more of {', '.join(map(str, spec.choices))}")
        if len(choices) == 1:
            return replace(spec, tune=False, default=choices[0])
        return replace(spec, tune=True, choices=choices)
    parts = text.split(":")
    if len(parts) == 1:
        return replace(spec, tune=False, default=spec.parse(parts[0]))
    if len(parts) not in (2, 3):
        raise UserError(f"{where}: expected low:high, low:high:log or low:high:linear, or a single value")
    log = spec.log
    if len(parts) == 3:
        if parts[2] not in ("log", "linear"):
            raise UserError(f"{where}: the scale must be 'log' or 'linear', got {parts[2]!r}")
        log = parts[2] == "log"
    low, high = spec.parse(parts[0]), spec.parse(parts[1])
    if low > high:
        raise UserError(f"{where}: low {low:g} > high {high:g}")
    if log and low <= 0:
        raise UserError(f"{where}: a log-scale range needs low > 0")
    return replace(spec, tune=True, low=low, high=high, log=log)
