"""HTTP routes for checkpoints: upload, list, read, download, delete, inspect."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from app.checkpoints import service
from app.checkpoints.graph_view import graph_view
from app.checkpoints.schemas import CheckpointOut, GraphView
from app.checkpoints.upload import MAX_FILENAME, FilenameQuery, clean_filename, receive_upload
from app.deps import ReadSessionDep, ServicesDep, SessionDep
from app.ids import IdPath
from app.jobs.events import job_response
from app.jobs.schemas import JobOut
from app.jobs.service import submit_job
from app.pagination import CreatedDep, Page, PageDep
from app.problems import PROBLEM
from app.responses import stored
from app.tenancy import CallerDep

router = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"])

BINARY = {"type": "string", "format": "binary", "description": "the file's bytes"}
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "the file"}
                },
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
    caller: CallerDep,
    filename: FilenameQuery = None,
    x_filename: Annotated[
        str | None, Header(max_length=MAX_FILENAME, description="same, as a header")
    ] = None,
    activation: Annotated[
        str | None,
        Query(
            max_length=32,
            description="settles an inferred architecture's activation: relu, gelu, "
            "gelu(tanh), silu, tanh, sigmoid, leaky_relu(0.2), sine(30)",
        ),
    ] = None,
    input_shape: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^\d{1,6}(,\d{1,6}){0,3}$",
            description="per-sample input shape of an inferred architecture, e.g. 1,8,8",
        ),
    ] = None,
) -> CheckpointOut:
    """Upload a safetensors or PyTorch (zip, weights only) checkpoint: a bare state dict, or
    a training checkpoint whose state dict sits under a common key (extras are ignored and
    listed in ``reading``).

    The architecture comes from the file itself (a self-describing safetensors file written
    by ``graphs.save``) or is inferred from the tensor names and shapes, which
    ``activation`` and ``input_shape`` settle; when neither works the checkpoint is still
    stored, without one, and ``reading.notes`` says why. A body with a
    ``Content-Encoding`` (gzip, ...) is refused with 415: send the bytes as they are. A
    file name is at most 255 characters (422)."""
    reading = service.Reading.parse(activation, input_shape)  # 422 before the body is read
    temp, part_filename = await receive_upload(
        request, services.blobs, services.settings.max_upload_bytes
    )
    name = clean_filename(filename or x_filename or part_filename)
    checkpoint, created = await run_in_threadpool(
        service.ingest,
        services.session_factory,
        services.blobs,
        services.settings,
        caller.tenant_id,
        temp,
        name,
        reading,
    )
    service.check_same_reading(checkpoint, created, reading)
    stored(response, f"/v1/checkpoints/{checkpoint.id}", created)
    return CheckpointOut.model_validate(checkpoint)


@router.get("", response_model=Page[CheckpointOut])
def list_checkpoints(
    session: ReadSessionDep,
    caller: CallerDep,
    page: PageDep,
    created: CreatedDep,
    format: Annotated[
        Literal["safetensors", "pytorch"] | None,
        Query(description="only checkpoints uploaded in this format"),
    ] = None,
    sha256_prefix: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[CheckpointOut]:
    return service.list_checkpoints(
        session, caller.tenant_id, page, created, format, sha256_prefix
    )


@router.get("/{checkpoint_id}", response_model=CheckpointOut, responses={404: PROBLEM})
def get_checkpoint(
    checkpoint_id: IdPath, session: ReadSessionDep, caller: CallerDep
) -> CheckpointOut:
    checkpoint = service.get_checkpoint(session, caller.tenant_id, checkpoint_id)
    return CheckpointOut.model_validate(checkpoint)


@router.get(
    "/{checkpoint_id}/file",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {"schema": BINARY}}},
        404: PROBLEM,
    },
)
def download_checkpoint(
    checkpoint_id: IdPath, session: ReadSessionDep, services: ServicesDep, caller: CallerDep
) -> FileResponse:
    """The stored safetensors file (PyTorch uploads come back converted)."""
    checkpoint = service.get_checkpoint(session, caller.tenant_id, checkpoint_id)
    stem = (checkpoint.filename or f"checkpoint-{checkpoint.id}").rsplit(".", 1)[0]
    return FileResponse(
        services.blobs.path(checkpoint.blob_sha256),
        media_type="application/octet-stream",
        filename=f"{stem}.safetensors",
    )


@router.get(
    "/{checkpoint_id}/graph",
    response_model=GraphView,
    responses={404: PROBLEM, 422: PROBLEM},
)
def checkpoint_graph(
    checkpoint_id: IdPath,
    session: ReadSessionDep,
    services: ServicesDep,
    caller: CallerDep,
    detail: Annotated[
        Literal["auto", "full", "layers"],
        Query(
            description="full: every neuron and weight (422 past 5,000 neurons or 100,000 "
            "weights); layers: one box per layer; auto: full up to 400 neurons and 5,000 "
            "weights, else layers"
        ),
    ] = "auto",
) -> GraphView:
    """A picture of the checkpoint's parameter graph for drawing: every neuron and weight
    of a small network, a layer diagram of a large one. 422 when the checkpoint has no
    architecture."""
    checkpoint = service.get_checkpoint(session, caller.tenant_id, checkpoint_id)
    return GraphView.model_validate(graph_view(checkpoint, services.blobs, detail))


@router.delete(
    "/{checkpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: PROBLEM, 409: PROBLEM},
)
def delete_checkpoint(
    checkpoint_id: IdPath,
    session: SessionDep,
    services: ServicesDep,
    caller: CallerDep,
    cascade: Annotated[
        bool,
        Query(description="also delete what uses it: its predictions, the merges it was an "
              "input or the result of (with their jobs)"),
    ] = False,
) -> Response:
    """Delete a checkpoint; 409 naming what uses it, unless ``cascade``. Its file goes once
    no record names the same bytes."""
    job_ids = service.delete_checkpoint(
        session, services.blobs, caller.tenant_id, checkpoint_id, cascade
    )
    services.notifier.deleted(job_ids)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{checkpoint_id}/inspect",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={404: PROBLEM},
)
def inspect_checkpoint(
    checkpoint_id: IdPath, session: SessionDep, services: ServicesDep, caller: CallerDep
) -> Response:
    """Queue an ``inspect`` job (per-tensor statistics); poll ``Location`` for the result."""
    service.get_checkpoint(session, caller.tenant_id, checkpoint_id)
    job = submit_job(
        session, services, caller.tenant_id, "inspect", {"checkpoint_id": checkpoint_id}
    )
    return job_response(job, status.HTTP_202_ACCEPTED, location=True)
