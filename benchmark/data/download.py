"""Fetch, verify and unpack a dataset archive, atomically.

The archive is streamed to a temporary file next to the data root while its md5 and sha256 are computed; a
checksum mismatch deletes it. It is then unpacked into a temporary folder (refusing members that would land outside
it), the result is read with the dataset's own loader, and only then renamed to ``<data_root>/<name>``. Any failure
leaves the data root as it was.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from benchmark.data.registry import get_spec
from benchmark.errors import UserError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def download_dataset(name: str, data_root: Path, url: str | None = None, md5: str | None = None,
                     sha256: str | None = None) -> Path:
    """Download dataset ``name`` into ``<data_root>/<name>`` and return that folder.

    ``url`` replaces the registry's (a mirror); ``md5``/``sha256`` replace its checksum (e.g. for a re-packed archive).
    """
    spec = get_spec(name)
    if url is None and spec.download is None:
        raise UserError(f"{name} cannot be downloaded automatically: {spec.source}")
    if md5 is None and sha256 is None and spec.download is not None:
        md5, sha256 = spec.download.md5, spec.download.sha256
    url = url or spec.download.url
    data_root = Path(data_root).expanduser()
    target = data_root / name
    if target.exists():
        try:
            spec.load(data_root)
        except UserError as error:
            raise UserError(f"{target} exists but does not load ({error}); remove it to download again") from None
        logger.info("%s is already present in %s", name, target)
        return target

    data_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.download.", dir=data_root))
    try:
        archive = staging / "archive"
        _fetch(url, archive, md5, sha256)
        unpacked = staging / "root" / name
        unpacked.mkdir(parents=True)
        extract(archive, unpacked)
        archive.unlink()
        try:
            spec.load(staging / "root")
        except UserError as error:
            raise UserError(f"the archive from {url} does not hold {name} in the expected layout: {error}") from None
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("%s downloaded to %s", name, target)
    return target


def _fetch(url: str, destination: Path, md5: str | None, sha256: str | None) -> None:
    digests = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, reported = 0, 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                for digest in digests.values():
                    digest.update(chunk)
                done += len(chunk)
                if total and done * 10 // total > reported:
                    reported = done * 10 // total
                    logger.info("%s: %d%% of %.1f MB", url, reported * 10, total / 1e6)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise UserError(f"cannot download {url}: {getattr(error, 'reason', error)}") from None
    actual = {name: digest.hexdigest() for name, digest in digests.items()}
    expected = {"md5": md5, "sha256": sha256}
    for algorithm, value in expected.items():
        if value is not None and value.lower() != actual[algorithm]:
            raise UserError(f"checksum mismatch for {url}: {algorithm} is {actual[algorithm]}, expected {value.lower()}")
    if md5 is None and sha256 is None:
        logger.warning("no checksum is known for %s; accepted unverified (sha256 %s)", url, actual["sha256"])


def extract(archive: Path, destination: Path) -> None:
    """Unpack a tar (any compression) or zip archive into ``destination``, refusing members that escape it."""
    if tarfile.is_tarfile(archive):
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(destination, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise UserError(f"cannot unpack the downloaded archive: {error}") from None
    elif zipfile.is_zipfile(archive):
        root = destination.resolve()
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise UserError(f"refusing to unpack the downloaded archive: member {member!r} escapes the target folder")
            try:
                zf.extractall(destination)
            except (zipfile.BadZipFile, OSError) as error:
                raise UserError(f"cannot unpack the downloaded archive: {error}") from None
    else:
        raise UserError(f"the downloaded file is neither a tar nor a zip archive ({archive.stat().st_size} bytes)")
