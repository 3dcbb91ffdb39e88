"""HTTP routes for checkpoints: upload, list, read, download, delete, inspect."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from app.checkpoints import service
from app.checkpoints.schemas import CheckpointOut
from app.checkpoints.upload import clean_filename, receive_upload
from app.deps import ServicesDep, SessionDep
from app.jobs.schemas import JobOut
from app.jobs.submit import submit_job
from app.pagination import Cursor, Limit, Page, next_cursor
from app.problems import PROBLEM_MEDIA_TYPE

router = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"])

PROBLEM = {"content": {PROBLEM_MEDIA_TYPE: {}}}
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckpointOut,
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={
        200: {"description": "these bytes were already stored", "model": CheckpointOut},
        413: PROBLEM,
        415: PROBLEM,
        422: PROBLEM,
    },
)
async def upload_checkpoint(
    request: Request,
    response: Response,
    services: ServicesDep,
    filename: Annotated[str | None, Query(description="name to record (raw uploads)")] = None,
    x_filename: Annotated[str | None, Header(description="same, as a header")] = None,
) -> CheckpointOut:
    """Upload a safetensors or PyTorch (zip, weights only) checkpoint."""
    temp, part_filename = await receive_upload(
        request, services.blobs, services.settings.max_upload_bytes
    )
    name = clean_filename(filename or x_filename or part_filename)
    checkpoint, created = await run_in_threadpool(
        service.ingest, services.session_factory, services.blobs, temp, name
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.headers["Location"] = f"/v1/checkpoints/{checkpoint.id}"
    return CheckpointOut.model_validate(checkpoint)


@router.get("", response_model=Page[CheckpointOut])
def list_checkpoints(
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    format: Annotated[str | None, Query(description="safetensors or pytorch")] = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    sha256_prefix: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[CheckpointOut]:
    rows = service.list_checkpoints(
        session,
        limit=limit,
        cursor=cursor,
        format=format,
        created_after=created_after,
        created_before=created_before,
        sha256_prefix=sha256_prefix,
    )
    return Page[CheckpointOut](
        items=[CheckpointOut.model_validate(row) for row in rows[:limit]],
        next_cursor=next_cursor([row.id for row in rows], limit),
    )


@router.get("/{checkpoint_id}", response_model=CheckpointOut, responses={404: PROBLEM})
def get_checkpoint(checkpoint_id: int, session: SessionDep) -> CheckpointOut:
    return CheckpointOut.model_validate(service.get_checkpoint(session, checkpoint_id))


@router.get(
    "/{checkpoint_id}/file",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 404: PROBLEM},
)
def download_checkpoint(
    checkpoint_id: int, session: SessionDep, services: ServicesDep
) -> FileResponse:
    """The stored safetensors file (PyTorch uploads come back converted)."""
    checkpoint = service.get_checkpoint(session, checkpoint_id)
    stem = (checkpoint.filename or f"checkpoint-{checkpoint.id}").rsplit(".", 1)[0]
    return FileResponse(
        services.blobs.path(checkpoint.blob_sha256),
        media_type="application/octet-stream",
        filename=f"{stem}.safetensors",
    )


@router.delete(
    "/{checkpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: PROBLEM, 409: PROBLEM},
)
def delete_checkpoint(checkpoint_id: int, session: SessionDep, services: ServicesDep) -> Response:
    service.delete_checkpoint(session, services.blobs, checkpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{checkpoint_id}/inspect",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={404: PROBLEM},
)
def inspect_checkpoint(
    checkpoint_id: int, session: SessionDep, services: ServicesDep, response: Response
) -> JobOut:
    """Queue an ``inspect`` job (per-tensor statistics); poll ``Location`` for the result."""
    service.get_checkpoint(session, checkpoint_id)
    job = submit_job(session, services, "inspect", {"checkpoint_id": checkpoint_id})
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.model_validate(job)
