"""Submitting a job from a request: validate, commit, then hand it to the queue.

The order is what keeps failures clean: the job row is committed first and only then
enqueued, so a failed request never leaves a job behind; an enqueue that fails after the
commit leaves a queued row that the procrastinate maintenance pass re-sends (and that the
in-process workers find by polling anyway).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Response, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.deps import Services
from app.jobs import service
from app.jobs.events import job_response, wait_for_job
from app.jobs.registry import KINDS
from app.jobs.schemas import JobOut
from app.settings import Settings

log = logging.getLogger(__name__)


def queue_name(kind_name: str, settings: Settings) -> str:
    """The device-class queue of a kind: ``cpu``, or ``Settings.compute_queue``."""
    kind = KINDS.get(kind_name)
    return settings.compute_queue if kind is not None and kind.queue == "compute" else "cpu"


def submit_job(session: Session, services: Services, kind: str, params: dict[str, Any]) -> JobOut:
    job = service.create_job(session, kind, params, services.settings)
    services.notifier.accepted(job.id)
    try:
        services.queue.enqueue(job.id, queue_name(kind, services.settings))
    except Exception:  # the row is committed and queued: recovery re-sends it
        log.exception("job %s committed but not enqueued; recovery will re-send it", job.id)
    return job


async def accept_job(
    services: Services, kind: str, params: dict[str, Any], wait: float = 0
) -> Response:
    """Submit (in a worker thread), long-poll when ``wait`` > 0, and answer the way every
    job-creating route does: 202 with ``Location``, or 200 once the job is terminal."""
    job = await run_in_threadpool(_submit, services, kind, params)
    if wait > 0:
        job = await wait_for_job(services, job.id, wait)
    code = status.HTTP_200_OK if job.status.terminal else status.HTTP_202_ACCEPTED
    return job_response(job, code, location=True)


def _submit(services: Services, kind: str, params: dict[str, Any]) -> JobOut:
    with services.session_factory() as session:
        return submit_job(session, services, kind, params)
