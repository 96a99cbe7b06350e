"""The one exception type for bad input: the CLI prints its message on one line and exits 2."""


class UserError(Exception):
    """Input the user can fix (a wrong name, a missing file, a malformed value).

    The message must say what was wrong and what was expected, in one line.
    """

    def __init__(self, message: str = "", *args):
        # A DataLoader worker's exception is re-raised in the main process as the same type built from the text
        # "Caught UserError in DataLoader worker process N.\nOriginal Traceback ...\n...UserError: <message>":
        # keep the original one-line message, not the worker's traceback.
        text = str(message)
        if text.startswith(f"Caught {type(self).__name__} ") and "Original Traceback" in text:
            last = text.rstrip().splitlines()[-1]
            text = last.split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(text, *args)


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to a mistyped ``word``, else ''."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=2, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)"


def out_of_space(error: BaseException | None) -> bool:
    """A write failed for want of space (a full disk or a quota): the work so far is kept and a rerun resumes."""
    import errno

    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
