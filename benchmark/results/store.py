"""Writing results: one short transaction per write, so a crash never loses a result already recorded.

Any SQLAlchemy URL works; the default SQLite file is the one the Optuna study uses, next to Optuna's tables.
SQLite is opened in WAL mode with a long busy timeout and every write transaction starts with
``BEGIN IMMEDIATE``: several worker processes then queue for the write lock instead of failing with
"database is locked" (a deferred transaction that reads first and writes later fails at once instead of waiting).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import delete, insert, select, update

from benchmark.errors import UserError
from benchmark.evaluation.registry import METRICS
from benchmark.results.db import DEFAULT_STORAGE, make_engine, retry_creation, user_errors
from benchmark.results.migrate import migrate_validation_columns
from benchmark.results.run_extras import RunExtras
from benchmark.results.meta import MetaFacts
from benchmark.results.recording import RunRecord
from benchmark.results.values import flatten_metrics, int_or_none, json_dumps, jsonable, to_float, utc_now
from benchmark.redaction import redact_secrets, redact_url
from benchmark.results.schema import (
    RUN_KINDS,
    RUN_STATUSES,
    Base,
    EpochCurve,
    FoldResult,
    ProxyDiagnostic,
    Run,
    TestResult,
    ValidationMetric,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_STORAGE", "ResultsStore", "RunRecord", "flatten_metrics"]

_EPOCH_FIELDS = frozenset(
    column.name for column in EpochCurve.__table__.columns if column.name not in {"id", "run_id", "fold"}
)
# An epoch row's validation scores: val_<metric key>.
VAL_PREFIX = "val_"


class ResultsStore(RunExtras, MetaFacts):
    """The ``bm_*`` tables of one database; creates them on first use. Kept models, compute and retrieval examples
    (``run_extras``) and key/value facts (``meta``) are written by the mixins in their own modules."""

    def __init__(self, url: str = DEFAULT_STORAGE):
        self.url = redact_url(url)  # safe to log and print
        self._engine = make_engine(url, write=True, json_serializer=json_dumps)
        try:
            with user_errors(url, "cannot create the results tables in"):
                self.create_tables()
        except UserError:
            self._engine.dispose()
            raise

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def create_tables(self) -> None:
        """Create the missing ``bm_*`` tables; safe to call again and from several processes at once."""

        def create() -> None:
            with self._engine.begin() as conn:
                Base.metadata.create_all(conn, checkfirst=True)
                moved = migrate_validation_columns(conn)
            if moved:
                logger.info("moved %d validation metrics of an earlier version into bm_val_metrics", moved)

        retry_creation(create)

    # ---- runs -------------------------------------------------------------------------------------------------

    def start_run(
        self,
        kind: str,
        study_name: str,
        dataset: str,
        loss: str,
        protocol: str,
        params: dict,
        config: dict,
        seed: int,
        split_hash: str,
        provenance: dict,
        trial_number: int | None = None,
        reproduction: int | None = None,
    ) -> int:
        """Record a new run with status "running" and return its id."""
        values = _run_row(kind, study_name, dataset, loss, protocol, params, config, seed, split_hash, provenance,
                          trial_number, reproduction)
        with self._engine.begin() as conn:
            result = conn.execute(insert(Run).values(values))
        return int(result.inserted_primary_key[0])

    def claim_reproduction(self, count: int, seed_for: Callable[[int], int], study_name: str, dataset: str,
                           loss: str, protocol: str, **details) -> RunRecord | None:
        """Start a test run of the lowest reproduction below ``count`` that no completed or running test run of
        ``study_name`` holds, with the seed ``seed_for(reproduction)``; None when every one is taken.

        Choosing and inserting are one transaction under a write lock, so two ``benchmark test`` processes on one
        study train different reproductions, like two workers take different trials."""
        identity = {"study_name": study_name, "dataset": dataset, "loss": loss, "protocol": protocol}
        held = select(Run.reproduction).where(Run.study_name == study_name, Run.kind == "test",
                                              Run.status.in_(("complete", "running")), Run.reproduction.is_not(None))
        with self._engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE takes the write lock here
            dialect = conn.dialect.name
            if dialect == "postgresql":
                conn.exec_driver_sql(f"LOCK TABLE {Run.__tablename__} IN SHARE ROW EXCLUSIVE MODE")
            elif dialect != "sqlite":
                held = held.with_for_update()
            taken = {int(r) for r in conn.execute(held).scalars()}
            free = next((r for r in range(count) if r not in taken), None)
            if free is None:
                return None
            seed = int(seed_for(free))
            values = _run_row("test", **identity, seed=seed, reproduction=free, **details)
            run_id = int(conn.execute(insert(Run).values(values)).inserted_primary_key[0])
        return RunRecord(self, run_id, identity, reproduction=free, seed=seed, device=_device(details))

    @contextmanager
    def run(self, kind: str, study_name: str, dataset: str, loss: str, protocol: str, **details) -> Iterator[RunRecord]:
        """Record one run around the block: started on entry (``details``: the rest of ``start_run``'s arguments);
        inside, ``record.fold(result)`` per trained fold and ``record.finish(...)`` or ``record.test_metrics(...)``
        to close it. A run the block leaves open -- an exception, an interrupt -- is marked failed."""
        identity = {"study_name": study_name, "dataset": dataset, "loss": loss, "protocol": protocol}
        with RunRecord(self, self.start_run(kind, **identity, **details), identity,
                       device=_device(details)) as record:
            yield record

    def finish_run(self, run_id: int, status: str, objective: float | None = None) -> None:
        """Mark a run complete, failed or pruned, with its objective (mean validation MAP@R for a trial)."""
        _check_final_status(status)
        with self._engine.begin() as conn:
            _finish(conn, run_id, status, objective)

    def record_fold(
        self,
        run_id: int,
        fold: int,
        status: str,
        best_epoch: int | None,
        epochs_trained: int,
        seconds: float,
        val_metrics: Mapping,
    ) -> None:
        """Record (or replace) one fold's outcome and its best validation scores.

        ``val_metrics``: keys of the metric table (``benchmark.evaluation.registry.METRICS``), recall_at_k
        ({k: value}) or recall_at_<k>. An empty mapping (no validation happened) records no scores.
        """
        fold = int(fold)
        row = {"run_id": run_id, "fold": fold, "status": status, "best_epoch": int_or_none(best_epoch),
               "epochs_trained": int(epochs_trained), "seconds": float(seconds)}
        scores = _validation_rows(run_id, fold, None, val_metrics)
        with self._engine.begin() as conn:
            conn.execute(delete(FoldResult).where(FoldResult.run_id == run_id, FoldResult.fold == fold))
            conn.execute(delete(ValidationMetric).where(ValidationMetric.run_id == run_id,
                                                        ValidationMetric.fold == fold, ValidationMetric.epoch.is_(None)))
            conn.execute(insert(FoldResult).values(row))
            if scores:
                conn.execute(insert(ValidationMetric), scores)

    def record_epochs(self, run_id: int, fold: int, rows: Iterable[Mapping]) -> None:
        """Record (or replace) epochs of one fold.

        Each row: epoch (required), loss, lrs ({group: lr}), scale, seconds, and val_<metric> for the validation
        scores (``val_mean_average_precision_at_r``, ...); missing keys are NULL, None scores (epochs without
        validation) are not stored.
        """
        records, scores = [], []
        for row in rows:
            unknown = {key for key in row if not key.startswith(VAL_PREFIX)} - _EPOCH_FIELDS
            if unknown or "epoch" not in row:
                raise ValueError(f"epoch row keys {sorted(row)}: need 'epoch', may have {sorted(_EPOCH_FIELDS)} "
                                 f"and {VAL_PREFIX}<metric>")
            validation = {k.removeprefix(VAL_PREFIX): v for k, v in row.items() if k.startswith(VAL_PREFIX)}
            scores += _validation_rows(run_id, int(fold), int(row["epoch"]), validation)
            record = {field: None for field in _EPOCH_FIELDS}
            for field, value in row.items():
                if field.startswith(VAL_PREFIX):
                    continue
                if field == "epoch":
                    record[field] = int(value)
                elif field == "lrs":
                    record[field] = None if value is None else {str(k): to_float(v) for k, v in value.items()}
                else:
                    record[field] = to_float(value)
            records.append({"run_id": run_id, "fold": int(fold), **record})
        if not records:
            return
        epochs = [record["epoch"] for record in records]
        with self._engine.begin() as conn:
            conn.execute(
                delete(EpochCurve).where(
                    EpochCurve.run_id == run_id, EpochCurve.fold == int(fold), EpochCurve.epoch.in_(epochs)
                )
            )
            conn.execute(delete(ValidationMetric).where(
                ValidationMetric.run_id == run_id, ValidationMetric.fold == int(fold),
                ValidationMetric.epoch.in_(epochs)))
            conn.execute(insert(EpochCurve), records)
            if scores:
                conn.execute(insert(ValidationMetric), scores)

    # ---- test results -----------------------------------------------------------------------------------------

    def record_proxy_diagnostics(self, run_id: int, fold: int, rows: Iterable[Mapping]) -> None:
        """Record (or replace) the proxy-cosine summaries of one fold: rows of ``{"epoch": e, **summary}`` as
        ``benchmark.evaluation.proxy_diagnostics.proxy_cosine_summary`` returns them."""
        records = []
        for row in rows:
            summary = {k: v for k, v in row.items() if k not in {"epoch", "pairs", "mean", "variance"}}
            records.append({"run_id": run_id, "fold": int(fold), "epoch": int(row["epoch"]), "pairs": int(row["pairs"]),
                            "mean": to_float(row["mean"]), "variance": to_float(row["variance"]),
                            "summary": jsonable(summary)})
        if not records:
            return
        with self._engine.begin() as conn:
            conn.execute(delete(ProxyDiagnostic).where(
                ProxyDiagnostic.run_id == run_id, ProxyDiagnostic.fold == int(fold),
                ProxyDiagnostic.epoch.in_([r["epoch"] for r in records])))
            conn.execute(insert(ProxyDiagnostic), records)

    def record_test_metrics(
        self,
        run_id: int,
        study_name: str,
        dataset: str,
        loss: str,
        protocol: str,
        reproduction: int,
        seed: int,
        metrics: Mapping[str, Mapping],
    ) -> None:
        """Record a reproduction's test metrics, ``{mode: {metric: value}}``, and mark its run complete.

        Modes are "separated_128" and "concatenated_512"; ``recall_at_k`` ({1: v, 2: v}) is stored as
        recall_at_1, recall_at_2. All modes and the run's completion are one transaction, so a crash cannot
        leave half a reproduction. Recording again from the same run replaces its rows; recording a reproduction
        that another run completed raises ValueError.
        """
        if not metrics or not all(isinstance(values, Mapping) and values for values in metrics.values()):
            raise ValueError(f"test metrics must be {{mode: {{metric: value}}}}, got keys {sorted(metrics)}")
        reproduction = int(reproduction)
        rows = [
            {
                "run_id": run_id,
                "study_name": study_name,
                "dataset": dataset,
                "loss": loss,
                "protocol": protocol,
                "reproduction": reproduction,
                "seed": int(seed),
                "mode": mode,
                "metric": metric,
                "value": value,
            }
            for mode, values in metrics.items()
            for metric, value in flatten_metrics(values).items()
        ]
        same_reproduction = (TestResult.study_name == study_name, TestResult.reproduction == reproduction)
        with self._engine.begin() as conn:
            owner = conn.execute(
                select(Run.id)
                .join(TestResult, TestResult.run_id == Run.id)
                .where(*same_reproduction, Run.id != run_id, Run.status == "complete")
                .limit(1)
            ).first()
            if owner is not None:
                raise ValueError(
                    f"reproduction {reproduction} of study {study_name!r} was already completed by run {owner[0]}"
                )
            conn.execute(delete(TestResult).where(*same_reproduction))
            _finish(conn, run_id, "complete", None)
            conn.execute(insert(TestResult), rows)

    def completed_reproductions(self, study_name: str) -> set[int]:
        """Reproduction numbers of ``study_name`` whose test run completed."""
        with self._engine.connect() as conn:
            found = conn.execute(
                select(Run.reproduction).distinct().where(
                    Run.study_name == study_name,
                    Run.kind == "test",
                    Run.status == "complete",
                    Run.reproduction.is_not(None),
                )
            )
            return {int(value) for value in found.scalars()}

    def running_runs(self, study_name: str) -> list[dict]:
        """Runs of ``study_name`` still marked running: id, kind, trial number, reproduction, hostname and pid."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(Run.id, Run.kind, Run.trial_number, Run.reproduction, Run.provenance).where(
                    Run.study_name == study_name, Run.status == "running"
                )
            )
            return [{"run_id": row.id, "kind": row.kind, "trial_number": row.trial_number,
                     "reproduction": row.reproduction, "hostname": (row.provenance or {}).get("hostname"),
                     "pid": (row.provenance or {}).get("pid")} for row in rows]

    def mark_abandoned(self, run_ids: Iterable[int]) -> None:
        """Close runs whose process died mid-run as failed; one that finished in the meantime keeps its status."""
        ids = [int(run_id) for run_id in run_ids]
        if not ids:
            return
        with self._engine.begin() as conn:
            conn.execute(update(Run).where(Run.id.in_(ids), Run.status == "running")
                         .values(status="failed", finished_at=utc_now()))

