"""One search-space YAML file parsed and fully validated (``SpaceFile``), and the scale-schedule parameters that
every file with a ``cosine_scale`` gets from ``schedules/scale.yaml`` (``ScheduleFile``). Every problem is a
``UserError`` naming the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import UserError
from benchmark.search_space.model import MAX_INT, TYPES, Domain, ParamSpec, SearchSpace

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
_SCALARS = (str, int, float, bool)


class SpaceFile:
    """One parsed and fully validated file; every dataset section is checked, not only the one asked for."""

    def __init__(self, path: Path, shipped: Path):
        """``shipped``: the search-space folder whose ``schedules/scale.yaml`` counts when ``path``'s folder has none
        (a plugin's file, a file in a scratch folder)."""
        self.path = path
        self.shipped = shipped
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
        shared = ScheduleFile(own if own.is_file() else self.shipped / SCHEDULE_FILE)
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


class ScheduleFile(SpaceFile):
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
