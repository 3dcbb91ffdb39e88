"""Scale-out: procrastinate, on the service's own PostgreSQL, runs the jobs.

One state machine: procrastinate's job is the state of a run, and the job row follows it
in the same transactions. The API inserts the row and defers its procrastinate job (the
``run_job`` task with the job id, on the kind's device-class queue, queueing lock
``job-<id>``) in one transaction, so no job is ever without a delivery. A delivery claims
the row (taking it over from an attempt that a dead worker cut short: procrastinate hands
a job to one worker at a time, and again only after that worker stalled). A micro-batch
takes its mates' procrastinate jobs over (``doing``, under the same procrastinate worker)
in the transaction that claims their rows, and finishes them in the transaction that
writes their outcomes, which also NOTIFYs the API (``completions``).

A worker killed mid-job stops heart-beating in procrastinate; the workers retry the
``doing`` jobs of stalled workers (procrastinate's ``get_stalled_jobs``/``retry_job``,
its documented recipe), and the next delivery takes the row over. The row's guarded
updates (attempt number) and the unique ``job_id`` of result rows keep one result per job.
There is no heartbeat or recovery pass of ours beside procrastinate's.

procrastinate's own schema is applied by :func:`ensure_schema` at startup of the API and of
each worker, under an advisory lock and only when absent; the Alembic migrations own only
our tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import time

import procrastinate
import psycopg
from procrastinate.schema import SchemaManager
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.types import String

from app.db import SessionFactory, database_unreachable, read_session, session_scope
from app.jobs import repository
from app.jobs.completions import announce
from app.jobs.runner import QueueHooks, run_job
from app.metrics import serve_worker_metrics
from app.models import JobStatus
from app.settings import Settings

log = logging.getLogger(__name__)

TASK_NAME = "weightscope.run_job"
SCHEMA_LOCK = 7_340_001  # pg_advisory_xact_lock key while applying the schema


def conninfo(database_url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL (query options carry over)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("WEIGHTSCOPE_QUEUE=procrastinate needs a PostgreSQL database_url")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def queueing_lock(job_id: int) -> str:
    return f"job-{job_id}"


def ensure_schema(database_url: str) -> None:
    with psycopg.connect(conninfo(database_url)) as connection, connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        present = connection.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if present is None or present[0] is None:
            connection.execute(SchemaManager.get_schema().encode())
            log.info("applied the procrastinate schema")


_DEFER = text(
    "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, 0, NULL, :lock,"
    " CAST(:args AS jsonb), NULL)::procrastinate_job_to_defer_v1])"
)
_LOCKS = bindparam("locks", type_=ARRAY(String))
_ADOPT = text(
    "UPDATE procrastinate_jobs SET status = 'doing', worker_id = ("
    " SELECT worker_id FROM procrastinate_jobs"
    " WHERE queueing_lock = :leader AND status = 'doing' LIMIT 1)"
    " WHERE status = 'todo' AND queueing_lock = ANY(:locks) RETURNING queueing_lock"
).bindparams(_LOCKS)
_FINISH = text(
    "SELECT procrastinate_finish_job_v1(id, 'succeeded', true) FROM procrastinate_jobs"
    " WHERE status = 'doing' AND queueing_lock = ANY(:locks)"
).bindparams(_LOCKS)


class ProcrastinateQueue:
    """The API side: a job's delivery is deferred in the job row's own transaction."""

    def __init__(self, database_url: str) -> None:
        ensure_schema(database_url)

    def enqueue(self, session: Session, job_id: int, queue: str) -> None:
        values = {
            "queue": queue,
            "task": TASK_NAME,
            "lock": queueing_lock(job_id),
            "args": json.dumps({"job_id": job_id}),
        }
        session.execute(_DEFER, values)

    def committed(self) -> None:
        pass  # procrastinate's own NOTIFY on insert wakes the workers

    def close(self) -> None:
        pass


def adopt(session: Session, leader_id: int, job_ids: list[int]) -> list[int]:
    """Take over the waiting deliveries of a batch's mates; the ids whose we got."""
    locks = {queueing_lock(job_id): job_id for job_id in job_ids}
    taken = session.execute(_ADOPT, {"leader": queueing_lock(leader_id), "locks": list(locks)})
    return sorted(locks[lock] for (lock,) in taken)


def finished(session: Session, leader_id: int, job_ids: list[int]) -> None:
    """The mates' deliveries are done (the leader's is finished by procrastinate when the
    task returns); watchers hear of all of them at commit."""
    mates = [queueing_lock(job_id) for job_id in job_ids if job_id != leader_id]
    if mates:
        session.execute(_FINISH, {"locks": mates})
    announce(session, job_ids)


HOOKS = QueueHooks(adopt=adopt, finished=finished)

_LAST_QUEUE = text(
    "SELECT queue_name FROM procrastinate_jobs WHERE queueing_lock = :lock"
    " ORDER BY id DESC LIMIT 1"
)
_WAITING = text("SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = :lock AND status = 'todo'")
RELEASE_RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
WORKER_RESTART_SECONDS = 1.0


def release(session: Session, settings: Settings, worker_id: str, leader_id: int) -> list[int]:
    """After a run cut short (its database went away): requeue the jobs this worker
    holds, give each a fresh delivery, retire the mates' old ones (the leader's is
    finished by procrastinate when the task returns) and announce those out of attempts.
    A leader never claimed (its claim's answer was lost) is redelivered too. Returns the
    requeued ids."""
    released = repository.release_held(session, worker_id)
    leader = repository.status_of(session, leader_id)
    if leader_id not in released and leader == JobStatus.queued:
        released[leader_id] = JobStatus.queued
    requeued = sorted(i for i, status in released.items() if status == JobStatus.queued)
    mates = [queueing_lock(i) for i in released if i != leader_id]
    if mates:
        session.execute(_FINISH, {"locks": mates})
    for job_id in requeued:
        lock = queueing_lock(job_id)
        if session.execute(_WAITING, {"lock": lock}).first() is None:
            queue = session.execute(_LAST_QUEUE, {"lock": lock}).scalar() or "cpu"
            values = {
                "queue": queue, "task": TASK_NAME, "lock": lock,
                "args": json.dumps({"job_id": job_id}),
            }
            session.execute(_DEFER, values)
    failed = [i for i, status in released.items() if status != JobStatus.queued]
    if failed:
        announce(session, failed)
    return requeued


