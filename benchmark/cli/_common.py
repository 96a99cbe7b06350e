"""Arguments several subcommands share, so they are spelled and validated the same way everywhere."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

from benchmark.errors import UserError


def default_data_root() -> Path:
    """``$BENCHMARK_DATA_ROOT``, else the user cache directory (e.g. ~/.cache/benchmark/data)."""
    env = os.environ.get("BENCHMARK_DATA_ROOT")
    return Path(env) if env else Path(user_cache_dir("benchmark")) / "data"


def add_data_root(parser) -> None:
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding the datasets (default: $BENCHMARK_DATA_ROOT, else the user cache dir)",
    )


def data_root(args) -> Path:
    return args.data_root if args.data_root is not None else default_data_root()


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """``["alpha=32", "margin=0.1"]`` -> ``{"alpha": "32", "margin": "0.1"}`` (values are typed by the search space)."""
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise UserError(f"--param {pair!r} is not of the form name=value")
        params[key.strip()] = value.strip()
    return params
