"""Free key/value facts about studies (``bm_meta``), e.g. the split hash a study was created on.

A part of ``ResultsStore`` (a mixin: the store's engine).
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from benchmark.results.schema import Meta

logger = logging.getLogger(__name__)


class MetaFacts:
    _engine: Engine

    def get_meta(self, key: str, default=None):
        with self._engine.connect() as conn:
            row = conn.execute(select(Meta.value).where(Meta.key == key)).first()
        return default if row is None else row[0]

    def set_meta(self, key: str, value) -> None:
        """Store ``value`` (any JSON value) under ``key``, replacing what was there."""
        for retry in (False, True):
            try:
                with self._engine.begin() as conn:
                    if conn.execute(update(Meta).where(Meta.key == key).values(value=value)).rowcount == 0:
                        conn.execute(insert(Meta).values(key=key, value=value))
                return
            except IntegrityError:
                # Another process inserted the key first; the retry updates it.
                if retry:
                    raise

    def setdefault_meta(self, key: str, value):
        """Store ``value`` under ``key`` unless a value is there already; return the stored value.

        The first writer wins, also across processes (e.g. the split hash a study was created on).
        """
        try:
            with self._engine.begin() as conn:
                row = conn.execute(select(Meta.value).where(Meta.key == key)).first()
                if row is not None:
                    return row[0]
                conn.execute(insert(Meta).values(key=key, value=value))
        except IntegrityError:
            logger.debug("meta key %s inserted concurrently", key)
        return self.get_meta(key)
