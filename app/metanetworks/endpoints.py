"""HTTP routes for metanetworks: the catalog (built-ins and the caller's own), training one
on a zoo (a ``train`` job), and deleting the caller's own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from app.deps import ReadSessionDep, ServicesDep, SessionDep
from app.jobs.events import Wait
from app.jobs.schemas import JobOut
from app.jobs.service import accept_job
from app.metanetworks import repository, service
from app.metanetworks.schemas import DeletedOut, MetanetworkDetail, MetanetworkOut, TrainRequest
from app.models import MetanetworkVersion
from app.problems import PROBLEM
from app.tenancy import Caller, current_caller

MetanetworkRef = Annotated[
    str, Path(description="a metanetwork's name (its latest version) or name@N (version N)")
]

router = APIRouter(prefix="/v1/metanetworks", tags=["metanetworks"])
CallerDep = Annotated[Caller, Depends(current_caller)]


def _out(row: MetanetworkVersion) -> dict:
    card = row.card
    return {
        "name": row.name,
        "task": row.task,
        "labels": list(card.get("labels") or []),
        "domain": dict(card.get("domain") or {}),
        "metrics": dict(card.get("metrics") or {}),
        "version": service.version_label(row),
        "version_number": row.version,
        "builtin": row.tenant_id is None,
        "status": row.status,
        "zoo_id": row.zoo_id,
        "job_id": row.job_id,
        "created_at": row.created_at,
    }


@router.get("", response_model=list[MetanetworkOut])
def list_metanetworks(session: ReadSessionDep, caller: CallerDep) -> list[MetanetworkOut]:
    """The latest version of every metanetwork: built-ins first, then the caller's own."""
    return [
        MetanetworkOut.model_validate(_out(row))
        for row in repository.catalog(session, caller.tenant_id)
    ]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={200: {"model": JobOut}, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
)
async def train_metanetwork(
    body: TrainRequest, services: ServicesDep, caller: CallerDep, wait: Wait = 0
) -> Response:
    """Queue a ``train`` job: 202 with the job. It ends with a new version of ``name``
    (``name@N``), or failed with the reason; its progress detail carries the epoch, the
    training loss, the validation metric and an ETA."""
    params = body.model_dump(mode="json") | {"tenant_id": caller.tenant_id}
    return await accept_job(services, caller.tenant_id, "train", params, wait)


@router.get("/{ref}/versions", response_model=list[MetanetworkOut], responses={404: PROBLEM})
def list_versions(
    ref: MetanetworkRef, session: ReadSessionDep, caller: CallerDep
) -> list[MetanetworkOut]:
    """Every version of a metanetwork, oldest first."""
    row = service.require(session, ref, caller.tenant_id)
    rows = repository.versions(session, row.name, caller.tenant_id)
    return [MetanetworkOut.model_validate(_out(r)) for r in rows]


@router.get("/{ref}", response_model=MetanetworkDetail, responses={404: PROBLEM})
def get_metanetwork(
    ref: MetanetworkRef, session: ReadSessionDep, caller: CallerDep
) -> MetanetworkDetail:
    """``name`` (the latest version) or ``name@N``."""
    row = service.require(session, ref, caller.tenant_id)
    return MetanetworkDetail.model_validate(_out(row) | {"card": row.card})


@router.delete("/{ref}", response_model=DeletedOut, responses={404: PROBLEM, 409: PROBLEM})
def delete_metanetwork(
    ref: MetanetworkRef, session: SessionDep, services: ServicesDep, caller: CallerDep
) -> DeletedOut:
    """Delete every version of the caller's metanetwork, or one (``name@N``); built-ins
    cannot be deleted (409)."""
    versions = service.delete(session, services.blobs, ref, caller.tenant_id)
    return DeletedOut(name=service.parse_ref(ref)[0], versions=versions)
