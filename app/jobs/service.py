"""Creating, finding and canceling jobs (the request side; workers live in runner.py)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import Session

from app.jobs.registry import KINDS
from app.jobs.schemas import JobOut
from app.models import Job, JobStatus, utcnow
from app.pagination import newest_first
from app.problems import ProblemError
from app.settings import Settings

JOBS = Job.__table__
# built once with bound parameters: a statement with literal values (a params dict among
# them) was walked for its cache key on every request
_INSERT_JOB = (
    insert(JOBS)
    .values(
        kind=bindparam("kind"),
        params=bindparam("params", type_=JOBS.c.params.type),
        max_attempts=bindparam("max_attempts"),
    )
    .returning(*JOBS.c)
)


def create_job(
    session: Session, kind_name: str, params: dict[str, Any], settings: Settings
) -> JobOut:
    """Validate and commit a queued job. The caller enqueues it after this returns
    (``app.jobs.submit.submit_job`` does both)."""
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
            kind.check(session, parsed, settings)
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
    # one Core INSERT ... RETURNING (every request that queues work comes through here; the
    # ORM's unit of work costs about twice as much for a single row), its values apart
    values = {
        "kind": kind_name,
        "params": parsed.model_dump(mode="json"),
        "max_attempts": settings.job_max_attempts,
    }
    row = session.execute(_INSERT_JOB, values).mappings().one()
    session.commit()
    return JobOut.model_validate(dict(row))  # not an ORM instance: nobody needs its identity


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise ProblemError(404, f"job {job_id} does not exist", slug="not-found")
    return job


def list_jobs(
    session: Session,
    *,
    limit: int,
    cursor: str | None,
    kind: str | None = None,
    status: JobStatus | None = None,
) -> list[Job]:
    """Newest first; returns up to ``limit + 1`` rows (the extra one signals a next page)."""
    query = newest_first(Job, limit, cursor)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if status is not None:
        query = query.where(Job.status == status)
    return list(session.scalars(query))


def cancel_job(session: Session, job_id: int) -> Job:
    """Queued: canceled now. Running: flagged; the job stops at its next progress point."""
    get_job(session, job_id)
    canceled = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued)
        .values(status=JobStatus.canceled, cancel_requested=True, finished_at=utcnow())
    ).rowcount
    if not canceled:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running)
            .values(cancel_requested=True)
        )
    session.commit()
    job = get_job(session, job_id)
    if job.status in (JobStatus.succeeded, JobStatus.failed):
        raise ProblemError(
            409, f"job {job_id} already {job.status.value}; nothing to cancel", slug="job-finished"
        )
    return job
