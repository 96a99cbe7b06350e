"""Shared fixtures: a tiny synthetic dataset generated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from _tiny import TINY_SYNTHETIC, generate_synthetic


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("data"), TINY_SYNTHETIC)


@pytest.fixture
def tiny_env(tiny_data_root, monkeypatch) -> dict:
    """Environment (also applied in-process) pointing the CLI at the tiny synthetic dataset."""
    monkeypatch.setenv("BENCHMARK_DATA_ROOT", str(tiny_data_root))
    monkeypatch.setenv("BENCHMARK_SYNTHETIC_SIZE", TINY_SYNTHETIC)
    return dict(os.environ)
