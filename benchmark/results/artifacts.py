"""Kept fold models: files in an Optuna artifact store, their location and sha256 in the results database.

Optuna's artifact-store API (``optuna.artifacts``) gives one interface for a local folder
(``FileSystemArtifactStore``) and an S3-compatible bucket (``Boto3ArtifactStore``, for many machines; needs
``boto3``). Its ``upload_artifact`` ties a file to an Optuna trial or study, which a test reproduction is not (a
fixed-parameter test has no study at all), so we use the stores' ``write``/``open_reader`` directly and keep our own
record in ``bm_models``.

A kept file is a plain dict loadable with ``torch.load(..., weights_only=True)``: ``trunk`` and ``embedder`` (state
dicts) and ``meta`` (study, loss, dataset, reproduction, fold, protocol settings, split scheme, hyperparameters).
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

from benchmark.errors import UserError

KEEP_MODES = ("none", "best", "all")


def default_location(results_url: str) -> str:
    """``models/`` next to a SQLite results file, else ``results/models``."""
    if results_url.startswith("sqlite:///") and ":memory:" not in results_url:
        return str(Path(results_url.removeprefix("sqlite:///").split("?")[0]).resolve().parent / "models")
    return str(Path("results/models").resolve())


def open_store(location: str):
    """The artifact store at ``location``: a folder (created if missing) or ``s3://bucket[/prefix]``."""
    import optuna.artifacts

    if location.startswith("s3://"):
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        try:
            store = optuna.artifacts.Boto3ArtifactStore(bucket)
        except ImportError:
            raise UserError(f"--models {location} needs boto3 (pip install boto3); or give a folder") from None
        return _Prefixed(store, prefix) if prefix else store
    folder = Path(location)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the model folder {folder}: {error.strerror}") from None
    return optuna.artifacts.FileSystemArtifactStore(folder)


class _Prefixed:
    """An artifact store whose ids live under ``prefix/`` (S3 keys may hold slashes)."""

    def __init__(self, store, prefix: str):
        self.store, self.prefix = store, prefix.strip("/")

    def write(self, artifact_id, body):
        self.store.write(f"{self.prefix}/{artifact_id}", body)

    def open_reader(self, artifact_id):
        return self.store.open_reader(f"{self.prefix}/{artifact_id}")

    def remove(self, artifact_id):
        self.store.remove(f"{self.prefix}/{artifact_id}")


def artifact_id(study: str, reproduction: int, fold: int) -> str:
    # Flat, filesystem- and S3-safe names (FileSystemArtifactStore creates no sub-folders); study names may hold
    # brackets, '=' and ','.
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study)
    return f"{safe}--rep{reproduction}--fold{fold}.pt"


def fold_model_file(model_state: dict, meta: dict) -> bytes:
    """The bytes of a kept fold model: the EmbeddingModel's state split into trunk and embedder, plus ``meta``."""
    import torch

    parts = {"trunk": {}, "embedder": {}}
    for key, value in model_state.items():
        owner, _, name = key.partition(".")
        parts[owner][name] = value
    buffer = io.BytesIO()
    torch.save({**parts, "meta": meta}, buffer)
    return buffer.getvalue()


def write(store, artifact: str, content: bytes) -> str:
    """Write ``content`` as ``artifact``; returns its sha256."""
    store.write(artifact, io.BytesIO(content))
    return hashlib.sha256(content).hexdigest()


def read_fold_model(location: str, artifact: str, sha256: str) -> dict:
    """A kept fold model, checked against the sha256 recorded when it was written; loaded without running pickled
    code."""
    import optuna.artifacts
    import torch

    try:
        with open_store(location).open_reader(artifact) as reader:
            content = reader.read()
    except optuna.artifacts.exceptions.ArtifactNotFound:
        raise UserError(f"kept model {artifact} is missing from {location}") from None
    if hashlib.sha256(content).hexdigest() != sha256:
        raise UserError(f"kept model {artifact} in {location} does not match its recorded sha256 (changed or "
                        "truncated); rerun `benchmark test` to retrain it")
    return torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)


def remove(location: str, artifact: str) -> None:
    import optuna.artifacts

    try:
        open_store(location).remove(artifact)
    except optuna.artifacts.exceptions.ArtifactNotFound:
        pass  # already gone: the goal of removing it
