"""Finished jobs announced over PostgreSQL ``LISTEN``/``NOTIFY``, for watchers in other
processes.

A worker process (``weightscope worker``) finishes jobs the API process did not see
finish; without a word from it, a long-poll had to read the row every 10-100 ms, which cost
a read per waiting client per poll and up to 100 ms of latency per job. Now the worker's
finishing transaction also sends a ``NOTIFY`` with the job ids, which PostgreSQL delivers
at commit, and the API process listens on one connection and wakes the watchers of those
jobs (they read the row once). While the listener is connected, a long-poll for a job
queued here polls only as a safety net, as with the embedded worker. SQLite has no such
channel: there, only the embedded worker signals (through its pipe or in process).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import psycopg
from sqlalchemy import bindparam, select
from sqlalchemy import func as sql
from sqlalchemy.orm import Session

from app.jobs.notify import JobNotifier

log = logging.getLogger(__name__)

CHANNEL = "weightscope_jobs"
RECONNECT_SECONDS = 1.0
_NOTIFY = select(sql.pg_notify(CHANNEL, bindparam("ids")))


def announce(session: Session, job_ids: Iterable[int]) -> None:
    """In the transaction that finishes the jobs: tell listeners once it commits (a no-op
    on other databases)."""
    ids = ",".join(str(job_id) for job_id in job_ids)
    if ids and session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY, {"ids": ids})


async def listen(conninfo: str, notifier: JobNotifier) -> None:
    """Wake the watchers of every job announced on ``CHANNEL``, until cancelled; while
    disconnected (reconnecting every second), watchers fall back to polling."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                log.info("listening for finished jobs on %s", CHANNEL)
                with notifier.signalling():
                    async for notice in conn.notifies():
                        notifier.notify(int(part) for part in notice.payload.split(",") if part)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("job completion listener: %s; retrying", str(exc).splitlines()[0])
        await asyncio.sleep(RECONNECT_SECONDS)
