"""Databases written by earlier versions: validation metrics in columns -> ``bm_val_metrics`` rows.

Before the metric table, ``bm_fold_results`` and ``bm_epoch_curves`` held validation metrics in fixed columns
(``val_precision_at_1``, ``val_r_precision``, ``val_map_at_r``; folds also ``val_recall_at_k``, a JSON
``{k: value}``). A writer (``ResultsStore``) moves them into ``bm_val_metrics`` and drops the columns, in the
transaction that creates the tables; the read API, which never writes, reads them from the columns of a database no
writer has opened since.
"""

from __future__ import annotations

from sqlalchemy import JSON, Connection, Float, Integer, column, insert, inspect, select, table, text

from benchmark.evaluation.registry import OBJECTIVE
from benchmark.results.schema import EpochCurve, FoldResult, ValidationMetric

# Old column -> metric key.
LEGACY_COLUMNS = {"val_precision_at_1": "precision_at_1", "val_r_precision": "r_precision", "val_map_at_r": OBJECTIVE}
_LEGACY_RECALL = "val_recall_at_k"
# (table, whether its rows are epochs)
_TABLES = ((FoldResult.__tablename__, False), (EpochCurve.__tablename__, True))


def legacy_columns(conn: Connection) -> dict[str, list[str]]:
    """The old validation columns each table still has (none in a database of this version)."""
    inspector = inspect(conn)
    found = {}
    for name, _ in _TABLES:
        if inspector.has_table(name):
            present = {c["name"] for c in inspector.get_columns(name)}
            columns = [c for c in (*LEGACY_COLUMNS, _LEGACY_RECALL) if c in present]
            if columns:
                found[name] = columns
    return found


def legacy_validation_rows(conn: Connection, columns: dict[str, list[str]] | None = None) -> list[dict]:
    """``bm_val_metrics`` rows for the values held in the old columns; a NULL value (no validation) gives none."""
    columns = legacy_columns(conn) if columns is None else columns
    rows = []
    for name, epochs in _TABLES:
        if name not in columns:
            continue
        keys = [column("run_id", Integer), column("fold", Integer)] + ([column("epoch", Integer)] if epochs else [])
        values = [column(c, JSON if c == _LEGACY_RECALL else Float) for c in columns[name]]
        for row in conn.execute(select(table(name, *keys, *values))).mappings():
            where = {"run_id": row["run_id"], "fold": row["fold"], "epoch": row["epoch"] if epochs else None}
            for old in columns[name]:
                if row[old] is None:
                    continue
                if old == _LEGACY_RECALL:
                    rows += [{**where, "metric": f"recall_at_{k}", "value": v} for k, v in row[old].items()]
                else:
                    rows.append({**where, "metric": LEGACY_COLUMNS[old], "value": row[old]})
    return rows


def migrate_validation_columns(conn: Connection) -> int:
    """Move the old columns' values into ``bm_val_metrics`` and drop the columns; returns the rows moved.

    Runs inside the caller's transaction (after ``create_all``): a crash leaves the old schema whole, and another
    process migrating at the same moment fails its transaction and retries, finding nothing left to move."""
    columns = legacy_columns(conn)
    rows = legacy_validation_rows(conn, columns)
    if rows:
        conn.execute(insert(ValidationMetric), rows)
    for name, dropped in columns.items():
        for old in dropped:
            conn.execute(text(f"ALTER TABLE {name} DROP COLUMN {old}"))
    return len(rows)
