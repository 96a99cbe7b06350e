"""Where a result came from: package versions, the code's git commit, the device and the host.

Also the redaction helpers that keep database passwords out of everything stored, logged or printed.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

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
_HIDDEN = "***"
# scheme://user:password@host inside free text (a config value).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):[^@\s]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&][^=&\s]*(password|passwd|pwd)=)[^&\s]*", re.IGNORECASE)
# A URL make_url cannot parse (a typo such as "postgresql:/u:pw@h"): everything between the first ":" and
# the last "@" may be credentials.
_UNPARSED_CREDENTIALS = re.compile(r"^(?P<head>[^:]*:/*).*@")
_SECRET_KEY = re.compile(r"(^|_)(password|passwd|pwd|secret|token|api_?key)$", re.IGNORECASE)


def collect_provenance(device: str) -> dict:
    """Versions, git state, device, platform and host of this process, as a JSON-ready dict."""
    return {
        "python": platform.python_version(),
        "packages": _package_versions(),
        "cuda": _torch_cuda_version(),
        "git": _git_state(Path(benchmark.__file__).resolve().parent),
        "device": _describe_device(device),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),  # with the host, tells a run whose process died (killed, machine lost) from a live one
    }


def redact_url(url: str) -> str:
    """``url`` with its password (and password-like query arguments) replaced by ``***``."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return _UNPARSED_CREDENTIALS.sub(rf"\g<head>{_HIDDEN}@", url)
    secret_query = {key: _HIDDEN for key in parsed.query if _SECRET_KEY.search(key)}
    if secret_query:
        parsed = parsed.update_query_dict(secret_query)
    # render_as_string percent-encodes the query's "***".
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", _HIDDEN)


def redact_secrets(value):
    """A copy of a JSON-like ``value`` with URL passwords and values under password-like keys hidden."""
    if isinstance(value, dict):
        return {
            key: _HIDDEN if isinstance(key, str) and _SECRET_KEY.search(key) and item is not None
            else redact_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_secrets(item) for item in value]
    if isinstance(value, str) and "://" in value:
        value = _URL_PASSWORD.sub(rf"\g<head>:{_HIDDEN}@", value)
        return _QUERY_PASSWORD.sub(rf"\g<head>{_HIDDEN}", value)
    return value


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
