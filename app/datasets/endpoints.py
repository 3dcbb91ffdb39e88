"""HTTP routes for datasets: small evaluation sets for merges."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from app.checkpoints.endpoints import UPLOAD_BODY
from app.checkpoints.upload import FilenameQuery, clean_filename, receive_upload
from app.datasets import service
from app.datasets.schemas import DatasetOut
from app.deps import ReadSessionDep, ServicesDep, SessionDep
from app.ids import IdPath
from app.pagination import Page, PageDep
from app.problems import PROBLEM
from app.responses import stored
from app.tenancy import CallerDep

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={200: {"model": DatasetOut}, 413: PROBLEM, 415: PROBLEM, 422: PROBLEM},
)
async def upload_dataset(
    request: Request,
    response: Response,
    services: ServicesDep,
    caller: CallerDep,
    filename: FilenameQuery = None,
) -> DatasetOut:
    """Upload a safetensors file with ``x`` (float, samples first) and ``y`` (int class
    indices); 201 new, 200 when the same bytes were already stored. A file name is at most
    255 characters (422), as for checkpoints."""
    temp, part_filename = await receive_upload(
        request, services.blobs, services.settings.max_dataset_bytes
    )
    name = clean_filename(filename or part_filename)
    dataset, created = await run_in_threadpool(
        service.ingest_dataset,
        services.session_factory,
        services.blobs,
        services.settings,
        caller.tenant_id,
        temp,
        name,
    )
    stored(response, f"/v1/datasets/{dataset.id}", created)
    return DatasetOut.model_validate(dataset)


@router.get("", response_model=Page[DatasetOut])
def list_datasets(session: ReadSessionDep, caller: CallerDep, page: PageDep) -> Page[DatasetOut]:
    return service.list_datasets(session, caller.tenant_id, page)


@router.get("/{dataset_id}", response_model=DatasetOut, responses={404: PROBLEM})
def get_dataset(dataset_id: IdPath, session: ReadSessionDep, caller: CallerDep) -> DatasetOut:
    return DatasetOut.model_validate(service.get_dataset(session, caller.tenant_id, dataset_id))


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: PROBLEM, 409: PROBLEM},
)
def delete_dataset(
    dataset_id: IdPath,
    session: SessionDep,
    services: ServicesDep,
    caller: CallerDep,
    cascade: Annotated[
        bool, Query(description="also delete the merges that used it (with their jobs)")
    ] = False,
) -> Response:
    """Delete a dataset; its file goes once no record names the same bytes."""
    job_ids = service.delete_dataset(session, services.blobs, caller.tenant_id, dataset_id, cascade)
    services.notifier.deleted(job_ids)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
