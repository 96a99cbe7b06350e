"""Ctrl-C and SIGTERM as one interruption that cannot be lost.

The CLI's handlers raise KeyboardInterrupt (the running trial or reproduction is then recorded as failed and
re-queued). A KeyboardInterrupt raised while Python runs a finaliser, e.g. a DataLoader iterator's ``__del__``
shutting its workers down after a validation, is swallowed ("Exception ignored in ...") and the run would go on as if
nothing happened. So the handlers also set this flag, the training loop checks it at every step, and the swallowed
copy is not printed.
"""

from __future__ import annotations

import sys

_requested = False


def request() -> None:
    global _requested
    _requested = True


def requested() -> bool:
    return _requested


def raise_if_requested() -> None:
    if _requested:
        raise KeyboardInterrupt


def quiet_swallowed_interrupts() -> None:
    """Drop the "Exception ignored" report of an interruption swallowed by a finaliser (it is raised again at the
    next training step); every other unraisable exception is reported as before."""
    default = sys.unraisablehook

    def hook(unraisable):
        if _requested and isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        default(unraisable)

    sys.unraisablehook = hook
