"""Predictions: what a request can be refused for, answering a batch in a worker, the rows
a finished job leaves, and reading them back."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from app.blobs import BlobStore
from app.checkpoints import repository as checkpoints
from app.db import read_session
from app.jobs.kind import JobContext, Outcome
from app.metanetworks import service as metanetworks
from app.metanetworks.service import summary_domain_issues
from app.models import LOCAL_TENANT_ID, Job, Prediction
from app.pagination import Created, Page, PageRequest, matching, paginate
from app.predictions import repository
from app.predictions.schemas import PredictionCreate, PredictionOut
from app.problems import ProblemError
from app.settings import Settings


def check(session: Session, params: PredictionCreate, settings: Settings) -> None:
    """404 for a missing checkpoint or metanetwork; 422 for a checkpoint without a known
    architecture, or outside the metanetwork's domain (unless ``force``)."""
    found = checkpoints.architecture_of(session, params.checkpoint_id)
    if found is None:
        raise ProblemError(
            404, f"checkpoint {params.checkpoint_id} does not exist", slug="not-found"
        )
    # the local tenant until jobs carry their caller (tenancy work)
    card = metanetworks.require(session, params.metanetwork, LOCAL_TENANT_ID).card
    architecture, reading = found
    if architecture is None:
        raise ProblemError(
            422,
            f"checkpoint {params.checkpoint_id} has no known architecture, so it has no "
            "parameter graph; upload it as a self-describing safetensors file (graphs.save) "
            "or in a layout the service can infer",
            slug="missing-architecture",
        )
    issues = summary_domain_issues(card.get("domain") or {}, architecture)
    if issues and not params.force:
        raise ProblemError(
            422,
            f"checkpoint {params.checkpoint_id} is outside the domain of metanetwork "
            f"{params.metanetwork!r}: {'; '.join(issues)}{_assumed(reading)} (send "
            "force=true for an answer flagged in_domain=false)",
            slug="out-of-domain",
        )


def _assumed(reading: dict[str, Any] | None) -> str:
    """An inferred architecture's guesses, so a refusal never blames the user for them."""
    assumed = (reading or {}).get("assumptions") or {}
    if not assumed:
        return ""
    said = ", ".join(f"{k} {v}" for k, v in sorted(assumed.items()))
    return (
        f"; its architecture was inferred assuming {said}: if that is wrong, upload it "
        "again with activation= / input_shape=, or as a self-describing file (graphs.save)"
    )


def predict_batch(ctxs: list[JobContext]) -> list[Outcome]:
    """One metanetwork's answers for a batch of jobs: one forward pass (``engine``)."""
    from app.predictions.engine import engine_for  # workers only: it loads models

    started = time.perf_counter()
    params = [PredictionCreate.model_validate(ctx.params) for ctx in ctxs]
    settings = ctxs[0].settings
    with read_session(ctxs[0].session_factory) as session:
        blobs = checkpoints.blobs_of(session, [p.checkpoint_id for p in params])
        version = _version(session, ctxs[0].job_id, params[0].metanetwork, settings)
    store = BlobStore(settings.blob_dir)
    items = [
        (store.path(blobs[p.checkpoint_id]), p.force) if p.checkpoint_id in blobs else None
        for p in params
    ]
    outcomes = engine_for(settings).predict(version, items)
    job_ms = (time.perf_counter() - started) * 1000
    for p, outcome in zip(params, outcomes, strict=True):
        if isinstance(outcome, dict):
            outcome["checkpoint_id"] = p.checkpoint_id
            outcome["timings"]["job_ms"] = job_ms
    return outcomes


def _version(session: Session, job_id: int, ref: str, settings: Settings) -> Any:
    """The metanetwork version ``ref`` names for the job's tenant (ValueError: gone)."""
    from app.predictions.engine import Version

    tenant_id = session.get_one(Job, job_id).tenant_id
    row = metanetworks.resolve(session, ref, tenant_id)
    if row is None:
        raise ValueError(metanetworks.unknown_metanetwork(session, ref, tenant_id))
    weights = metanetworks.weights_path(row, settings)
    return Version(row.id, row.card, weights, row.weights_sha256, metanetworks.version_label(row))


def persist(session: Session, finished: list[tuple[int, dict[str, Any]]]) -> None:
    """The prediction rows of finished jobs (their answers stay in the job's result)."""
    repository.insert_many(session, [_row(job_id, result) for job_id, result in finished])


def _row(job_id: int, result: dict[str, Any]) -> dict[str, Any]:
    low, high = result.get("interval") or (None, None)
    return {
        "job_id": job_id,
        "checkpoint_id": result["checkpoint_id"],
        "metanetwork": result["metanetwork"],
        "metanetwork_version": result["metanetwork_version"],
        "task": result["task"],
        "label": result.get("label"),
        "probabilities": result.get("probabilities"),
        "value": result.get("value"),
        "interval_low": low,
        "interval_high": high,
        "coverage": result.get("coverage"),
        "in_domain": result["in_domain"],
        "domain_issues": result.get("domain_issues") or [],
        "timings": result["timings"],
    }


def list_predictions(
    session: Session,
    page: PageRequest,
    created: Created,
    checkpoint_id: int | None = None,
    metanetwork: str | None = None,
) -> Page[PredictionOut]:
    query = matching(Prediction, checkpoint_id=checkpoint_id, metanetwork=metanetwork)
    return paginate(session, created.within(query, Prediction.created_at), page, _out)


def _out(rows: list[Prediction]) -> list[PredictionOut]:
    return [PredictionOut.model_validate(row) for row in rows]
