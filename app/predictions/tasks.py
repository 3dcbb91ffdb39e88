"""The ``predict`` job kind: one metanetwork's answer for one stored checkpoint.

Jobs for the same metanetwork are micro-batched by the runner (``run_batch``): a worker
answers up to ``max_batch`` of them with one forward pass, and each job still finishes
through its own guarded update, with its prediction row written beside it (``persist``).
"""

from __future__ import annotations

from typing import Any

from app.jobs.kind import JobContext, JobKind, register
from app.predictions import repository, service
from app.predictions.schemas import PredictionCreate


def run_predict(ctx: JobContext) -> dict[str, Any]:
    outcome = service.predict_batch([ctx])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


PREDICT = register(
    JobKind(
        name="predict",
        params_model=PredictionCreate,
        run=run_predict,
        check=service.check,
        persist=service.persist,
        description="a metanetwork's answer (label and probabilities, or value with interval)",
        run_batch=service.predict_batch,
        batch_key=lambda params: str(params.get("metanetwork")),
        queue="compute",
        forget=repository.delete_of_jobs,
    )
)
