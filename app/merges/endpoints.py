"""HTTP routes for merges: queue one, list, read, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.deps import ReadSessionDep, ServicesDep, SessionDep
from app.ids import IdPath, IdQuery
from app.jobs.events import Wait
from app.jobs.schemas import JobOut
from app.jobs.service import accept_job
from app.merges import service
from app.merges.schemas import MergeCreate, MergeOut
from app.pagination import Page, PageDep
from app.problems import PROBLEM
from app.tenancy import CallerDep

router = APIRouter(prefix="/v1/merges", tags=["merges"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={200: {"model": JobOut}, 404: PROBLEM, 422: PROBLEM},
)
async def create_merge(
    body: MergeCreate, services: ServicesDep, caller: CallerDep, wait: Wait = 0
) -> Response:
    """Queue a ``merge`` job: 202 with the job (``Location``); the merge and the merged
    checkpoint are in ``GET /v1/merges`` once it succeeded."""
    return await accept_job(services, caller.tenant_id, "merge", body.model_dump(mode="json"), wait)


@router.get("", response_model=Page[MergeOut])
def list_merges(
    session: ReadSessionDep,
    caller: CallerDep,
    page: PageDep,
    checkpoint_id: IdQuery = None,
    job_id: IdQuery = None,
) -> Page[MergeOut]:
    """Newest first; ``checkpoint_id`` matches an input or the result."""
    return service.list_merges(session, caller.tenant_id, page, checkpoint_id, job_id)


@router.get("/{merge_id}", response_model=MergeOut, responses={404: PROBLEM})
def get_merge(merge_id: IdPath, session: ReadSessionDep, caller: CallerDep) -> MergeOut:
    return service.get_merge(session, caller.tenant_id, merge_id)


@router.delete("/{merge_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: PROBLEM})
def delete_merge(
    merge_id: IdPath,
    session: SessionDep,
    services: ServicesDep,
    caller: CallerDep,
) -> Response:
    """Delete a merge and the job that produced it; the merged checkpoint stays (delete it
    as a checkpoint)."""
    services.notifier.deleted(service.delete_merge(session, caller.tenant_id, merge_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
