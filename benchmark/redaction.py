"""Keeping database passwords out of everything the benchmark prints, logs, writes or stores.

One function, :func:`redact`, hides secrets in free text; every output goes through it: the CLI's error line, every
log record (a filter on the handler), the HTML/Markdown/CSV/LaTeX report, the baseline file and the JSON stored with
each run (:func:`redact_secrets`). :func:`redact_url` is the same for a single URL, parsed where it can be.
"""

from __future__ import annotations

import logging
import re

HIDDEN = "***"
_SECRET_WORDS = r"password|passwd|pwd|secret|token|api_?key|access_?key"
# A key naming a secret: "password", "db_password", "apiKey", "PGPASSWORD".
_SECRET_KEY = re.compile(rf"({_SECRET_WORDS})$", re.IGNORECASE)
# scheme://user:password@host: the password runs to the last "@" before whitespace or a quote (a password may
# contain "@" when the user forgot to percent-encode it; then the host is after the last one).
_URL_PASSWORD = re.compile(r"(?P<head>(?:[A-Za-z][A-Za-z0-9+.\-]*)?:/+[^:/@\s'\"<>]*):[^\s'\"<>]*@")
# password=... as a URL query argument (?password=, &sslpassword=), a libpq key/value string (password=x host=y)
# or an environment assignment (PGPASSWORD=x).
_KEY_VALUE = re.compile(rf"(?P<head>\b[\w.-]*({_SECRET_WORDS})\s*(=|%3D)\s*)(?P<value>[^&\s;'\"<>,]+)",
                        re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every URL password and every ``password=value`` (and the like) replaced by ``***``."""
    if not isinstance(text, str) or not text:
        return text
    text = _URL_PASSWORD.sub(rf"\g<head>:{HIDDEN}@", text)
    return _KEY_VALUE.sub(rf"\g<head>{HIDDEN}", text)


def redact_url(url: str) -> str:
    """``url`` with its password and password-like query arguments replaced by ``***``."""
    # Imported here: the CLI loads this module at start-up, before it knows whether a database is involved.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return redact(url)
    if parsed.password is None and not any(_SECRET_KEY.search(key) for key in parsed.query):
        return redact(url)  # nothing to hide the parser knows of; keep the URL as the user wrote it
    secret_query = {key: HIDDEN for key in parsed.query if _SECRET_KEY.search(key)}
    if secret_query:
        parsed = parsed.update_query_dict(secret_query)
    # render_as_string percent-encodes the query's "***".
    return redact(parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", HIDDEN))


def redact_secrets(value):
    """A copy of a JSON-like ``value`` with secrets in strings and the values under password-like keys hidden."""
    if isinstance(value, dict):
        return {
            key: HIDDEN if isinstance(key, str) and _SECRET_KEY.search(key) and item is not None
            else redact_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_secrets(item) for item in value]
    if isinstance(value, str):
        return redact(value)
    return value


class RedactingFilter(logging.Filter):
    """Redacts each record's message (arguments included) and its traceback text before a handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback here, redacted; the formatter then reuses exc_text instead of formatting it.
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True
