"""HTTP routes for jobs: list, read (with long-poll), create, cancel, events."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.deps import ReadSessionDep, ServicesDep, SessionDep
from app.jobs import service
from app.jobs.events import Wait, job_event_stream, job_response, read_job, wait_for_job
from app.jobs.schemas import JobCreate, JobOut
from app.models import JobStatus
from app.pagination import Page, PageDep
from app.tenancy import CallerDep

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def create_job(
    body: JobCreate, session: SessionDep, services: ServicesDep, caller: CallerDep
) -> Response:
    job = service.submit_job(session, services, caller.tenant_id, body.kind, body.params)
    return job_response(job, status.HTTP_202_ACCEPTED, location=True)


@router.get("", response_model=Page[JobOut])
def list_jobs(
    session: ReadSessionDep,
    caller: CallerDep,
    page: PageDep,
    kind: str | None = None,
    status: JobStatus | None = None,
) -> Page[JobOut]:
    return service.list_jobs(session, caller.tenant_id, page, kind, status)


@router.get("/{job_id}", response_model=JobOut)
async def get_job(
    job_id: int, services: ServicesDep, caller: CallerDep, wait: Wait = 0
) -> Response:
    return job_response(await wait_for_job(services, job_id, caller.tenant_id, wait))


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(job_id: int, services: ServicesDep, caller: CallerDep) -> StreamingResponse:
    """Server-sent events: a ``job`` event whenever status or progress changes, ending
    after the terminal one (``retry`` hints reconnecting clients)."""
    # 404 before the stream starts
    await run_in_threadpool(read_job, services, job_id, caller.tenant_id)
    return StreamingResponse(
        job_event_stream(services, job_id, caller.tenant_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(
    job_id: int, session: SessionDep, services: ServicesDep, caller: CallerDep
) -> JobOut:
    return service.cancel_job(session, services, caller.tenant_id, job_id)