def release_until_done(
    session_factory: SessionFactory, settings: Settings, worker_id: str, leader_id: int
) -> None:
    """:func:`release`, retried until the database answers again: this task returns
    only once the jobs it held are back in the queue, so no job stays ``running``."""
    for attempt in itertools.count():
        try:
            with session_scope(session_factory) as session:
                requeued = release(session, settings, worker_id, leader_id)
            log.warning("requeued job(s) %s after their run was cut short", requeued)
            return
        except Exception as exc:
            if not database_unreachable(exc):
                log.exception("releasing the jobs of worker %s failed; retrying", worker_id)
            delay = RELEASE_RETRY_SECONDS[min(attempt, len(RELEASE_RETRY_SECONDS) - 1)]
            time.sleep(delay)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def deliver(
    job_id: int, session_factory: SessionFactory, settings: Settings, worker_id: str
) -> None:
    """One delivery of a job (the procrastinate task's body). It returns normally on
    every path, so procrastinate never records a fate the job row does not share: run to
    an outcome; not ours to run (failed if out of attempts); or cut short, after which
    the jobs it held are requeued (:func:`release_until_done`)."""
    try:
        if not run_job(job_id, session_factory, settings, worker_id, hooks=HOOKS):
            repository.give_up(session_factory, job_id)
    except Exception as exc:
        if database_unreachable(exc):
            log.warning("job %s: the database went away (%s)", job_id, _first_line(exc))
        else:
            log.exception("job %s: its run failed outside the job", job_id)
        release_until_done(session_factory, settings, worker_id, job_id)


async def _retry_stalled(app: procrastinate.App, settings: Settings) -> None:
    """procrastinate's recipe for jobs of dead workers: put them back to ``todo``."""
    while True:
        try:
            stalled = await app.job_manager.get_stalled_jobs(
                seconds_since_heartbeat=settings.stalled_worker_seconds
            )
            for job in stalled:
                try:
                    await app.job_manager.retry_job(job)
                    log.warning("retrying procrastinate job %s of a stalled worker", job.id)
                except Exception:  # another worker retried it first
                    log.info("procrastinate job %s was already retried", job.id)
        except Exception as exc:
            if database_unreachable(exc):
                log.warning("retrying stalled jobs: database unreachable (%s)", _first_line(exc))
            else:
                log.exception("retrying stalled jobs failed; trying again")
        await asyncio.sleep(max(settings.stalled_worker_seconds / 2, 0.2))


def run_procrastinate_worker(
    session_factory: SessionFactory, settings: Settings, queues: list[str]
) -> None:
    """Serve ``queues`` until SIGINT/SIGTERM: one job at a time (one process per GPU). The
    caller has applied procrastinate's schema (:func:`ensure_schema`)."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=conninfo(settings.database_url))
    )
    worker_id = repository.new_worker_id()

    @app.task(name=TASK_NAME, pass_context=False)
    def run(job_id: int) -> None:
        deliver(job_id, session_factory, settings, worker_id)

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        async with app.open_async():
            retrying = asyncio.create_task(_retry_stalled(app, settings))
            try:
                while not stopping.is_set():
                    await _run_until_stopped(app, settings, queues, worker_id, stopping)
            finally:
                retrying.cancel()

    serve_worker_metrics(settings.worker_metrics_port)
    asyncio.run(main())


async def _run_until_stopped(
    app: procrastinate.App,
    settings: Settings,
    queues: list[str],
    worker_id: str,
    stopping: asyncio.Event,
) -> None:
    """Run procrastinate's worker until asked to stop. procrastinate stops its worker
    when its heartbeat cannot reach the database; this process outlives an outage
    instead: it starts the worker again once the database answers."""
    worker = asyncio.create_task(
        app.run_worker_async(
            queues=queues,
            name=worker_id,
            concurrency=1,
            fetch_job_polling_interval=settings.worker_poll_seconds,
            update_heartbeat_interval=settings.heartbeat_seconds,
            stalled_worker_timeout=settings.stalled_worker_seconds,
            delete_jobs="successful",
            install_signal_handlers=False,  # ours: a stop is told from an outage
        )
    )
    stop = asyncio.create_task(stopping.wait())
    await asyncio.wait({worker, stop}, return_when=asyncio.FIRST_COMPLETED)
    if stopping.is_set():
        worker.cancel()  # procrastinate's graceful stop: the running job finishes first
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker
        return
    stop.cancel()
    failure = worker.exception()
    log.warning(
        "the procrastinate worker stopped (%s); starting it again",
        _first_line(failure) if failure else "its database went away",
    )
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=WORKER_RESTART_SECONDS)


_LIVE_WORKER = text(
    "SELECT id FROM procrastinate_workers"
    " WHERE last_heartbeat >= now() - make_interval(secs => :seconds) LIMIT 1"
)


def live_worker(session_factory: SessionFactory, seconds: float) -> str | None:
    """A procrastinate worker that sent a heartbeat within ``seconds``, if any."""
    with read_session(session_factory) as session:
        found = session.execute(_LIVE_WORKER, {"seconds": seconds}).scalar()
    return None if found is None else f"procrastinate worker {found}"
