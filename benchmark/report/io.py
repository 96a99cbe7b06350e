"""Atomic writes: a reader never sees half a report or half a baseline."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path

from benchmark.errors import UserError


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in ``path``'s folder, then rename it over ``path``.

    The temporary file is locked while it is written: one whose lock is free (its writer was killed) is removed by
    the next write to ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror}; expected a writable folder") from None
    _lock(fd)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # mkstemp creates the file private (0600); a report or baseline is meant to be shared like any output.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _lock(fd: int) -> bool | None:
    """An exclusive lock on ``fd``, released when the process ends however it ends; False if another holds it,
    None where there are no such locks (Windows: no stale-file detection)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_stale(path: Path) -> None:
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _lock(fd) is True:
                stale.unlink(missing_ok=True)  # nobody is writing it: a killed run's leftover
        finally:
            os.close(fd)
