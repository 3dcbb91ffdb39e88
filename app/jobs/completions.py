"""Finished jobs announced over PostgreSQL ``LISTEN``/``NOTIFY``: the procrastinate
queue's one way of telling the API that a worker process finished a job.

The finishing transaction sends a ``NOTIFY`` with the job ids, which PostgreSQL delivers
at commit; the API process listens on one connection and wakes the watchers of those jobs
(they read the row once).
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
    """In the transaction that finishes the jobs: tell listeners once it commits."""
    ids = ",".join(str(job_id) for job_id in job_ids)
    if ids:
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
