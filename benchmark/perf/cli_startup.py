"""Wall time of ``benchmark --help`` in a fresh interpreter against the interpreter starting with numpy alone (the
floor every command pays), alternating; and the heavy libraries it loaded (none expected)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

HEAVY = ("optuna", "pandas", "sklearn", "scipy", "sqlalchemy", "plotly", "torch", "torchvision")
_HELP = ("import contextlib, io, json, sys\nfrom benchmark.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):"
         "\n    try:\n        main(['--help'])\n    except SystemExit:\n        pass"
         "\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
_FLOOR = "import numpy"


def _wall(code: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def compare(repeats: int = 5) -> dict:
    seconds: dict[str, list[float]] = {"help": [], "python_numpy": []}
    loaded: list[str] = []
    for repeat in range(repeats):
        for name in ("help", "python_numpy") if repeat % 2 == 0 else ("python_numpy", "help"):
            wall, out = _wall(_HELP if name == "help" else _FLOOR)
            seconds[name].append(wall)
            if name == "help":
                loaded = json.loads(out.splitlines()[-1])
    return {
        "repeats": repeats, "help_seconds": statistics.median(seconds["help"]),
        "python_numpy_seconds": statistics.median(seconds["python_numpy"]),
        "seconds_all": {k: [round(v, 3) for v in vs] for k, vs in seconds.items()},
        "heavy_modules_loaded": sorted(set(loaded) & set(HEAVY)),
    }