# ---- rows --------------------------------------------------------------------------------------------------------


def _run_row(kind: str, study_name: str, dataset: str, loss: str, protocol: str, params: dict, config: dict,
             seed: int, split_hash: str, provenance: dict, trial_number: int | None = None,
             reproduction: int | None = None) -> dict:
    if kind not in RUN_KINDS:
        raise ValueError(f"run kind {kind!r} is not one of {RUN_KINDS}")
    return {
        "kind": kind,
        "study_name": study_name,
        "dataset": dataset,
        "loss": loss,
        "protocol": protocol,
        "trial_number": int_or_none(trial_number),
        "reproduction": int_or_none(reproduction),
        "seed": int(seed),
        "params": redact_secrets(params),
        "config": redact_secrets(config),
        "split_hash": split_hash,
        "provenance": redact_secrets(provenance),
        "status": "running",
        "created_at": utc_now(),
    }


def _validation_rows(run_id: int, fold: int, epoch: int | None, metrics: Mapping) -> list[dict]:
    rows = []
    for name, value in flatten_metrics(metrics).items():
        if name not in METRICS and not name.startswith("recall_at_"):
            raise ValueError(f"unknown validation metric {name!r}; expected one of {list(METRICS)} or recall_at_k")
        if value is not None or epoch is None:
            rows.append({"run_id": run_id, "fold": fold, "epoch": epoch, "metric": name, "value": value})
    return rows


def _finish(conn, run_id: int, status: str, objective) -> None:
    done = conn.execute(
        update(Run).where(Run.id == run_id).values(status=status, objective=to_float(objective), finished_at=utc_now())
    )
    if done.rowcount == 0:
        raise ValueError(f"no run with id {run_id}")


def _check_final_status(status: str) -> None:
    if status not in RUN_STATUSES or status == "running":
        raise ValueError(f"final run status {status!r} is not one of {[s for s in RUN_STATUSES if s != 'running']}")


def _device(details: dict) -> str:
    """The device a run trains on, as its provenance describes it (what bm_compute records)."""
    return str((details.get("provenance") or {}).get("device", "?"))


