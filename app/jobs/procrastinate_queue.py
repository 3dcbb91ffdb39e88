"""Scale-out: procrastinate on the service's own PostgreSQL carries job ids to workers.

The ``jobs`` table stays the only truth about a job; a procrastinate job carries nothing
but its id (``run_job(job_id)``), on the queue of the kind's device class (``cpu`` or
``gpu``), with the queueing lock ``job-<id>`` so one id is never waiting twice. The task
calls the same guarded ``run_job`` as the embedded worker, so a second delivery of an id
finds the job already claimed and does nothing.

Failures and how they end:

* the API commits a job and its enqueue fails: the row stays ``queued``; the maintenance
  pass of any worker re-sends queued rows older than ``redefer_after_seconds`` that have no
  waiting or running procrastinate job;
* a worker is killed mid-job: its procrastinate heartbeat stops, so after
  ``stalled_worker_seconds`` the maintenance pass retries its stalled procrastinate job
  (procrastinate's ``get_stalled_jobs`` / ``retry_job``); its ``workers`` row goes silent,
  so after ``stale_after_seconds`` the job row is requeued (``recover_stale_jobs``); the
  retried delivery (or a re-send) then claims the job, and only that attempt may write the
  result (guarded update, unique ``job_id`` in the result tables).

procrastinate's own schema (``procrastinate_*`` tables and functions) is applied by
:func:`ensure_schema` at startup of the API and of each worker, under an advisory lock and
only when absent; it is not part of the Alembic migrations, which own only our tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

import procrastinate
import psycopg
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.schema import SchemaManager
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from app.db import SessionFactory, session_scope
from app.jobs.runner import recover_stale_jobs, run_job
from app.models import Job, JobStatus, utcnow
from app.settings import Settings

log = logging.getLogger(__name__)

TASK_NAME = "weightscope.run_job"
SCHEMA_LOCK = 7_340_001  # pg_advisory_xact_lock key while applying the schema


def conninfo(database_url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL (query options such as a
    ``search_path`` carry over)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("WEIGHTSCOPE_QUEUE=procrastinate needs a PostgreSQL database_url")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def queueing_lock(job_id: int) -> str:
    return f"job-{job_id}"


_CANCEL_WAITING = text(
    "SELECT procrastinate_cancel_job_v1(id, false, true) FROM procrastinate_jobs"
    " WHERE status = 'todo' AND queueing_lock = ANY(:locks)"
)


def drop_deliveries(session_factory: SessionFactory, job_ids: list[int]) -> None:
    """Delete the waiting procrastinate jobs of jobs that a micro-batch finished alongside
    the one delivered (procrastinate's own cancel-and-delete, for all of them in one
    statement). Each would be a no-op delivery (the job is claimed, nothing runs), but a
    worker fetched, ran and finished them one by one before the next real job: 10-15 of
    them after every batch of a busy queue."""
    if job_ids:
        with session_scope(session_factory) as session:
            session.execute(_CANCEL_WAITING, {"locks": [queueing_lock(i) for i in job_ids]})


def ensure_schema(database_url: str) -> None:
    with psycopg.connect(conninfo(database_url)) as connection, connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        present = connection.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if present is None or present[0] is None:
            connection.execute(SchemaManager.get_schema().encode())
            log.info("applied the procrastinate schema")


def defer(app: procrastinate.App, job_id: int, queue: str) -> None:
    with contextlib.suppress(AlreadyEnqueued):  # that id is already waiting
        app.configure_task(TASK_NAME, queue=queue, queueing_lock=queueing_lock(job_id)).defer(
            job_id=job_id
        )


class ProcrastinateQueue:
    """The API side: defers ids synchronously (called after the job row committed)."""

    def __init__(self, database_url: str) -> None:
        ensure_schema(database_url)
        self.app = procrastinate.App(
            connector=procrastinate.SyncPsycopgConnector(
                conninfo=conninfo(database_url), min_size=1, max_size=8
            )
        )
        self.app.open()

    def enqueue(self, job_id: int, queue: str) -> None:
        defer(self.app, job_id, queue)

    def close(self) -> None:
        self.app.close()


def orphaned_queued_jobs(
    session_factory: SessionFactory, database_url: str, older_than: dt.timedelta
) -> list[tuple[int, str]]:
    """Queued job rows, older than ``older_than``, with no procrastinate job waiting or
    running for them: (id, kind)."""
    cutoff = utcnow() - older_than
    with session_factory() as session:
        rows = session.execute(
            select(Job.id, Job.kind)
            .where(Job.status == JobStatus.queued, Job.created_at < cutoff)
            .order_by(Job.id)
            .limit(1000)
        ).all()
    if not rows:
        return []
    with psycopg.connect(conninfo(database_url)) as connection:
        live = {
            lock
            for (lock,) in connection.execute(
                "SELECT queueing_lock FROM procrastinate_jobs "
                "WHERE status IN ('todo', 'doing') AND queueing_lock = ANY(%s)",
                ([queueing_lock(job_id) for job_id, _ in rows],),
            )
        }
    return [(job_id, kind) for job_id, kind in rows if queueing_lock(job_id) not in live]


async def maintain(
    app: procrastinate.App, session_factory: SessionFactory, settings: Settings
) -> None:
    """One maintenance pass: requeue job rows of dead workers, retry procrastinate jobs of
    stalled workers, re-send queued rows that nobody will deliver."""
    from app.jobs.submit import queue_name

    stale = dt.timedelta(seconds=settings.stale_after_seconds)
    requeued = await asyncio.to_thread(recover_stale_jobs, session_factory, stale)
    if requeued:
        log.warning("requeued jobs of dead workers: %s", requeued)
    stalled = await app.job_manager.get_stalled_jobs(
        seconds_since_heartbeat=settings.stalled_worker_seconds
    )
    for job in stalled:
        try:
            await app.job_manager.retry_job(job)
            log.warning("retrying procrastinate job %s of a stalled worker", job.id)
        except Exception:  # another worker re-sent or retried it first
            log.info("procrastinate job %s was already retried", job.id)
    orphans = await asyncio.to_thread(
        orphaned_queued_jobs,
        session_factory,
        settings.database_url,
        dt.timedelta(seconds=settings.redefer_after_seconds),
    )
    for job_id, kind in orphans:
        try:
            await app.configure_task(
                TASK_NAME, queue=queue_name(kind, settings), queueing_lock=queueing_lock(job_id)
            ).defer_async(job_id=job_id)
            log.warning("re-sent queued job %s that had no procrastinate job", job_id)
        except AlreadyEnqueued:
            pass


async def _maintenance_loop(
    app: procrastinate.App, session_factory: SessionFactory, settings: Settings
) -> None:
    interval = max(min(settings.stale_after_seconds, settings.stalled_worker_seconds) / 2, 0.2)
    while True:
        try:
            await maintain(app, session_factory, settings)
        except Exception:
            log.exception("procrastinate maintenance failed; retrying")
        await asyncio.sleep(interval)


def run_procrastinate_worker(
    session_factory: SessionFactory, settings: Settings, worker_id: str, queues: list[str]
) -> None:
    """Serve ``queues`` until SIGINT/SIGTERM: one job at a time (one process per GPU)."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=conninfo(settings.database_url))
    )

    @app.task(name=TASK_NAME, pass_context=False)
    def run(job_id: int) -> None:
        finished: list[int] = []
        run_job(job_id, session_factory, settings, worker_id, notify=finished.extend)
        drop_deliveries(session_factory, [i for i in finished if i != job_id])

    async def main() -> None:
        async with app.open_async():
            maintenance = asyncio.create_task(_maintenance_loop(app, session_factory, settings))
            try:
                await app.run_worker_async(
                    queues=queues,
                    name=worker_id,
                    concurrency=1,
                    fetch_job_polling_interval=settings.worker_poll_seconds,
                    update_heartbeat_interval=settings.heartbeat_seconds,
                    stalled_worker_timeout=settings.stalled_worker_seconds,
                    delete_jobs="successful",
                )
            finally:
                maintenance.cancel()

    ensure_schema(settings.database_url)
    asyncio.run(main())
