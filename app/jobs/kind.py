"""What a job kind is, the context a running job sees, and the table of kinds.

A domain's ``tasks.py`` registers its kinds here when it is imported (``app.tasks`` imports
them all, in the API and in every worker); this package never imports a domain. A job
function gets a :class:`JobContext`, loads its own inputs (from ``ctx.params`` and the
database), reports progress (which is also where cancellation and lost ownership are
noticed) and returns a JSON-able result. It never writes the job row itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, create_model
from sqlalchemy.orm import Session

from app.db import SessionFactory
from app.jobs import repository
from app.settings import Settings


class JobCanceled(Exception):
    """Raised at a progress point after a cancel was requested."""


class JobLost(Exception):
    """Raised at a progress point when this worker no longer owns the job (it was requeued)."""


@dataclass
class JobContext:
    job_id: int
    params: dict[str, Any]
    worker_id: str
    attempt: int
    session_factory: SessionFactory
    settings: Settings
    min_progress_interval: float = 0.2
    _last_write: float = field(default=0.0, repr=False)

    def progress(self, fraction: float, detail: dict[str, Any] | None = None) -> None:
        """Record progress (at most every ``min_progress_interval`` s; always when it comes
        with a ``detail`` for the job's ``progress_detail``) and stop if asked to."""
        now = time.monotonic()
        if (
            detail is None
            and self._last_write
            and now - self._last_write < self.min_progress_interval
        ):
            return
        self._last_write = now
        cancel_requested = repository.record_progress(
            self, min(max(fraction, 0.0), 1.0), detail
        )
        if cancel_requested is None:
            raise JobLost(f"job {self.job_id} is no longer held by {self.worker_id}")
        if cancel_requested:
            raise JobCanceled(f"job {self.job_id} was canceled")


Outcome = dict[str, Any] | Exception
# The rows a finished job leaves beside its job row, in the transaction that finishes it.
Persist = Callable[[Session, list[tuple[int, dict[str, Any]]]], None]


@dataclass(frozen=True)
class JobKind:
    """A registered kind. ``run`` does the work in a worker. ``check`` (optional) rejects
    params that refer to missing things at submit time by raising ValueError (a 422) or a
    ``ProblemError`` with its own status; it gets the submitting tenant's id, and anything
    the params name must be that tenant's (another tenant's record is a missing one). A
    ``persist`` finds the tenant of its jobs with ``repository.tenants_of``. ``persist``
    (optional) writes the domain rows of finished jobs (one call for a whole batch) in the
    transaction that marks them succeeded, so a result is stored exactly once.

    ``run_batch`` (optional) runs several claimed jobs whose params have the same
    ``batch_key`` at once (one forward pass for many predictions) and returns one outcome
    per job. ``queue`` is the device class the kind needs: ``cpu``, or ``compute`` for the
    queue named by ``Settings.compute_queue``. ``forget`` (optional) undoes ``persist``.
    """

    name: str
    params_model: type[BaseModel]
    run: Callable[[JobContext], dict[str, Any]]
    check: Callable[[Session, Any, Settings, int], None] | None = None
    persist: Persist | None = None
    description: str = ""
    run_batch: Callable[[list[JobContext]], list[Outcome]] | None = None
    batch_key: Callable[[dict[str, Any]], str] | None = None
    queue: Literal["cpu", "compute"] = "cpu"
    # Deletes the domain rows ``persist`` wrote for these jobs, in the transaction that
    # deletes the jobs (``DELETE /v1/jobs/{id}``): a job and what it produced go together.
    forget: Callable[[Session, list[int]], None] | None = None


# A params field of this name is the submitting tenant's id: the service sets it from the
# API key, and a caller never sends it (``JobKind.request_model`` leaves it out).
TENANT_FIELD = "tenant_id"


def request_model(kind: JobKind) -> type[BaseModel]:
    """What a caller sends as the kind's params: its params model less ``TENANT_FIELD``."""
    fields = kind.params_model.model_fields
    if TENANT_FIELD not in fields:
        return kind.params_model
    cached = _REQUEST_MODELS.get(kind.params_model)
    if cached is None:
        kept = {
            name: (field.annotation, field)
            for name, field in fields.items()
            if name != TENANT_FIELD
        }
        cached = create_model(  # type: ignore[call-overload]
            f"{kind.params_model.__name__}Request",
            __config__=kind.params_model.model_config,
            __doc__=kind.params_model.__doc__,
            **kept,
        )
        _REQUEST_MODELS[kind.params_model] = cached
    return cached  # type: ignore[no-any-return]


_REQUEST_MODELS: dict[type[BaseModel], type[BaseModel]] = {}

KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    if kind.name in KINDS and KINDS[kind.name] is not kind:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown job kind {name!r}; known: {', '.join(sorted(KINDS))}") from None


def queue_name(kind_name: str, settings: Settings) -> str:
    """The device-class queue of a kind: ``cpu``, or ``Settings.compute_queue``."""
    kind = KINDS.get(kind_name)
    return settings.compute_queue if kind is not None and kind.queue == "compute" else "cpu"
