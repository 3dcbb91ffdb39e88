"""Watching a job: long-poll (``?wait=``) and server-sent events.

Both read the job row, the one source of truth. Between reads they wait on the process's
:class:`JobNotifier`, which the embedded worker (and a cancel request) signals once a
job's terminal state has committed, so a job finished in this process is answered at
once; the worker hands the notifier the terminal rows its UPDATEs returned, so that answer
needs no read at all. Jobs finished elsewhere (``weightscope worker`` processes,
recovery) are seen by polling, with a backoff that starts at 10 ms and settles at 100 ms
(a primary-key read ten times a second per waiting client; a longer interval showed up
directly in end-to-end latency); when an embedded worker is running, polling starts at
100 ms since it signals its own jobs, and a long-poll for a job queued in this process
polls only every ``OPEN_POLL_SECONDS`` (each poll is a thread hop and a read, a large
part of a prediction's cost on a busy CPU). Neither needs a broker, and both work the
same with every queue backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Query, Response
from sqlalchemy import bindparam, select
from starlette.concurrency import run_in_threadpool

from app.deps import Services
from app.jobs.schemas import JobOut
from app.models import Job
from app.problems import ProblemError

Wait = Annotated[float, Query(ge=0, description="long-poll: seconds to wait for a terminal status")]

FIRST_DELAY = 0.01
MAX_DELAY = 0.1
OPEN_POLL_SECONDS = 0.5  # a job queued here, which the embedded worker will signal
KEEPALIVE_SECONDS = 15.0
JOBS = Job.__table__
_READ_JOB = select(JOBS).where(JOBS.c.id == bindparam("id"))  # built once


async def _pause(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``event`` is set; clears it for the next pause."""
    if seconds > 0 and not event.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
    event.clear()


def read_job(services: Services, job_id: int) -> JobOut:
    """The job row as the API shows it (one Core SELECT on a pooled connection: every
    long-poll and event stream reads through here, so it skips the ORM)."""
    with services.engine.connect() as connection:
        row = connection.execute(_READ_JOB, {"id": job_id}).mappings().first()
    if row is None:
        raise ProblemError(404, f"job {job_id} does not exist", slug="not-found")
    return JobOut.model_validate(dict(row))


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
    headers = {"Location": f"/v1/jobs/{job.id}"} if location else None
    return Response(
        job.model_dump_json(), status_code, headers=headers, media_type="application/json"
    )


def sse(event: str, data: str, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


async def job_event_stream(services: Services, job_id: int) -> AsyncIterator[bytes]:
    """``job`` events (the whole job as JSON) on every change of status, progress or
    attempt; the stream ends after the terminal event."""
    loop = asyncio.get_running_loop()
    yield b"retry: 1000\n\n"
    last: tuple[object, ...] | None = None
    sequence = 0
    delay = FIRST_DELAY  # progress is never signalled: poll from the start
    quiet_since = loop.time()
    with services.notifier.watch(job_id) as changed:
        while True:
            job = await run_in_threadpool(read_job, services, job_id)
            state = (job.status, job.progress, job.attempts, job.error)
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
