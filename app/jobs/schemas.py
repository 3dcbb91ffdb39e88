"""Job resources as the API shows them, and the table of result models per job kind.

A domain's ``schemas.py`` declares the model of its kind's ``result`` and registers it with
:func:`register_result`; the OpenAPI then types a job as a union discriminated by ``kind``
(:func:`job_variants`), and a client parses a result with :meth:`JobOut.typed_result`.
This package still imports no domain: the domains come to it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.models import JobStatus

RESULT_MODELS: dict[str, type[BaseModel]] = {}


def register_result(kind: str, model: type[BaseModel]) -> type[BaseModel]:
    """Declare the model of a job kind's ``result`` (one per kind)."""
    if RESULT_MODELS.get(kind, model) is not model:
        raise ValueError(f"job kind {kind!r} already has a result model")
    RESULT_MODELS[kind] = model
    return model


class JobCreate(BaseModel):
    kind: str = Field(
        examples=["inspect"], description="the job kind (see the kinds of `JobOut`)"
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"checkpoint_id": 1}],
        description="the kind's parameters (the body its own route takes)",
    )


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="job id")
    kind: str = Field(description="job kind: what the job does, and the type of its result")
    status: JobStatus = Field(
        description="queued → running → succeeded | failed | canceled (the last three are "
        "terminal)"
    )
    progress: float = Field(description="fraction done, 0 to 1")
    progress_detail: dict[str, Any] | None = Field(
        default=None,
        description="what the kind reports beside the fraction (a training job: epoch, train "
        "loss, validation metric, ETA)",
    )
    params: dict[str, Any] = Field(description="the parameters the job was queued with")
    result: dict[str, Any] | None = Field(
        description="what the job produced (its kind's result model), once succeeded"
    )
    error: str | None = Field(description="why the job failed or was canceled")
    attempts: int = Field(description="times a worker has started it (a lost worker's "
                          "job is retried)")
    max_attempts: int = Field(description="attempts after which it fails")
    cancel_requested: bool = Field(description="a cancel was asked for; the worker stops "
                                   "at its next progress point")
    worker_id: str | None = Field(description="the worker that holds or held it")
    created_at: dt.datetime = Field(description="when it was queued (UTC)")
    started_at: dt.datetime | None = Field(description="when its last attempt started")
    finished_at: dt.datetime | None = Field(description="when it reached a terminal status")
    heartbeat_at: dt.datetime | None = Field(
        description="the holding worker's last sign of life"
    )

    def typed_result(self) -> BaseModel | None:
        """The result parsed into its kind's registered model (None before success, or
        for a kind that registered none)."""
        model = RESULT_MODELS.get(self.kind)
        if model is None or self.result is None:
            return None
        return model.model_validate(self.result)


def job_variants(kinds: list[str]) -> list[type[BaseModel]]:
    """One model per kind: ``JobOut`` with ``kind`` fixed and ``result`` typed (free-form
    for a kind that registered no result model). Their union, discriminated by ``kind``, is
    what the OpenAPI calls ``JobOut``."""
    variants = []
    for kind in kinds:
        result_model: Any = RESULT_MODELS.get(kind, dict[str, Any])
        name = "".join(part.capitalize() for part in kind.replace("-", "_").split("_"))
        variants.append(
            create_model(
                f"{name}Job",
                __base__=JobOut,
                __doc__=f"A job of kind `{kind}`.",
                kind=(Literal[kind], Field(description="job kind")),  # type: ignore[valid-type]
                result=(
                    result_model | None,
                    Field(description=f"what the `{kind}` job produced, once succeeded"),
                ),
            )
        )
    return variants
