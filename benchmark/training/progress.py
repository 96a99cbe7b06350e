"""Progress bars for trials / reproductions -> folds -> epochs, with elapsed time and ETA (tqdm).

Bars are drawn only when the command enables them (stderr is a terminal and ``--quiet`` is off); otherwise every
call here does nothing and the plain log lines (``trial 3/10``, ``fold 2 epoch 4: ...``) are the progress. tqdm
rather than our own: it already computes rates and ETAs and cooperates with ``logging`` (log lines are printed
above the bars instead of through them).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

_LEVELS = ("outer", "folds", "epochs")  # trials or reproductions, then folds, then epochs
_enabled = False


def enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def bars(enable: bool) -> Iterator[None]:
    """Draw bars inside the block when ``enable``; log records then go through tqdm.write."""
    global _enabled
    if not enable:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    _enabled = True
    try:
        with logging_redirect_tqdm():
            yield
    finally:
        _enabled = False


class Bar:
    """One level's bar; a no-op when bars are off."""

    def __init__(self, level: str, total: int, description: str, initial: int = 0):
        self._bar = None
        if _enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=description, position=_LEVELS.index(level),
                             leave=level == "outer", file=sys.stderr, dynamic_ncols=True,
                             bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining}]{postfix}")

    def update(self, step: int = 1, **postfix) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(step)

    def describe(self, description: str) -> None:
        if self._bar is not None:
            self._bar.set_description(description)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
