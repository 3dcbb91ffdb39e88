"""The ``predict`` job kind: one metanetwork's answer for one stored checkpoint.

Jobs for the same metanetwork are micro-batched by the runner (``run_batch``): a worker
answers up to ``max_batch`` of them with one forward pass, and each job still finishes, and
writes its one prediction row, through its own guarded transaction (``persist``).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from app.blobs import BlobStore
from app.jobs.kind import BatchOutcome, JobContext, JobKind
from app.models import Checkpoint, Prediction
from app.predictions.checks import check_prediction
from app.settings import Settings


class PredictParams(BaseModel):
    checkpoint_id: int
    metanetwork: str = Field(min_length=1, max_length=128)
    force: bool = Field(
        default=False, description="answer even outside the domain (flagged in_domain=false)"
    )


_CHECKPOINTS = Checkpoint.__table__
_BLOBS = select(_CHECKPOINTS.c.id, _CHECKPOINTS.c.blob_sha256).where(  # built once
    _CHECKPOINTS.c.id.in_(bindparam("ids", expanding=True))
)


def run_predict_batch(ctxs: list[JobContext]) -> list[BatchOutcome]:
    from app.predictions.engine import Item, engine_for

    started = time.perf_counter()
    params = [PredictParams.model_validate(ctx.params) for ctx in ctxs]
    settings = ctxs[0].settings
    blobs = BlobStore(settings.blob_dir)
    with ctxs[0].session_factory() as session:
        wanted = sorted({p.checkpoint_id for p in params})
        rows = dict(session.execute(_BLOBS, {"ids": wanted}).all())
    outcomes: list[BatchOutcome | None] = [None] * len(ctxs)
    items, positions = [], []
    for index, p in enumerate(params):
        blob = rows.get(p.checkpoint_id)
        if blob is None:
            outcomes[index] = ValueError(f"checkpoint {p.checkpoint_id} no longer exists")
            continue
        items.append(Item(blob, blobs.path(blob), p.force))
        positions.append(index)
    engine = engine_for(settings)
    answers = engine.predict(params[0].metanetwork, items) if items else []
    total_ms = (time.perf_counter() - started) * 1000
    for index, answer in zip(positions, answers, strict=True):
        if isinstance(answer, dict):
            answer = answer | {"checkpoint_id": params[index].checkpoint_id}
            answer["timings"] = answer["timings"] | {"job_ms": total_ms}
        outcomes[index] = answer
    return [o if o is not None else RuntimeError("no outcome") for o in outcomes]


def run_predict(ctx: JobContext) -> dict[str, Any]:
    outcome = run_predict_batch([ctx])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def persist_prediction(session: Session, job_id: int, result: dict[str, Any]) -> None:
    persist_predictions(session, [(job_id, result)])


def persist_predictions(session: Session, finished: list[tuple[int, dict[str, Any]]]) -> None:
    """The prediction rows of finished jobs: one Core INSERT, parameters apart (compiled
    once, no ORM unit of work; an executemany for a batch)."""
    session.execute(insert(Prediction.__table__), [_row(j, r) for j, r in finished])


def _row(job_id: int, result: dict[str, Any]) -> dict[str, Any]:
    interval = result.get("interval") or (None, None)
    return dict(
        job_id=job_id,
        checkpoint_id=result["checkpoint_id"],
        metanetwork=result["metanetwork"],
        metanetwork_version=result["metanetwork_version"],
        task=result["task"],
        label=result.get("label"),
        probabilities=result.get("probabilities"),
        value=result.get("value"),
        interval_low=interval[0],
        interval_high=interval[1],
        coverage=result.get("coverage"),
        in_domain=result["in_domain"],
        domain_issues=result.get("domain_issues") or [],
        timings=result["timings"],
        result=result,
    )


def check_predict(session: Session, params: PredictParams, settings: Settings) -> None:
    check_prediction(session, settings, params.checkpoint_id, params.metanetwork, params.force)


PREDICT = JobKind(
    name="predict",
    params_model=PredictParams,
    run=run_predict,
    check=check_predict,
    persist=persist_prediction,
    persist_many=persist_predictions,
    description="a metanetwork's answer (label and probabilities, or value with interval)",
    run_batch=run_predict_batch,
    batch_key=lambda params: str(params.get("metanetwork")),
    queue="compute",
)
