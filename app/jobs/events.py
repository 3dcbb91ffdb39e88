"""Watching a job: long-poll (``?wait=``) and server-sent events.

Both read the job row, the one source of truth, with a backoff that starts at 10 ms (a
fast job is seen almost at once) and settles at 100 ms (a primary-key read ten times a
second per waiting client; a longer interval showed up directly in end-to-end latency), so
neither needs a broker or a notification channel and both work the same with every queue
backend.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Query
from starlette.concurrency import run_in_threadpool

from app.deps import Services
from app.jobs import service
from app.jobs.schemas import JobOut

Wait = Annotated[float, Query(ge=0, description="long-poll: seconds to wait for a terminal status")]

FIRST_DELAY = 0.01
MAX_DELAY = 0.1
KEEPALIVE_SECONDS = 15.0


def read_job(services: Services, job_id: int) -> JobOut:
    with services.session_factory() as session:
        return JobOut.model_validate(service.get_job(session, job_id))


async def wait_for_job(services: Services, job_id: int, wait: float) -> JobOut:
    """The job once terminal, or as it is when ``wait`` (capped) runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, services.settings.max_wait_seconds)
    delay = FIRST_DELAY
    while True:
        job = await run_in_threadpool(read_job, services, job_id)
        if job.status.terminal or loop.time() >= deadline:
            return job
        await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
        delay = min(delay * 2, MAX_DELAY)


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
    delay = FIRST_DELAY
    quiet_since = loop.time()
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
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)
