"""HTTP routes for predictions: ask (JSON, or upload-and-ask in one request), list, read,
delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.checkpoints import service as checkpoints_service
from app.checkpoints.upload import clean_filename, receive_upload
from app.deps import ReadSessionDep, ServicesDep, SessionDep
from app.ids import IdPath, IdQuery
from app.jobs.events import Wait
from app.jobs.schemas import JobOut
from app.jobs.service import accept_job
from app.pagination import CreatedDep, Page, PageDep
from app.predictions import service
from app.predictions.schemas import PredictionCreate, PredictionOut
from app.problems import PROBLEM, ProblemError, body_errors
from app.tenancy import CallerDep

router = APIRouter(prefix="/v1/predictions", tags=["predictions"])

PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": PredictionCreate.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "the checkpoint, stored as POST /v1/checkpoints would",
                    }
                },
                "required": ["file"],
            }
        },
    },
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    openapi_extra={"requestBody": PREDICT_BODY},
    responses={200: {"model": JobOut}, 404: PROBLEM, 413: PROBLEM, 422: PROBLEM},
)
async def create_prediction(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    wait: Wait = 0,
    metanetwork: Annotated[
        str | None, Query(description="multipart uploads: the metanetwork to ask")
    ] = None,
    force: Annotated[bool, Query(description="multipart uploads: answer out of domain")] = False,
) -> Response:
    """Queue a ``predict`` job: 202 with the job (``Location``). JSON body
    ``{checkpoint_id, metanetwork, force}``, or a multipart ``file`` (uploaded first, as
    ``POST /v1/checkpoints`` would) with ``?metanetwork=``. With ``?wait=S`` the answer
    comes when the job is done (200) or when S seconds have passed (202)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        if not metanetwork:
            raise ProblemError(
                422, "multipart prediction requests need ?metanetwork=NAME", slug="validation"
            )
        # before the body is read: a request refused for its metanetwork stores nothing
        await run_in_threadpool(service.require_metanetwork, services, metanetwork, caller)
        temp, part_filename = await receive_upload(
            request, services.blobs, services.settings.max_upload_bytes
        )
        checkpoint, created = await run_in_threadpool(
            checkpoints_service.ingest,
            services.session_factory,
            services.blobs,
            services.settings,
            caller.tenant_id,
            temp,
            clean_filename(part_filename),
        )
        body = PredictionCreate(checkpoint_id=checkpoint.id, metanetwork=metanetwork, force=force)
        try:
            return await accept_job(
                services, caller.tenant_id, "predict", body.model_dump(mode="json"), wait
            )
        except ProblemError:  # refused (no architecture, out of domain): keep nothing new
            if created:
                await run_in_threadpool(
                    service.forget_upload, services, caller.tenant_id, checkpoint.id
                )
            raise
    elif media_type in ("application/json", ""):
        try:
            body = PredictionCreate.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(body_errors(exc)) from None
    else:
        raise ProblemError(
            415,
            f"unsupported content type {media_type!r}; send JSON or multipart/form-data",
            slug="unsupported-media-type",
        )
    return await accept_job(
        services, caller.tenant_id, "predict", body.model_dump(mode="json"), wait
    )


@router.get("", response_model=Page[PredictionOut])
def list_predictions(
    session: ReadSessionDep,
    caller: CallerDep,
    page: PageDep,
    created: CreatedDep,
    checkpoint_id: IdQuery = None,
    metanetwork: Annotated[
        str | None,
        Query(
            max_length=140,
            description="only answers of this metanetwork: NAME (any version) or NAME@N "
            "(version N, N >= 1)",
        ),
    ] = None,
) -> Page[PredictionOut]:
    return service.list_predictions(
        session, caller.tenant_id, page, created, checkpoint_id, metanetwork
    )


@router.get("/{prediction_id}", response_model=PredictionOut, responses={404: PROBLEM})
def get_prediction(
    prediction_id: IdPath, session: ReadSessionDep, caller: CallerDep
) -> PredictionOut:
    prediction = service.get_prediction(session, caller.tenant_id, prediction_id)
    return PredictionOut.model_validate(prediction)


@router.delete(
    "/{prediction_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: PROBLEM}
)
def delete_prediction(
    prediction_id: IdPath,
    session: SessionDep,
    services: ServicesDep,
    caller: CallerDep,
) -> Response:
    """Delete a prediction and the job that produced it; the checkpoint stays."""
    services.notifier.deleted(service.delete_prediction(session, caller.tenant_id, prediction_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
