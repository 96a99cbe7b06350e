"""Start-up cost of the CLI: `benchmark --help`, every `COMMAND --help` and `evaluate` on a tiny input must not
import the heavy libraries (checked through sys.modules in a fresh interpreter, not by timing)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

HEAVY = ("optuna", "pandas", "sklearn", "scipy", "sqlalchemy", "plotly", "torch", "torchvision")


def _modules_after(code: str) -> set[str]:
    script = f"""
import contextlib, io, json, sys
from benchmark.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    {code}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_help_imports_no_heavy_library():
    code = """for argv in (['--help'], *([c, '--help'] for c in __import__('benchmark.cli').cli._COMMANDS)):
        try:
            main(argv)
        except SystemExit:
            pass"""
    loaded = _modules_after(code)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_evaluate_imports_no_heavy_library(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "e.npy", rng.normal(size=(30, 4)).astype(np.float32))
    np.save(tmp_path / "l.npy", np.arange(30) % 3)
    loaded = _modules_after(f"assert main(['evaluate', '--embeddings', r'{tmp_path / 'e.npy'}', "
                            f"'--labels', r'{tmp_path / 'l.npy'}']) == 0")
    assert "faiss" in loaded  # the command ran its search
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
