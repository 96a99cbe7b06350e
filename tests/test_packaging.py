"""The package as pip builds it: every subpackage listed, the search spaces inside the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed():
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "benchmark").rglob("__init__.py")}
    mapped = {"benchmark.search_spaces", "benchmark.search_spaces.batch_samplers", "benchmark.search_spaces.schedules"}
    assert set(_setuptools()["packages"]) == found | mapped
    assert _setuptools()["package-dir"] == {"benchmark.search_spaces": "search_spaces"}


def test_the_wheel_carries_every_search_space(tmp_path):
    # Built from a copy: setuptools writes build/ and *.egg-info into the source folder.
    source = tmp_path / "src"
    for folder in ("benchmark", "search_spaces"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / file, source / file)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for space in (ROOT / "search_spaces").rglob("*.yaml"):
        assert f"benchmark/search_spaces/{space.relative_to(ROOT / 'search_spaces').as_posix()}" in names
    assert "benchmark/reference/mlrc_best_val_mapr.csv" in names
