"""The search-space model: a parameter's range and domain (``ParamSpec``, ``Domain``) and one loss's search space on
one dataset (``SearchSpace``: defaults, typing of user values, command-line range overrides, Optuna sampling and the
fingerprint that identifies a study's search). Loading and validating the YAML files is ``files.py``'s.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmark.errors import UserError, did_you_mean

TYPES = ("float", "int", "categorical")
# Integer parameters become tensor sizes or loop counts: beyond int32 they overflow in torch, long before any use.
MAX_INT = 2**31 - 1
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


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
