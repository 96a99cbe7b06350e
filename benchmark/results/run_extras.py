"""What the results tables keep beside the metrics: kept fold models, compute cost, retrieval examples.

A part of ``ResultsStore`` (a mixin: the store's engine, one short transaction per write).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Engine, delete, insert, select

from benchmark.results.schema import Compute, KeptModel, RetrievalExample, TestResult
from benchmark.results.values import jsonable, to_float, utc_now

# The fold number of a run's own row in bm_compute: the whole trial or reproduction.
WHOLE_RUN = -1


class RunExtras:
    _engine: Engine

    def record_models(self, run_id: int, study_name: str, reproduction: int, location: str,
                      files: Iterable[Mapping]) -> None:
        """Record the kept fold models of one run: ``files`` of ``{"fold", "artifact_id", "sha256", "bytes"}``."""
        rows = [{"run_id": run_id, "study_name": study_name, "reproduction": int(reproduction), "location": location,
                 "fold": int(f["fold"]), "artifact_id": f["artifact_id"], "sha256": f["sha256"],
                 "bytes": int(f["bytes"]), "created_at": utc_now()} for f in files]
        with self._engine.begin() as conn:
            conn.execute(delete(KeptModel).where(KeptModel.run_id == run_id))
            if rows:
                conn.execute(insert(KeptModel), rows)

    def kept_models(self, study_name: str | None = None) -> list[dict]:
        """Kept fold models (of one study, or all) with the separated-128 test MAP@R of their reproduction."""
        score = (select(TestResult.value).where(TestResult.run_id == KeptModel.run_id,
                                                 TestResult.mode == "separated_128",
                                                 TestResult.metric == "mean_average_precision_at_r")
                 .limit(1).scalar_subquery())
        query = select(*KeptModel.__table__.columns, score.label("map_at_r")).order_by(
            KeptModel.study_name, KeptModel.reproduction, KeptModel.fold)
        if study_name is not None:
            query = query.where(KeptModel.study_name == study_name)
        with self._engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def forget_models(self, run_ids: Iterable[int]) -> None:
        ids = [int(i) for i in run_ids]
        if ids:
            with self._engine.begin() as conn:
                conn.execute(delete(KeptModel).where(KeptModel.run_id.in_(ids)))

    def record_compute(self, run_id: int, rows: Iterable[Mapping]) -> None:
        """Record (or replace) what a run cost: rows of ``{"fold" (-1: the whole run), "wall_seconds", "device",
        "device_seconds"}``."""
        records = [{"run_id": run_id, "fold": int(r["fold"]), "wall_seconds": float(r["wall_seconds"]),
                    "device": str(r["device"]), "device_seconds": to_float(r.get("device_seconds"))} for r in rows]
        if not records:
            return
        with self._engine.begin() as conn:
            conn.execute(delete(Compute).where(Compute.run_id == run_id,
                                               Compute.fold.in_([r["fold"] for r in records])))
            conn.execute(insert(Compute), records)

    def record_retrieval_examples(self, run_id: int, examples: Iterable[Mapping]) -> None:
        """Record (or replace) a run's retrieval examples: ``{"position", "query_path", "query_label",
        "neighbours"}`` each."""
        rows = [{"run_id": run_id, "position": int(e["position"]), "query_path": str(e["query_path"]),
                 "query_label": int(e["query_label"]), "neighbours": jsonable(e["neighbours"])} for e in examples]
        with self._engine.begin() as conn:
            conn.execute(delete(RetrievalExample).where(RetrievalExample.run_id == run_id))
            if rows:
                conn.execute(insert(RetrievalExample), rows)
