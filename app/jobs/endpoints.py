"""HTTP routes for jobs: list, read (with long-poll), create, cancel, delete, events."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.deps import ReadSessionDep, ServicesDep, SessionDep
from app.ids import IdPath
from app.jobs import service
from app.jobs.events import Wait, job_event_stream, job_response, read_job, wait_for_job
from app.jobs.schemas import JobCreate, JobOut
from app.models import JobStatus
from app.pagination import Page, PageDep
from app.problems import PROBLEM
from app.tenancy import Caller, current_caller

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def create_job(body: JobCreate, session: SessionDep, services: ServicesDep) -> Response:
    job = service.submit_job(session, services, body.kind, body.params)
    return job_response(job, status.HTTP_202_ACCEPTED, location=True)


@router.get("", response_model=Page[JobOut])
def list_jobs(
    session: ReadSessionDep,
    page: PageDep,
    kind: str | None = None,
    status: JobStatus | None = None,
) -> Page[JobOut]:
    return service.list_jobs(session, page, kind, status)


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: IdPath, services: ServicesDep, wait: Wait = 0) -> Response:
    return job_response(await wait_for_job(services, job_id, wait))


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(job_id: IdPath, services: ServicesDep) -> StreamingResponse:
    """Server-sent events: a ``job`` event whenever status or progress changes, ending
    after the terminal one (``retry`` hints reconnecting clients)."""
    await run_in_threadpool(read_job, services, job_id)  # 404 before the stream starts
    return StreamingResponse(
        job_event_stream(services, job_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: IdPath, session: SessionDep, services: ServicesDep) -> JobOut:
    return service.cancel_job(session, services, job_id)


@router.delete(
    "/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: PROBLEM}
)
def delete_job(
    job_id: IdPath,
    session: SessionDep,
    services: ServicesDep,
    caller: Caller = Depends(current_caller),
) -> Response:
    """Delete a job (a queued or running one is canceled by it) with the prediction or
    merge it produced; the merged checkpoint stays."""
    service.delete_job(session, services, caller.tenant_id, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
