"""Reading results into pandas, and the mean ± 95 % t-interval MLRC reports over reproductions.

Every loader takes a storage URL (the same one the study was run with). A database without the ``bm_*`` tables
gives empty frames with the usual columns; a missing SQLite file is a UserError rather than a new empty file.
JSON columns (params, config, provenance, lrs) hold dicts; their keys are strings. Fold results and epoch curves
carry their validation scores as ``val_<metric>`` columns (``val_mean_average_precision_at_r``, ``val_recall_at_1``,
...): one per metric of the metric table, plus any other stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats
from sqlalchemy import Connection, DateTime, Float, Integer, Select, inspect, select

from benchmark.evaluation.registry import METRICS
from benchmark.results.db import make_engine, user_errors
from benchmark.results.migrate import legacy_validation_rows
from benchmark.results.schema import (
    Compute,
    EpochCurve,
    FoldResult,
    KeptModel,
    ProxyDiagnostic,
    RetrievalExample,
    Run,
    TestResult,
    ValidationMetric,
)

SUMMARY_KEYS = ["dataset", "loss", "protocol", "study_name", "mode", "metric"]
SUMMARY_COLUMNS = [*SUMMARY_KEYS, "n", "mean", "ci_low", "ci_high"]

# The run's identity, joined onto fold results and epoch curves.
_RUN_IDENTITY = (
    Run.kind,
    Run.study_name,
    Run.dataset,
    Run.loss,
    Run.protocol,
    Run.trial_number,
    Run.reproduction,
    Run.seed,
    Run.status.label("run_status"),
)


def mean_and_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval of the finite ``values`` (MLRC's way of reporting reproductions).

    One value gives a NaN interval; identical values give the zero-width interval scipy cannot (scale 0).
    """
    finite = np.asarray([v for v in values if v is not None], dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(finite.mean())
    if finite.size == 1:
        return mean, math.nan, math.nan
    sem = float(stats.sem(finite))
    if sem == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, finite.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def learned(values: Iterable[float], untrained: Iterable[float]) -> bool:
    """Did training help? True only when the 95 % t-interval of ``values`` lies entirely above the mean of
    ``untrained`` (the same models before training); with fewer than 2 values nothing is clearly above."""
    _, low, _ = mean_and_ci(values)
    base = [v for v in untrained if v is not None and math.isfinite(v)]
    return bool(base) and math.isfinite(low) and low > float(np.mean(base))


def load_runs(storage: str) -> pd.DataFrame:
    """One row per run (trial, run or test reproduction)."""
    return _load(storage, select(Run).order_by(Run.id))


def load_fold_results(storage: str) -> pd.DataFrame:
    """One row per fold of a run, with the run's identity columns and its status as ``run_status``."""
    statement = (
        select(*FoldResult.__table__.columns, *_RUN_IDENTITY)
        .join(Run, Run.id == FoldResult.run_id)
        .order_by(FoldResult.run_id, FoldResult.fold)
    )
    return _load(storage, statement, validation=["run_id", "fold"])


def load_epoch_curves(storage: str) -> pd.DataFrame:
    """One row per epoch of a fold of a run, with the run's identity columns.

    The epoch's training loss is the column ``train_loss``: ``loss`` names the loss function, as in every frame.
    """
    epoch_columns = [
        column.label("train_loss") if column.name == "loss" else column for column in EpochCurve.__table__.columns
    ]
    statement = (
        select(*epoch_columns, *_RUN_IDENTITY)
        .join(Run, Run.id == EpochCurve.run_id)
        .order_by(EpochCurve.run_id, EpochCurve.fold, EpochCurve.epoch)
    )
    return _load(storage, statement, validation=["run_id", "fold", "epoch"])


def load_proxy_diagnostics(storage: str) -> pd.DataFrame:
    """One row per validation of a fold of a run of a proxy loss: proxy-cosine pairs, mean, variance and the
    ``summary`` dict (min, max, quantiles, histogram), with the run's identity columns."""
    statement = (
        select(*ProxyDiagnostic.__table__.columns, *_RUN_IDENTITY)
        .join(Run, Run.id == ProxyDiagnostic.run_id)
        .order_by(ProxyDiagnostic.run_id, ProxyDiagnostic.fold, ProxyDiagnostic.epoch)
    )
    return _load(storage, statement, tables=(Run, ProxyDiagnostic))


def load_kept_models(storage: str) -> pd.DataFrame:
    """The kept fold models (``test --keep-models``): one row per file with its location, sha256 and size."""
    return _load(storage, select(KeptModel).order_by(KeptModel.study_name, KeptModel.reproduction, KeptModel.fold),
                 tables=(KeptModel,))


def load_compute(storage: str) -> pd.DataFrame:
    """What runs cost: one row per fold (``fold`` = -1: the whole run) with wall seconds, device and CUDA
    device-seconds, the run's identity, objective and times."""
    statement = (
        select(*Compute.__table__.columns, *_RUN_IDENTITY, Run.objective, Run.created_at, Run.finished_at)
        .join(Run, Run.id == Compute.run_id)
        .order_by(Compute.run_id, Compute.fold)
    )
    return _load(storage, statement, tables=(Run, Compute))


def load_retrieval_examples(storage: str) -> pd.DataFrame:
    """The stored retrieval examples of completed test reproductions: one row per fixed query, ``neighbours`` a
    list of ``{"path", "label", "similarity"}``, nearest first."""
    statement = (
        select(*RetrievalExample.__table__.columns, *_RUN_IDENTITY)
        .join(Run, Run.id == RetrievalExample.run_id)
        .where(Run.status == "complete")
        .order_by(RetrievalExample.run_id, RetrievalExample.position)
    )
    return _load(storage, statement, tables=(Run, RetrievalExample))


def load_test_results(storage: str, complete_only: bool = True) -> pd.DataFrame:
    """Test metrics in long format (one row per reproduction, mode and metric) with the run's columns.

    ``complete_only`` keeps only reproductions whose run completed (a crashed one may have left some modes).
    """
    statement = (
        select(
            *TestResult.__table__.columns,
            Run.kind,
            Run.trial_number,
            Run.params,
            Run.config,
            Run.split_hash,
            Run.provenance,
            Run.status.label("run_status"),
            Run.created_at,
            Run.finished_at,
        )
        .join(Run, Run.id == TestResult.run_id)
        .order_by(TestResult.study_name, TestResult.reproduction, TestResult.mode, TestResult.metric)
    )
    if complete_only:
        statement = statement.where(Run.status == "complete")
    return _load(storage, statement)


def summarize_test_results(storage: str) -> pd.DataFrame:
    """Mean and 95 % t-interval over reproductions, one row per (dataset, loss, protocol, study, mode, metric).

    ``n`` counts the reproductions with a finite value.
    """
    results = load_test_results(storage)
    rows = []
    for key, group in results.groupby(SUMMARY_KEYS, sort=True):
        values = group["value"].to_numpy(dtype=float)
        mean, low, high = mean_and_ci(values)
        rows.append((*key, int(np.isfinite(values).sum()), mean, low, high))
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return summary.astype({"n": "int64", "mean": "float64", "ci_low": "float64", "ci_high": "float64"})


def _load(storage: str, statement: Select, tables: tuple = (Run,), validation: list[str] | None = None) -> pd.DataFrame:
    """The rows of ``statement``; with ``validation`` (the key columns: run_id, fold[, epoch]) joined with their
    validation scores as ``val_<metric>`` columns."""
    engine = make_engine(storage, write=False)
    try:
        with user_errors(storage, "cannot read the results database"), engine.connect() as conn:
            # The tables are created together, in one transaction; a table added in a later version appears in an
            # older database the first time a writer opens it.
            present = all(inspect(conn).has_table(table.__tablename__) for table in tables)
            rows = conn.execute(statement).all() if present else []
            scores = _validation_scores(conn, by_epoch="epoch" in validation) if validation and rows else []
    finally:
        engine.dispose()
    frame = _frame(rows, statement)
    return frame if validation is None else _with_validation(frame, scores, validation)


def _validation_scores(conn: Connection, by_epoch: bool) -> list[dict]:
    stored = []
    if inspect(conn).has_table(ValidationMetric.__tablename__):
        epoch = ValidationMetric.epoch.is_not(None) if by_epoch else ValidationMetric.epoch.is_(None)
        found = conn.execute(select(ValidationMetric.run_id, ValidationMetric.fold, ValidationMetric.epoch,
                                    ValidationMetric.metric, ValidationMetric.value).where(epoch))
        stored = [dict(row) for row in found.mappings()]
    # A database of an earlier version that no writer has migrated yet.
    legacy = [row for row in legacy_validation_rows(conn) if (row["epoch"] is not None) == by_epoch]
    return stored + legacy


def _with_validation(frame: pd.DataFrame, scores: list[dict], keys: list[str]) -> pd.DataFrame:
    metrics = [*METRICS, *sorted({score["metric"] for score in scores} - set(METRICS))]
    by_key: dict[tuple, dict] = {}
    for score in scores:
        by_key.setdefault(tuple(int(score[k]) for k in keys), {})[score["metric"]] = score["value"]
    found = [by_key.get(tuple(int(v) for v in row), {}) for row in frame[keys].itertuples(index=False)]
    columns = {f"val_{metric}": pd.Series([f.get(metric) for f in found], index=frame.index, dtype="float64")
               for metric in metrics}
    return frame.assign(**columns)


def _frame(rows: list, statement: Select) -> pd.DataFrame:
    columns = list(statement.selected_columns)
    frame = pd.DataFrame([tuple(row) for row in rows], columns=[column.key for column in columns])
    for column in columns:
        name = column.key
        if isinstance(column.type, Float):
            frame[name] = frame[name].astype("float64")
        elif isinstance(column.type, Integer):
            frame[name] = frame[name].astype("Int64")
        elif isinstance(column.type, DateTime):
            frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame
