"""Where a result came from: package versions, the code's git commit, the device and the host."""

from __future__ import annotations

import logging
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

import benchmark

logger = logging.getLogger(__name__)

# Distribution names; faiss ships under several (the first one installed is recorded).
_FAISS_DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-gpu", "faiss")
_DISTRIBUTIONS = (
    "dml-benchmark",
    "torch",
    "torchvision",
    "pytorch-metric-learning",
    "optuna",
    "numpy",
    "scipy",
    "sqlalchemy",
    "pandas",
)
_GIT_TIMEOUT_S = 10


def collect_provenance(device: str) -> dict:
    """Versions, git state, device, platform and host of this process, as a JSON-ready dict."""
    return {
        "python": platform.python_version(),
        "packages": _package_versions(),
        "cuda": _torch_cuda_version(),
        "git": _git_state(Path(benchmark.__file__).resolve().parent),
        "device": _describe_device(device),
        # CPU results depend on it: float reductions split over threads round differently.
        "torch_threads": _torch_threads(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),  # with the host, tells a run whose process died (killed, machine lost) from a live one
    }


def _package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    for name in _FAISS_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
            break
        except metadata.PackageNotFoundError:
            continue
    else:
        versions["faiss"] = None
    return versions


def _torch_cuda_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.version.cuda


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def _describe_device(device: str) -> str:
    """``cuda:0`` becomes ``cuda:0 (NVIDIA H100 80GB HBM3)``; anything else is kept as given."""
    if not device.startswith("cuda") or "(" in device:
        return device
    try:
        import torch

        index = torch.device(device).index
        name = torch.cuda.get_device_name(torch.cuda.current_device() if index is None else index)
    except (ImportError, RuntimeError, AssertionError, ValueError) as error:
        logger.debug("no name for device %s: %s", device, error)
        return device
    return f"{device} ({name})"


def _git_state(package_dir: Path) -> dict | None:
    """Commit and dirty flag of the checkout holding ``package_dir``; None unless the package is tracked there.

    Checking that the package is tracked keeps a site-packages install inside some other repository (a venv
    in a project folder) from reporting that project's commit.
    """
    tracked = _git(package_dir, "ls-files", "--", "__init__.py")
    commit = _git(package_dir, "rev-parse", "HEAD")
    status = _git(package_dir, "status", "--porcelain")
    if not tracked or commit is None or status is None:
        return None
    return {"commit": commit, "dirty": bool(status)}


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        logger.debug("git %s failed: %s", " ".join(args), error)
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip()
