"""HTTP routes for zoos: create (JSON over stored checkpoints, or one archive upload),
list, read, list items, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from app.checkpoints.upload import receive_upload
from app.deps import ReadSessionDep, ServicesDep, SessionDep
from app.ids import IdPath
from app.pagination import Page, PageDep
from app.problems import PROBLEM
from app.responses import located
from app.tenancy import Caller, current_caller
from app.zoos import service
from app.zoos.schemas import NAME_PATTERN, SplitName, Task, ZooIn, ZooItemOut, ZooOut

router = APIRouter(prefix="/v1/zoos", tags=["zoos"])
CallerDep = Annotated[Caller, Depends(current_caller)]
ZooId = IdPath

ARCHIVE_BODY = {
    "required": True,
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "the archive: checkpoint files and labels.csv",
                    }
                },
                "required": ["file"],
            }
        },
    },
}


def _created(response: Response, zoo_out: ZooOut) -> ZooOut:
    located(response, f"/v1/zoos/{zoo_out.id}")
    return zoo_out


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ZooOut,
    responses={409: PROBLEM, 422: PROBLEM},
)
def create_zoo(
    body: ZooIn, response: Response, session: SessionDep, services: ServicesDep, caller: CallerDep
) -> ZooOut:
    """A zoo over checkpoints already uploaded: each item a checkpoint id with a label
    (classification) or a target (regression), optionally a group; split once, seeded."""
    zoo = service.create_zoo(session, services.blobs, caller.tenant_id, body)
    return _created(response, service.zoo_out(zoo))


@router.post(
    "/archive",
    status_code=status.HTTP_201_CREATED,
    response_model=ZooOut,
    openapi_extra={"requestBody": ARCHIVE_BODY},
    responses={409: PROBLEM, 413: PROBLEM, 415: PROBLEM, 422: PROBLEM},
)
async def upload_zoo_archive(
    request: Request,
    response: Response,
    services: ServicesDep,
    caller: CallerDep,
    name: Annotated[
        str,
        Query(min_length=1, max_length=128, pattern=NAME_PATTERN, description="the zoo's name"),
    ],
    task: Annotated[Task, Query(description="classification (label) or regression (target)")],
    seed: Annotated[int, Query(ge=0, le=2**31 - 1, description="seed of the split")] = 0,
) -> ZooOut:
    """A zoo from one .zip or .tar (.gz, .bz2, .xz) of checkpoint files and ``labels.csv``
    (columns ``file`` and ``label`` or ``target``, optional ``group``), sent as the raw
    body or as the multipart field ``file``. All or nothing: one bad member refuses the
    whole archive, naming the member, and nothing is stored."""
    body = ZooIn(name=name, task=task, items=[], seed=seed)
    await run_in_threadpool(service.name_free, services.session_factory, caller.tenant_id, name)
    temp, _ = await receive_upload(request, services.blobs, services.settings.zoo_archive_max_bytes)
    try:
        temp.close()
        zoo = await run_in_threadpool(
            service.create_zoo_from_archive,
            services.session_factory,
            services.blobs,
            services.settings,
            caller.tenant_id,
            body,
            temp.path,
        )
    finally:
        temp.discard()
    return _created(response, service.zoo_out(zoo))


@router.get("", response_model=Page[ZooOut])
def list_zoos(session: ReadSessionDep, page: PageDep, caller: CallerDep) -> Page[ZooOut]:
    return service.list_zoos(session, caller.tenant_id, page)


@router.get("/{zoo_id}", response_model=ZooOut, responses={404: PROBLEM})
def get_zoo(zoo_id: ZooId, session: ReadSessionDep, caller: CallerDep) -> ZooOut:
    return service.zoo_out(service.get_zoo(session, caller.tenant_id, zoo_id))


@router.get("/{zoo_id}/items", response_model=Page[ZooItemOut], responses={404: PROBLEM})
def list_zoo_items(
    zoo_id: ZooId,
    session: ReadSessionDep,
    page: PageDep,
    caller: CallerDep,
    split: Annotated[SplitName | None, Query(description="only this split's items")] = None,
) -> Page[ZooItemOut]:
    """The zoo's items in their order, with the split each was given."""
    return service.list_items(session, caller.tenant_id, zoo_id, page, split)


@router.delete("/{zoo_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: PROBLEM})
def delete_zoo(zoo_id: ZooId, session: SessionDep, caller: CallerDep) -> Response:
    """Delete the zoo and its items; its checkpoints stay."""
    service.delete_zoo(session, caller.tenant_id, zoo_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
