"""The request side of jobs: validate and commit, hand to the queue, wait, cancel, list,
delete.

The order keeps failures clean: the job row is committed (with procrastinate, together
with its delivery) before anything else hears of it, so a failed request never leaves a
job behind and a committed job is never without a way to run.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Response, status
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.deps import Services
from app.jobs import repository
from app.jobs.events import outcome_response, read_job, wait_for_job
from app.jobs.kind import KINDS, TENANT_FIELD, queue_name
from app.jobs.schemas import JobOut
from app.models import Job, JobStatus
from app.owned import owned_or_404
from app.pagination import Page, PageRequest, matching, paginate
from app.problems import ProblemError
from app.quotas import check_jobs_in_flight

log = logging.getLogger(__name__)


def _validated(
    session: Session, tenant_id: int, kind_name: str, params: dict[str, Any], services: Services
):
    kind = KINDS.get(kind_name)
    if kind is None:
        raise ProblemError(
            422,
            f"unknown job kind {kind_name!r}; known kinds: {', '.join(sorted(KINDS))}",
            slug="unknown-job-kind",
        )
    try:
        parsed = kind.params_model.model_validate(params)
        if kind.check is not None:
            kind.check(session, parsed, services.settings, tenant_id)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'params'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ProblemError(
            422, f"invalid params for {kind_name}: {detail}", slug="validation"
        ) from None
    except ValueError as exc:
        raise ProblemError(422, str(exc), slug="validation") from None
    return parsed.model_dump(mode="json")


def caller_params(kind_name: str, params: dict[str, Any], tenant_id: int) -> dict[str, Any]:
    """The params a caller sent (``POST /v1/jobs``) with what the service sets itself: a
    kind whose params carry the tenant (``TENANT_FIELD``) gets the API key's; a caller
    naming one is refused, like any other unknown parameter."""
    kind = KINDS.get(kind_name)
    if kind is None or TENANT_FIELD not in kind.params_model.model_fields:
        return params
    if TENANT_FIELD in params:
        raise ProblemError(
            422,
            f"invalid params for {kind_name}: {TENANT_FIELD}: not a parameter; the tenant "
            "is always the one of the API key that makes the request",
            slug="validation",
        )
    return {**params, TENANT_FIELD: tenant_id}


def submit_job(
    session: Session, services: Services, tenant_id: int, kind: str, params: dict[str, Any]
) -> JobOut:
    """Validate, insert and commit a queued job of the tenant (and its delivery), then wake
    the queue; 429 when the tenant has its quota of jobs in flight."""
    values = _validated(session, tenant_id, kind, params, services)
    settings = services.settings
    check_jobs_in_flight(session, settings, tenant_id)
    row = repository.insert_job(session, tenant_id, kind, values, settings.job_max_attempts)
    services.queue.enqueue(session, row["id"], queue_name(kind, settings))
    session.commit()
    services.notifier.accepted(row["id"], tenant_id)
    services.queue.committed()
    return JobOut.model_validate(row)


async def accept_job(
    services: Services, tenant_id: int, kind: str, params: dict[str, Any], wait: float = 0
) -> Response:
    """Submit (in a worker thread), long-poll when ``wait`` > 0, and answer the way every
    job-creating route does: 202 with ``Location`` while unfinished, 200 once succeeded, a
    problem with the job once failed (422) or canceled (409)."""
    job = await run_in_threadpool(_submit, services, tenant_id, kind, params)
    if wait > 0:
        job = await wait_for_job(services, job.id, tenant_id, wait)
    return outcome_response(job, status.HTTP_202_ACCEPTED)


def _submit(services: Services, tenant_id: int, kind: str, params: dict[str, Any]) -> JobOut:
    with services.session_factory() as session:
        return submit_job(session, services, tenant_id, kind, params)


def cancel_job(session: Session, services: Services, tenant_id: int, job_id: int) -> JobOut:
    read_job(services, job_id, tenant_id)  # 404 first (also for another tenant's job)
    repository.request_cancel(session, job_id)
    session.commit()
    job = read_job(services, job_id, tenant_id)
    if job.status in (JobStatus.succeeded, JobStatus.failed):
        raise ProblemError(
            409, f"job {job_id} already {job.status.value}; nothing to cancel", slug="job-finished"
        )
    if job.status.terminal:  # canceled while queued: wake whoever waits for it
        services.notifier.notify([job_id])
    return job


def list_jobs(
    session: Session,
    tenant_id: int,
    page: PageRequest,
    kind: str | None,
    status: JobStatus | None,
) -> Page[JobOut]:
    if kind is not None and kind not in KINDS:
        raise ProblemError(
            422,
            f"kind: {kind!r} is not a job kind; one of: {', '.join(sorted(KINDS))}",
            slug="validation",
        )
    query = matching(Job, tenant_id=tenant_id, kind=kind, status=status)
    return paginate(session, query, page, _out)


def _out(rows: list[Job]) -> list[JobOut]:
    return [JobOut.model_validate(row) for row in rows]


def delete_job(session: Session, services: Services, tenant_id: int, job_id: int) -> None:
    """Delete a job and what it produced (its kind's ``forget``: a prediction, a merge).

    A queued job is thereby canceled: it is never claimed. A running one is canceled the
    same way: its worker finds the row gone at its next progress point and every write it
    would make is guarded by the row, so nothing of it is stored. The row is locked first,
    so a job finishing at this moment either commits before (and its rows are deleted
    here) or finds nothing to finish."""
    job = owned_or_404(session, Job, job_id, tenant_id, "job", for_update=True)
    kind = KINDS.get(job.kind)
    if kind is not None and kind.forget is not None:
        kind.forget(session, [job_id])
    repository.delete_jobs(session, [job_id])
    session.commit()
    services.notifier.deleted([job_id])
