"""Decode each image once: a resized uint8 copy on disk, plus an in-process memo.

JPEG decoding of full-size images dominates data loading at MLRC's sizes; with up to 1000 epochs, 4 folds and
50 trials per study it would be repeated thousands of times. Each image is therefore decoded once, resized so its
short side is ``resize`` with torchvision's antialiased ``Resize`` on the uint8 tensor (what the transform's own
``Resize(resize)`` would do, so that one becomes a no-op; ~3x faster than PIL's bilinear resize), and stored as
``<data_root>/.cache/<resize>/<kk>/<key>.npy`` where ``key`` hashes the absolute path, file size, mtime_ns,
``resize`` and the resize method: a changed file or another size gets a new entry. A path's key is computed once
per cache object (one stat, resolve and sha1 per image, not per access).

Sharing: the main process keeps recently used arrays in memory up to ``memo_bytes`` (SOP at 256 px would not fit
whole). DataLoader worker processes keep no memo of their own (8 workers would hold 8 copies): they memory-map the
``.npy`` files, so the operating system's page cache is the one in-memory copy all of them read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.errors import UserError

# Part of every key: entries written by the PIL-resizing version (pixel values differ by at most 1) are not mixed in.
_RESIZE_METHOD = "tv-antialias"

logger = logging.getLogger(__name__)

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def decode_image(path: Path) -> Image.Image:
    """The image at ``path`` as RGB; a file that cannot be decoded is a UserError naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except _DECODE_ERRORS as error:
        raise UserError(f"cannot decode image {path}: {error}") from None


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(width, height) with the short side ``short``, the long side truncated like torchvision's Resize."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


class DecodedImageCache:
    def __init__(self, data_root: Path | None, resize: int, memo_bytes: int = 1 << 30):
        """``data_root=None`` keeps the memo only (nothing written to disk)."""
        self.resize = resize
        self.directory = Path(data_root) / ".cache" / str(resize) if data_root is not None else None
        self.memo_bytes = memo_bytes
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_size = 0
        self._keys: dict[str, str] = {}
        self.decodes = 0  # image files decoded by this process (the expensive path)
        self.disk_hits = 0

    def __getstate__(self) -> dict:
        # DataLoader workers started by spawn get a copy without the (possibly large) memo.
        state = dict(self.__dict__)
        state["_memo"], state["_memo_size"] = OrderedDict(), 0
        return state

    def get(self, path: Path) -> np.ndarray:
        """The image as a read-only HxWx3 uint8 RGB array whose short side is ``resize``."""
        key = self._keys.get(str(path))
        if key is None:
            key = self._keys[str(path)] = self._key(Path(path))
        array = self._memo.get(key)
        if array is not None:
            self._memo.move_to_end(key)
            return array
        in_worker = _in_dataloader_worker()
        array = self._load(key, mmap=in_worker)
        if array is None:
            array = self._decode(Path(path))
            self._store(key, array)
        if in_worker:
            array.flags.writeable = False
        else:
            self._remember(key, array)
        return array

    def _key(self, path: Path) -> str:
        try:
            stat = path.stat()
        except OSError as error:
            raise UserError(f"cannot read image {path}: {error.strerror}") from None
        # File names are bytes to the OS and need not be UTF-8 (Python holds such bytes as surrogates): hash the bytes.
        ident = f"\0{stat.st_size}\0{stat.st_mtime_ns}\0{self.resize}\0{_RESIZE_METHOD}"
        return hashlib.sha1(os.fsencode(path.resolve()) + ident.encode()).hexdigest()

    def _file(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def _load(self, key: str, mmap: bool = False) -> np.ndarray | None:
        if self.directory is None:
            return None
        try:
            array = np.load(self._file(key), mmap_mode="r" if mmap else None)
        except (OSError, ValueError, EOFError):
            return None  # absent, or left unreadable by a crash: rebuilt below
        self.disk_hits += 1
        return array

    def _decode(self, path: Path) -> np.ndarray:
        import torch
        from torchvision.transforms.v2 import functional as F

        image = decode_image(path)
        self.decodes += 1
        width, height = resized_size(*image.size, self.resize)
        if (width, height) == image.size:
            return np.asarray(image, dtype=np.uint8)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
        return F.resize(pixels, [height, width], antialias=True).permute(1, 2, 0).contiguous().numpy()

    def _store(self, key: str, array: np.ndarray) -> None:
        if self.directory is None:
            return
        target = self._file(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        except OSError as error:
            self._give_up(error)
            return
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, array)
            os.replace(tmp, target)
        except OSError as error:  # a full disk (ENOSPC), a quota, the folder gone
            Path(tmp).unlink(missing_ok=True)
            self._give_up(error)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _give_up(self, error: OSError) -> None:
        """A read-only or full data root costs speed, not correctness: go on decoding into the memo only. One
        warning: the main process or the first DataLoader worker says it (the others meet the same disk)."""
        from torch.utils.data import get_worker_info

        worker = get_worker_info()
        log = logger.warning if worker is None or worker.id == 0 else logger.debug
        log("cannot write the image cache in %s (%s); continuing without it", self.directory,
            error.strerror or error)
        self.directory = None

    def _remember(self, key: str, array: np.ndarray) -> None:
        array.flags.writeable = False
        if array.nbytes > self.memo_bytes:
            return
        self._memo[key] = array
        self._memo_size += array.nbytes
        while self._memo_size > self.memo_bytes:
            _, old = self._memo.popitem(last=False)
            self._memo_size -= old.nbytes


def _in_dataloader_worker() -> bool:
    from torch.utils.data import get_worker_info

    return get_worker_info() is not None
