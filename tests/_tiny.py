"""Constants and helpers for tests that train: a tiny synthetic dataset and a few-step protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = str(Path(sys.executable).with_name("benchmark"))

# 40 classes x 8 images: 20 train+val classes (15 train / 5 val per fold), 20 test classes.
TINY_SYNTHETIC = "40x8"
# A handful of steps per fold: enough to exercise every code path, not to learn much.
TINY_PROTOCOL = ["--protocol", "quick", "--set", "iterations_per_epoch=2", "--set", "max_epochs=2",
                 "--set", "patience=2", "--device", "cpu"]


def run_benchmark(args: list[str], env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real console script, as a user runs it."""
    return subprocess.run([BENCHMARK, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def synthetic_config(size: str = TINY_SYNTHETIC):
    """The library's ``SyntheticConfig`` of a ``size`` (CLASSESxPER_CLASS) synthetic dataset."""
    from benchmark.data.synthetic import config_for_size

    return config_for_size(size)


def generate_synthetic(root: Path, size: str) -> Path:
    """Generate a ``size`` (CLASSESxPER_CLASS) synthetic dataset under ``root``, through the real loader."""
    from benchmark.data import get_dataset

    get_dataset("synthetic", root, synthetic_config(size))
    return root
