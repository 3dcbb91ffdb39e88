"""Watching a job: long-poll (``?wait=``) and server-sent events.

Both read the job row, the one source of truth. Between reads they wait on the process's
:class:`JobNotifier`, which the queue's completion signal (the embedded worker's finished
rows, or PostgreSQL NOTIFY with procrastinate) and a cancel request set once a job's
terminal state has committed; a finished row handed over by the embedded worker needs no
read at all. Jobs nobody here signals are seen by polling with a backoff, and a long-poll
for a job queued here, which will be signalled, reads only every ``OPEN_POLL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Query, Response
from starlette.concurrency import run_in_threadpool

from app.deps import Services
from app.jobs.repository import read_job_row
from app.jobs.schemas import JobOut
from app.problems import ProblemError
from app.responses import job_path, located

Wait = Annotated[float, Query(ge=0, description="long-poll: seconds to wait for a terminal status")]

FIRST_DELAY = 0.01
MAX_DELAY = 0.1
OPEN_POLL_SECONDS = 0.5  # a job queued here, which the embedded worker will signal
KEEPALIVE_SECONDS = 15.0


async def _pause(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``event`` is set; clears it for the next pause."""
    if seconds > 0 and not event.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
    event.clear()


def read_job(services: Services, job_id: int) -> JobOut:
    """The job row as the API shows it."""
    row = read_job_row(services.session_factory, job_id)
    if row is None:
        raise ProblemError(404, f"job {job_id} does not exist", slug="not-found")
    return JobOut.model_validate(row)


def _first_delay(services: Services) -> float:
    return MAX_DELAY if services.notifier.signals_completions else FIRST_DELAY


async def wait_for_job(services: Services, job_id: int, wait: float) -> JobOut:
    """The job once terminal, or as it is when ``wait`` (capped) runs out.

    A job this process saw finish comes from the notifier, with no read. A job it queued
    and has not seen finish (``JobNotifier.is_open``) is waited for before its first read,
    and then polled every ``OPEN_POLL_SECONDS`` only: its finish is signalled, and a poll
    is needed just for the rare ends nobody here signals (another process's worker or
    cancel, recovery giving up on it). Any wake-up is followed by a read."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, services.settings.max_wait_seconds)
    delay = _first_delay(services)
    notifier = services.notifier
    with notifier.watch(job_id) as changed:
        read_now = not (wait > 0 and notifier.is_open(job_id))
        while True:
            job = notifier.terminal(job_id)
            if job is None and (read_now or loop.time() >= deadline):
                job = await run_in_threadpool(read_job, services, job_id)
            if job is not None and (job.status.terminal or loop.time() >= deadline):
                return job
            pause = OPEN_POLL_SECONDS if notifier.is_open(job_id) else delay
            await _pause(changed, min(pause, max(deadline - loop.time(), 0)))
            delay = min(delay * 2, MAX_DELAY)
            read_now = True


def job_response(job: JobOut, status_code: int = 200, *, location: bool = False) -> Response:
    """The job as JSON, serialized once by pydantic (the same bytes FastAPI's
    ``response_model`` path makes, without validating the model a second time)."""
    response = Response(job.model_dump_json(), status_code, media_type="application/json")
    return located(response, job_path(job.id)) if location else response


def sse(event: str, data: str, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


async def job_event_stream(services: Services, job_id: int) -> AsyncIterator[bytes]:
    """``job`` events (the whole job as JSON) on every change of status, progress, progress
    detail or attempt; the stream ends after the terminal event."""
    loop = asyncio.get_running_loop()
    yield b"retry: 1000\n\n"
    last: tuple[object, ...] | None = None
    sequence = 0
    delay = FIRST_DELAY  # progress is never signalled: poll from the start
    quiet_since = loop.time()
    with services.notifier.watch(job_id) as changed:
        while True:
            job = await run_in_threadpool(read_job, services, job_id)
            state = (job.status, job.progress, job.progress_detail, job.attempts, job.error)
            if state != last:
                last, sequence, delay = state, sequence + 1, FIRST_DELAY
                quiet_since = loop.time()
                yield sse("job", json.dumps(job.model_dump(mode="json")), sequence)
                if job.status.terminal:
                    return
            elif loop.time() - quiet_since > KEEPALIVE_SECONDS:
                quiet_since = loop.time()
                yield b": keep-alive\n\n"
            await _pause(changed, delay)
            delay = min(delay * 2, MAX_DELAY)
