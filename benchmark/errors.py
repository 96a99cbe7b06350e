"""The one exception type for bad input: the CLI prints its message on one line and exits 2."""


class UserError(Exception):
    """Input the user can fix (a wrong name, a missing file, a malformed value).

    The message must say what was wrong and what was expected, in one line.
    """
