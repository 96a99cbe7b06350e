"""``benchmark check``: compare current metrics with a committed baseline and flag regressions.

Current metrics come either from a storage's test results (``<study>/<mode>/<metric>``: mean and 95 % interval
over reproductions) or from a small fixed, seeded run on the synthetic dataset (``--run``; bit-reproducible on a
CPU; ``benchmark.training.fixed_run``). A metric regresses when it drops by more than the allowed margin: the larger of ``--tolerance`` and the
half-widths of the baseline's and the current 95 % intervals, where known. A baseline metric missing from the
current results is a regression too; a metric the baseline lacks is reported as new.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import UserError
from benchmark.report.io import write_atomically

logger = logging.getLogger(__name__)

FORMAT = 1
SOURCES = ("run", "storage")
DEFAULT_TOLERANCE = 0.005


@dataclass(frozen=True)
class Value:
    value: float
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def half_width(self) -> float:
        if self.ci_low is None or self.ci_high is None:
            return 0.0
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class Comparison:
    metric: str
    baseline: Value | None
    current: Value | None
    allowed: float
    verdict: str  # "ok", "improved", "REGRESSION", "missing", "new"

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current.value - self.baseline.value

    @property
    def failed(self) -> bool:
        return self.verdict in ("REGRESSION", "missing")


# ---- the baseline file ------------------------------------------------------------------------------------------


def load_baseline(path: Path) -> dict:
    """The baseline at ``path``, validated; anything malformed is a one-line UserError."""
    expected = ('expected {"format": 1, "source": "run"|"storage", "settings": {...}, '
                '"metrics": {name: {"value": number, "ci_low": number|null, "ci_high": number|null}}}')
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot read the baseline {path}: {error.strerror}") from None
    try:
        baseline = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"the baseline {path} is not JSON ({error.msg} at line {error.lineno}); {expected}") from None
    if not isinstance(baseline, dict) or baseline.get("format") != FORMAT or baseline.get("source") not in SOURCES:
        raise UserError(f"the baseline {path} has the wrong shape; {expected}")
    metrics = baseline.get("metrics")
    if not isinstance(metrics, dict) or not metrics or not isinstance(baseline.get("settings", {}), dict):
        raise UserError(f"the baseline {path} has no metrics; {expected}")
    for name, entry in metrics.items():
        if not isinstance(entry, dict) or not _number(entry.get("value")) \
                or not all(entry.get(k) is None or _number(entry.get(k)) for k in ("ci_low", "ci_high")):
            raise UserError(f"the baseline {path}: metric {name!r} is not {{\"value\": number, \"ci_low\": "
                            f"number|null, \"ci_high\": number|null}}")
    return baseline


def baseline_values(baseline: dict) -> dict[str, Value]:
    return {name: Value(float(e["value"]), _opt(e.get("ci_low")), _opt(e.get("ci_high")))
            for name, e in baseline["metrics"].items()}


def write_baseline(path: Path, source: str, settings: dict, values: dict[str, Value]) -> None:
    document = {
        "format": FORMAT,
        "source": source,
        "settings": settings,
        "metrics": {name: {"value": v.value, "ci_low": v.ci_low, "ci_high": v.ci_high}
                    for name, v in sorted(values.items())},
    }
    write_atomically(Path(path), json.dumps(document, indent=2, sort_keys=True) + "\n")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _opt(value) -> float | None:
    return None if value is None else float(value)


# ---- current values ---------------------------------------------------------------------------------------------


def storage_values(results_url: str) -> dict[str, Value]:
    """``<study>/<mode>/<metric>`` -> mean and 95 % interval over the test reproductions in the results database."""
    from benchmark.results import summarize_test_results

    summary = summarize_test_results(results_url)
    values = {}
    for r in summary.itertuples(index=False):
        if r.n == 0 or not math.isfinite(r.mean) or r.mode.startswith("untrained_"):  # the untrained models'
            continue
        low = r.ci_low if math.isfinite(r.ci_low) else None
        high = r.ci_high if math.isfinite(r.ci_high) else None
        values[f"{r.study_name}/{r.mode}/{r.metric}"] = Value(float(r.mean), low, high)
    return values


# ---- comparing --------------------------------------------------------------------------------------------------


def compare(baseline: dict[str, Value], current: dict[str, Value], tolerance: float) -> list[Comparison]:
    rows = []
    for name in sorted(set(baseline) | set(current)):
        base, now = baseline.get(name), current.get(name)
        allowed = max(tolerance, base.half_width if base else 0.0, now.half_width if now else 0.0)
        if base is None:
            verdict = "new"
        elif now is None:
            verdict = "missing"
        elif now.value < base.value - allowed:
            verdict = "REGRESSION"
        elif now.value > base.value + allowed:
            verdict = "improved"
        else:
            verdict = "ok"
        rows.append(Comparison(name, base, now, allowed, verdict))
    return rows


def format_table(rows: list[Comparison]) -> str:
    width = max([len("metric"), *(len(r.metric) for r in rows)])
    lines = [f"{'metric':<{width}}  {'baseline':>10}  {'current':>10}  {'delta':>10}  {'allowed':>8}  verdict"]
    for r in rows:
        base = "-" if r.baseline is None else f"{r.baseline.value:.6f}"
        now = "-" if r.current is None else f"{r.current.value:.6f}"
        delta = "-" if r.delta is None else f"{r.delta:+.6f}"
        lines.append(f"{r.metric:<{width}}  {base:>10}  {now:>10}  {delta:>10}  {r.allowed:>8.4f}  {r.verdict}")
    return "\n".join(lines)
