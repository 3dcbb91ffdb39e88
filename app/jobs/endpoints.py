"""HTTP routes for jobs: list, read (with long-poll), create, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.deps import ServicesDep, SessionDep
from app.jobs import service
from app.jobs.events import Wait, job_event_stream, job_response, read_job, wait_for_job
from app.jobs.schemas import JobCreate, JobOut
from app.jobs.submit import submit_job
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
    job = submit_job(session, services, body.kind, body.params)
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
async def get_job(job_id: int, services: ServicesDep, wait: Wait = 0) -> Response:
    return job_response(await wait_for_job(services, job_id, wait))


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(job_id: int, services: ServicesDep) -> StreamingResponse:
    """Server-sent events: a ``job`` event whenever status or progress changes, ending
    after the terminal one (``retry`` hints reconnecting clients)."""
    await run_in_threadpool(read_job, services, job_id)  # 404 before the stream starts
    return StreamingResponse(
        job_event_stream(services, job_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: int, session: SessionDep, services: ServicesDep) -> JobOut:
    job = JobOut.model_validate(service.cancel_job(session, job_id))
    if job.status.terminal:  # canceled while queued: wake whoever waits for it
        services.notifier.notify([job_id])
    return job
