"""Predictions: what a request can be refused for, answering a batch in a worker, the rows
a finished job leaves, reading them back, and deleting them."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import false
from sqlalchemy.orm import Session

from app.blobs import BlobStore
from app.checkpoints import repository as checkpoints
from app.db import read_session
from app.jobs import repository as jobs
from app.jobs.kind import JobContext, Outcome
from app.metanetworks import service as metanetworks
from app.metanetworks.service import summary_domain_issues
from app.models import Job, Prediction
from app.owned import owned_or_404
from app.pagination import Created, Page, PageRequest, matching, paginate
from app.predictions import repository
from app.predictions.schemas import PredictionCreate, PredictionOut
from app.problems import ProblemError
from app.settings import Settings

if TYPE_CHECKING:
    from app.deps import Services
    from app.tenancy import Caller


def check(session: Session, params: PredictionCreate, settings: Settings, tenant_id: int) -> None:
    """404 for a missing checkpoint (or another tenant's) or metanetwork; 422 for a
    checkpoint without a known architecture, or outside the metanetwork's domain (unless
    ``force``)."""
    found = checkpoints.architecture_of(session, tenant_id, params.checkpoint_id)
    if found is None:
        raise ProblemError(
            404, f"checkpoint {params.checkpoint_id} does not exist", slug="not-found"
        )
    card = metanetworks.require(session, params.metanetwork, tenant_id).card
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


def require_metanetwork(services: Services, ref: str, caller: Caller) -> None:
    """404 (naming the ones there are) unless ``ref`` names a metanetwork of the caller's."""
    with read_session(services.session_factory) as session:
        metanetworks.require(session, ref, caller.tenant_id)


def forget_upload(services: Services, tenant_id: int, checkpoint_id: int) -> None:
    """Delete the checkpoint an upload-and-ask request stored before its prediction was
    refused: a refused request leaves nothing behind."""
    from app.checkpoints.service import delete_checkpoint

    with services.session_factory() as session:
        try:
            delete_checkpoint(session, services.blobs, tenant_id, checkpoint_id)
        except ProblemError:  # meanwhile used, or deleted, by another request: keep it
            session.rollback()


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
    """The answers for a batch of jobs naming one metanetwork: one forward pass
    (``engine``) per version the name resolves to (a trained name is each tenant's own)."""
    from app.predictions.engine import engine_for  # workers only: it loads models

    started = time.perf_counter()
    params = [PredictionCreate.model_validate(ctx.params) for ctx in ctxs]
    settings = ctxs[0].settings
    groups: dict[int, tuple[Any, list[int]]] = {}
    with read_session(ctxs[0].session_factory) as session:
        blobs = checkpoints.blobs_of(session, [p.checkpoint_id for p in params])
        for k, (ctx, p) in enumerate(zip(ctxs, params, strict=True)):
            version = _version(session, ctx.job_id, p.metanetwork, settings)
            groups.setdefault(version.id, (version, []))[1].append(k)
    store = BlobStore(settings.blob_dir)
    outcomes: list[Outcome] = [None] * len(ctxs)  # type: ignore[list-item]
    for version, members in groups.values():
        items = [
            (store.path(blobs[params[k].checkpoint_id]), params[k].force)
            if params[k].checkpoint_id in blobs
            else None
            for k in members
        ]
        for k, outcome in zip(members, engine_for(settings).predict(version, items), strict=True):
            outcomes[k] = outcome
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
    """The prediction rows of finished jobs (their answers stay in the job's result), each
    its job's tenant's."""
    tenants = jobs.tenants_of(session, [job_id for job_id, _ in finished])
    rows = [_row(job_id, tenants[job_id], result) for job_id, result in finished]
    repository.insert_many(session, rows)


def _row(job_id: int, tenant_id: int, result: dict[str, Any]) -> dict[str, Any]:
    low, high = result.get("interval") or (None, None)
    return {
        "tenant_id": tenant_id,
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


def get_prediction(session: Session, tenant_id: int, prediction_id: int) -> Prediction:
    return owned_or_404(session, Prediction, prediction_id, tenant_id, "prediction")


def list_predictions(
    session: Session,
    tenant_id: int,
    page: PageRequest,
    created: Created,
    checkpoint_id: int | None = None,
    metanetwork: str | None = None,
) -> Page[PredictionOut]:
    query = matching(Prediction, tenant_id=tenant_id, checkpoint_id=checkpoint_id)
    if metanetwork is not None:
        query = _of_metanetwork(session, query, tenant_id, metanetwork)
    return paginate(session, created.within(query, Prediction.created_at), page, _out)


def _of_metanetwork(session: Session, query: Any, tenant_id: int, ref: str) -> Any:
    """Filter on ``NAME`` (any version) or ``NAME@N`` (the answers of version N); a 422
    names the parameter when ``ref`` is neither."""
    try:
        name, number = metanetworks.parse_ref(ref)
    except ValueError as exc:
        raise ProblemError(
            422,
            f"metanetwork: {exc}; the filter takes NAME or NAME@N (N >= 1)",
            slug="validation",
        ) from None
    query = query.where(Prediction.metanetwork == name)
    if number is None:
        return query
    row = metanetworks.resolve(session, ref, tenant_id)
    if row is None:  # no such version: nothing answered with it
        return query.where(false())
    return query.where(Prediction.metanetwork_version == metanetworks.version_label(row))


def _out(rows: list[Prediction]) -> list[PredictionOut]:
    return [PredictionOut.model_validate(row) for row in rows]


def delete_prediction(session: Session, tenant_id: int, prediction_id: int) -> list[int]:
    """Delete the prediction with the job that produced it (its id is returned); its
    checkpoint stays."""
    owned_or_404(session, Prediction, prediction_id, tenant_id, "prediction", for_update=True)
    job_ids = repository.delete_with_jobs(session, [prediction_id])
    session.commit()
    return job_ids
