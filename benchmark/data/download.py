"""Fetch, verify and unpack a dataset archive, atomically.

The archive is streamed to a temporary file next to the data root while its md5 and sha256 are computed; a
checksum mismatch deletes it. It is then unpacked into a temporary folder (refusing members that would land outside
it), the result is read with the dataset's own loader, and only then renamed to ``<data_root>/<name>``. Any failure
leaves the data root as it was.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
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

    try:
        data_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.download.", dir=data_root))
    except OSError as error:
        raise UserError(f"cannot write into the data root {data_root}: {error.strerror}; expected a writable folder "
                        "(--data-root or $BENCHMARK_DATA_ROOT)") from None
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
    except http.client.IncompleteRead as error:
        raise UserError(f"the download of {url} ended early: {len(error.partial)} more bytes, "
                        f"{error.expected} missing; try again") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise UserError(f"cannot download {url}: {getattr(error, 'reason', error)}") from None
    if total and done != total:
        # A connection closed early is not always an error to urllib; the server said how much to expect.
        raise UserError(f"the download of {url} ended early: {done} of {total} bytes (Content-Length); try again")
    actual = {name: digest.hexdigest() for name, digest in digests.items()}
    expected = {"md5": md5, "sha256": sha256}
    for algorithm, value in expected.items():
        if value is not None and value.lower() != actual[algorithm]:
            raise UserError(f"checksum mismatch for {url}: {algorithm} is {actual[algorithm]}, expected {value.lower()}")
    if md5 is None and sha256 is None:
        logger.warning("no checksum is known for %s; accepted unverified (sha256 %s)", url, actual["sha256"])


def extract(archive: Path, destination: Path) -> None:
    """Unpack a tar (any compression) or zip archive into ``destination``, refusing members that escape it.

    A truncated or corrupt archive is a one-line UserError, whichever layer notices (tar, gzip, zlib, zip)."""
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                tar.extractall(destination, filter="data")
        elif zipfile.is_zipfile(archive):
            _extract_zip(archive, destination)
        else:
            raise UserError(f"the downloaded file is neither a tar nor a zip archive ({archive.stat().st_size} bytes)")
    except tarfile.FilterError as error:
        raise UserError(f"cannot unpack the downloaded archive: {error}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError, NotImplementedError,
            RuntimeError) as error:
        # EOFError/zlib.error: a truncated or damaged .tgz; BadZipFile: a damaged zip (also a bad CRC);
        # NotImplementedError/RuntimeError: a zip compression method or encryption Python cannot read.
        raise UserError(f"cannot unpack the downloaded archive (truncated or corrupt?): "
                        f"{type(error).__name__}: {error}") from None


def _extract_zip(archive: Path, destination: Path) -> None:
    root = destination.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            if not (root / member).resolve().is_relative_to(root):
                raise UserError(f"refusing to unpack the downloaded archive: member {member!r} escapes the target "
                                "folder")
        zf.extractall(destination)
