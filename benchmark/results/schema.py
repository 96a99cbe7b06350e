"""Tables of the results database.

They usually share one database with the Optuna study, so every table name starts with ``bm_`` and the tables
live on their own ``MetaData``: creating or reading them never touches Optuna's tables.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_KINDS = ("trial", "run", "test")
RUN_STATUSES = ("running", "complete", "failed", "pruned")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Run(Base):
    """One training job: an Optuna trial, a single ``run``, or one test reproduction."""

    __tablename__ = "bm_runs"
    __table_args__ = (
        CheckConstraint(_one_of("kind", RUN_KINDS), name="kind"),
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
        Index(None, "study_name", "kind", "reproduction"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    study_name: Mapped[str] = mapped_column(String(255))
    dataset: Mapped[str] = mapped_column(String(64))
    loss: Mapped[str] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(64))
    trial_number: Mapped[int | None] = mapped_column(Integer)
    reproduction: Mapped[int | None] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict] = mapped_column(JSON)
    config: Mapped[dict] = mapped_column(JSON)
    split_hash: Mapped[str] = mapped_column(String(128))
    provenance: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    objective: Mapped[float | None] = mapped_column(Float)


class FoldResult(Base):
    """The outcome of one fold of a run: its best validation scores and how training ended."""

    __tablename__ = "bm_fold_results"
    __table_args__ = (UniqueConstraint("run_id", "fold"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("bm_runs.id", ondelete="CASCADE"))
    fold: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))  # "ok", "nonfinite_loss", "pruned", ...
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    epochs_trained: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)


class EpochCurve(Base):
    """One epoch of one fold: training loss, learning rates, scale (its validation scores: ``bm_val_metrics``)."""

    __tablename__ = "bm_epoch_curves"
    __table_args__ = (UniqueConstraint("run_id", "fold", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("bm_runs.id", ondelete="CASCADE"))
    fold: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    lrs: Mapped[dict | None] = mapped_column(JSON)  # {param group: lr}
    scale: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)


class ValidationMetric(Base):
    """One validation metric of one fold of a run, in long format like ``bm_test_results``: the fold's best
    validation (``epoch`` NULL; with ``bm_fold_results``) or one validated epoch's (with ``bm_epoch_curves``).

    A new metric is new rows, not a schema change. Databases written before this table kept these values in
    columns of those two tables; ``benchmark.results.migrate`` moves them here.
    """

    __tablename__ = "bm_val_metrics"
    __table_args__ = (Index(None, "run_id", "fold", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("bm_runs.id", ondelete="CASCADE"))
    fold: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int | None] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)


class ProxyDiagnostic(Base):
    """Cosine similarities between the class proxies of one fold at one validation (proxy losses only).

    Its own table rather than columns of ``bm_epoch_curves``: databases created before it gain it by
    ``create_all`` without a migration.
    """

    __tablename__ = "bm_proxy_diagnostics"
    __table_args__ = (UniqueConstraint("run_id", "fold", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("bm_runs.id", ondelete="CASCADE"))
    fold: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    pairs: Mapped[int] = mapped_column(Integer)
    mean: Mapped[float] = mapped_column(Float)
    variance: Mapped[float] = mapped_column(Float)
    summary: Mapped[dict] = mapped_column(JSON)  # min, max, quantiles, fixed-bin histogram over [-1, 1]


class TestResult(Base):
    """One test metric of one reproduction in one mode (long format).

    The unique key makes a resumed test unable to record a reproduction twice.
    """

    __tablename__ = "bm_test_results"
    __table_args__ = (UniqueConstraint("study_name", "reproduction", "mode", "metric"),)
    __test__ = False  # not a pytest test class despite the name

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("bm_runs.id", ondelete="CASCADE"), index=True)
    study_name: Mapped[str] = mapped_column(String(255))
    dataset: Mapped[str] = mapped_column(String(64))
    loss: Mapped[str] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(64))
    reproduction: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(32))  # "separated_128" | "concatenated_512"
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)  # NULL when the metric was not finite


class KeptModel(Base):
    """One fold model of a test reproduction kept in an artifact store (``test --keep-models``): where, and its
    sha256, checked when it is read back."""

    __tablename__ = "bm_models"
    __table_args__ = (UniqueConstraint("run_id", "fold"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("bm_runs.id", ondelete="CASCADE"), index=True)
    study_name: Mapped[str] = mapped_column(String(255), index=True)
    reproduction: Mapped[int] = mapped_column(Integer)
    fold: Mapped[int] = mapped_column(Integer)
    location: Mapped[str] = mapped_column(String(1024))  # an absolute folder, or s3://bucket/prefix
    artifact_id: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Compute(Base):
    """What a run cost: wall time and device of each fold (``fold`` = -1: the whole run, evaluation included);
    ``device_seconds`` is the CUDA time between the fold's first and last event, NULL on the CPU."""

    __tablename__ = "bm_compute"
    __table_args__ = (UniqueConstraint("run_id", "fold"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("bm_runs.id", ondelete="CASCADE"), index=True)
    fold: Mapped[int] = mapped_column(Integer)
    wall_seconds: Mapped[float] = mapped_column(Float)
    device: Mapped[str] = mapped_column(String(255))
    device_seconds: Mapped[float | None] = mapped_column(Float)


class RetrievalExample(Base):
    """One fixed test query of a reproduction and its nearest neighbours (concatenated-512 embedding), for the
    report's retrieval examples."""

    __tablename__ = "bm_retrieval_examples"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("bm_runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # the query's place among the fixed queries
    query_path: Mapped[str] = mapped_column(String(1024))
    query_label: Mapped[int] = mapped_column(Integer)
    neighbours: Mapped[list] = mapped_column(JSON)  # [{"path": p, "label": l, "similarity": s}, ...], nearest first


class Meta(Base):
    """Free key/value facts about studies, e.g. the split hash a study was created on."""

    __tablename__ = "bm_meta"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[object] = mapped_column(JSON)


TABLES = tuple(Base.metadata.sorted_tables)
