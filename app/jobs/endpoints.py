"""HTTP routes for jobs: list, read (with long-poll), create, cancel."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from starlette.concurrency import run_in_threadpool

from app.deps import ServicesDep, SessionDep
from app.jobs import service
from app.jobs.schemas import JobCreate, JobOut
from app.models import JobStatus
from app.pagination import Cursor, Limit, Page, next_cursor

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def accepted(response: Response, job: JobOut) -> JobOut:
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def create_job(
    body: JobCreate, session: SessionDep, services: ServicesDep, response: Response
) -> JobOut:
    job = service.create_job(session, body.kind, body.params, services.settings.job_max_attempts)
    services.queue.enqueue(job.id)  # after commit: a failed request never leaves a job
    return accepted(response, JobOut.model_validate(job))


@router.get("", response_model=Page[JobOut])
def list_jobs(
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    kind: str | None = None,
    status: JobStatus | None = None,
) -> Page[JobOut]:
    jobs = service.list_jobs(session, limit=limit, cursor=cursor, kind=kind, status=status)
    return Page[JobOut](
        items=[JobOut.model_validate(job) for job in jobs[:limit]],
        next_cursor=next_cursor([job.id for job in jobs], limit),
    )


@router.get("/{job_id}", response_model=JobOut)
async def get_job(
    job_id: int,
    services: ServicesDep,
    wait: Annotated[
        float, Query(ge=0, description="long-poll: seconds to wait for a terminal status")
    ] = 0,
) -> JobOut:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, services.settings.max_wait_seconds)
    delay = 0.05
    while True:
        job = await run_in_threadpool(_read_job, services, job_id)
        if job.status.terminal or loop.time() >= deadline:
            return job
        await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
        delay = min(delay * 2, 0.5)


def _read_job(services: ServicesDep, job_id: int) -> JobOut:
    with services.session_factory() as session:
        return JobOut.model_validate(service.get_job(session, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: int, session: SessionDep) -> JobOut:
    return JobOut.model_validate(service.cancel_job(session, job_id))
