"""Values on their way into the results tables: metric dicts flattened, non-finite numbers as NULL, JSON that
PostgreSQL and SQLite both accept."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def flatten_metrics(metrics: Mapping) -> dict[str, float | None]:
    """``{"recall_at_k": {1: a, 2: b}, "r_precision": c}`` -> ``{"recall_at_1": a, "recall_at_2": b, "r_precision": c}``.

    Non-finite values become None (stored as NULL).
    """
    flat: dict[str, float | None] = {}
    for name, value in metrics.items():
        if isinstance(value, Mapping):
            if not name.endswith("_at_k"):
                raise ValueError(f"metric {name!r} has a mapping value; only <name>_at_k metrics may ({{k: value}})")
            items = {f"{name.removesuffix('k')}{k}": v for k, v in value.items()}
        else:
            items = {name: value}
        for flat_name, flat_value in items.items():
            if flat_name in flat:
                raise ValueError(f"metric {flat_name!r} given twice")
            flat[flat_name] = to_float(flat_value)
    return flat


def to_float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def int_or_none(value) -> int | None:
    return None if value is None else int(value)


def jsonable(value):
    # JSON has no NaN and no numpy types; PostgreSQL rejects NaN in json, SQLite would store invalid JSON.
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def json_dumps(value) -> str:
    return json.dumps(jsonable(value), allow_nan=False)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
