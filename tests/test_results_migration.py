"""A results database written by the version before bm_val_metrics (validation metrics in columns) is read as is
and migrated by the first writer, with the same values."""

from __future__ import annotations

import math
import sqlite3

from sqlalchemy import create_engine, inspect

from benchmark.results import ResultsStore, load_epoch_curves, load_fold_results

# The previous version's DDL of the three tables involved (bm_fold_results and bm_epoch_curves had val_* columns).
OLD_DDL = """
CREATE TABLE bm_runs (id INTEGER NOT NULL, kind VARCHAR(16) NOT NULL, study_name VARCHAR(255) NOT NULL,
  dataset VARCHAR(64) NOT NULL, loss VARCHAR(64) NOT NULL, protocol VARCHAR(64) NOT NULL, trial_number INTEGER,
  reproduction INTEGER, seed INTEGER NOT NULL, params JSON NOT NULL, config JSON NOT NULL,
  split_hash VARCHAR(128) NOT NULL, provenance JSON NOT NULL, status VARCHAR(16) NOT NULL,
  created_at DATETIME NOT NULL, finished_at DATETIME, objective FLOAT, CONSTRAINT pk_bm_runs PRIMARY KEY (id),
  CONSTRAINT ck_bm_runs_kind CHECK (kind IN ('trial', 'run', 'test')),
  CONSTRAINT ck_bm_runs_status CHECK (status IN ('running', 'complete', 'failed', 'pruned')));
CREATE TABLE bm_fold_results (id INTEGER NOT NULL, run_id INTEGER NOT NULL, fold INTEGER NOT NULL,
  status VARCHAR(32) NOT NULL, best_epoch INTEGER, epochs_trained INTEGER NOT NULL, seconds FLOAT NOT NULL,
  val_precision_at_1 FLOAT, val_r_precision FLOAT, val_map_at_r FLOAT, val_recall_at_k JSON,
  CONSTRAINT pk_bm_fold_results PRIMARY KEY (id), CONSTRAINT uq_bm_fold_results_run_id_fold UNIQUE (run_id, fold),
  CONSTRAINT fk_bm_fold_results_run_id_bm_runs FOREIGN KEY(run_id) REFERENCES bm_runs (id) ON DELETE CASCADE);
CREATE TABLE bm_epoch_curves (id INTEGER NOT NULL, run_id INTEGER NOT NULL, fold INTEGER NOT NULL,
  epoch INTEGER NOT NULL, loss FLOAT, val_precision_at_1 FLOAT, val_r_precision FLOAT, val_map_at_r FLOAT, lrs JSON,
  scale FLOAT, seconds FLOAT, CONSTRAINT pk_bm_epoch_curves PRIMARY KEY (id),
  CONSTRAINT uq_bm_epoch_curves_run_id_fold_epoch UNIQUE (run_id, fold, epoch),
  CONSTRAINT fk_bm_epoch_curves_run_id_bm_runs FOREIGN KEY(run_id) REFERENCES bm_runs (id) ON DELETE CASCADE);
INSERT INTO bm_runs VALUES (1, 'trial', 's', 'synthetic', 'contrastive', 'quick', 0, NULL, 7, '{}', '{}', 'h', '{}',
  'complete', '2026-01-01 00:00:00.000000', '2026-01-01 01:00:00.000000', 0.21);
INSERT INTO bm_fold_results VALUES (1, 1, 0, 'ok', 2, 3, 1.5, 0.6, 0.3, 0.21, '{"1": 0.6, "2": 0.8}');
INSERT INTO bm_fold_results VALUES (2, 1, 1, 'nonfinite_loss', NULL, 1, 0.5, NULL, NULL, NULL, NULL);
INSERT INTO bm_epoch_curves VALUES (1, 1, 0, 1, 0.9, NULL, NULL, NULL, '{"model": 0.001}', 20.0, 1.0);
INSERT INTO bm_epoch_curves VALUES (2, 1, 0, 2, 0.8, 0.6, 0.3, 0.21, '{"model": 0.001}', 20.0, 1.0);
"""
LEGACY = {"val_precision_at_1", "val_r_precision", "val_map_at_r", "val_recall_at_k"}


def _old_database(tmp_path) -> str:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_DDL)
    return f"sqlite:///{path}"


def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _assert_old_values_read(url: str) -> None:
    folds = load_fold_results(url)
    assert list(folds["fold"])[:2] == [0, 1]
    first = folds.iloc[0]
    assert (first["val_precision_at_1"], first["val_r_precision"], first["val_mean_average_precision_at_r"]) == (
        0.6, 0.3, 0.21)
    assert (first["val_recall_at_1"], first["val_recall_at_2"]) == (0.6, 0.8)
    assert math.isnan(folds.iloc[1]["val_mean_average_precision_at_r"])
    curves = load_epoch_curves(url)
    assert list(curves["train_loss"]) == [0.9, 0.8]
    assert math.isnan(curves.iloc[0]["val_mean_average_precision_at_r"])
    assert curves.iloc[1]["val_mean_average_precision_at_r"] == 0.21 and curves.iloc[1]["val_r_precision"] == 0.3


def test_old_database_is_read_without_writing_then_migrated_by_the_first_writer(tmp_path):
    url = _old_database(tmp_path)
    _assert_old_values_read(url)
    assert LEGACY <= _columns(url, "bm_fold_results")  # reading changed nothing

    ResultsStore(url).close()
    assert not LEGACY & (_columns(url, "bm_fold_results") | _columns(url, "bm_epoch_curves"))
    _assert_old_values_read(url)

    # Migrated once: a second writer moves nothing again, and new folds are recorded next to the old ones.
    with ResultsStore(url) as store:
        store.record_fold(1, 2, "ok", 1, 1, 1.0, {"mean_average_precision_at_r": 0.5})
    _assert_old_values_read(url)
    assert list(load_fold_results(url)["val_mean_average_precision_at_r"].fillna(-1)) == [0.21, -1, 0.5]
