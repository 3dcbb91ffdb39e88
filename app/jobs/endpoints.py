"""HTTP routes for jobs: list, read (with long-poll), create, cancel, delete, events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.deps import ReadSessionDep, ServicesDep, SessionDep
from app.ids import IdPath
from app.jobs import service
from app.jobs.events import (
    Wait,
    job_event_stream,
    job_response,
    outcome_response,
    read_job,
    wait_for_job,
)
from app.jobs.schemas import JobCreate, JobOut
from app.models import JobStatus
from app.pagination import Page, PageDep
from app.problems import PROBLEM
from app.tenancy import CallerDep

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

EVENT_STREAM = {
    "type": "string",
    "description": "server-sent events: `event: job` with the job as JSON in `data:`, one per "
    "change of status, progress or attempt; the stream ends after the terminal one",
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={404: PROBLEM, 422: PROBLEM},
)
def create_job(
    body: JobCreate, session: SessionDep, services: ServicesDep, caller: CallerDep
) -> Response:
    """Queue a job of any registered kind (the domain routes queue theirs too). The tenant
    is the API key's, never a parameter."""
    params = service.caller_params(body.kind, body.params, caller.tenant_id)
    job = service.submit_job(session, services, caller.tenant_id, body.kind, params)
    return job_response(job, status.HTTP_202_ACCEPTED, location=True)


@router.get("", response_model=Page[JobOut])
def list_jobs(
    session: ReadSessionDep,
    caller: CallerDep,
    page: PageDep,
    kind: Annotated[
        str | None,
        Query(max_length=64, description="only jobs of this kind (one of the registered kinds)"),
    ] = None,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
) -> Page[JobOut]:
    return service.list_jobs(session, caller.tenant_id, page, kind, status)


@router.get(
    "/{job_id}",
    response_model=JobOut,
    responses={404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
)
async def get_job(
    job_id: IdPath, services: ServicesDep, caller: CallerDep, wait: Wait = 0
) -> Response:
    """The job. With ``?wait=S`` the answer comes once it is terminal or S seconds have
    passed: 200 with the job when it succeeded or is still unfinished, a problem carrying
    the job (``job`` member) when it failed (422 ``job-failed``) or was canceled (409
    ``job-canceled``)."""
    job = await wait_for_job(services, job_id, caller.tenant_id, wait)
    if wait > 0:
        return outcome_response(job, status.HTTP_200_OK, location=False)
    return job_response(job)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": EVENT_STREAM}}}, 404: PROBLEM},
)
async def job_events(job_id: IdPath, services: ServicesDep, caller: CallerDep) -> StreamingResponse:
    """Server-sent events: a ``job`` event whenever status or progress changes, ending
    after the terminal one (``retry`` hints reconnecting clients)."""
    # 404 before the stream starts
    await run_in_threadpool(read_job, services, job_id, caller.tenant_id)
    return StreamingResponse(
        job_event_stream(services, job_id, caller.tenant_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/{job_id}/cancel", response_model=JobOut, responses={404: PROBLEM, 409: PROBLEM})
def cancel_job(
    job_id: IdPath, session: SessionDep, services: ServicesDep, caller: CallerDep
) -> JobOut:
    return service.cancel_job(session, services, caller.tenant_id, job_id)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: PROBLEM})
def delete_job(
    job_id: IdPath, session: SessionDep, services: ServicesDep, caller: CallerDep
) -> Response:
    """Delete a job (a queued or running one is canceled by it) with the prediction or
    merge it produced; the merged checkpoint stays."""
    service.delete_job(session, services, caller.tenant_id, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
