"""A worker that loses its database mid-run commits nothing, and its job is requeued once
the database answers again (issue 16, defect 1): with procrastinate (its connection killed
by the server while it writes the outcome, as ``pg_ctl -m fast`` does) and with the
in-process queue (the same fault, raised as the driver would)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.db import session_scope
from app.jobs import repository
from app.jobs.kind import KINDS, JobKind
from app.jobs.procrastinate_queue import ProcrastinateQueue, deliver, queueing_lock
from app.jobs.worker import JobWorker
from app.models import LOCAL_TENANT_ID, Job, JobStatus


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """PostgreSQL for the procrastinate test, a SQLite file otherwise."""
    if request.node.get_closest_marker("postgres"):
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


class NoParams(BaseModel):
    pass


def _first_attempt(session: Session, job_id: int) -> bool:
    return session.scalar(select(Job.attempts).where(Job.id == job_id)) == 1


def _terminate_own_backend(session: Session, finished: list[tuple[int, dict[str, Any]]]) -> None:
    """PostgreSQL ends this connection, as a fast shutdown does, on the first attempt."""
    if _first_attempt(session, finished[0][0]):
        session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))


def _connection_lost(session: Session, finished: list[tuple[int, dict[str, Any]]]) -> None:
    if _first_attempt(session, finished[0][0]):
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))


@pytest.fixture
def kind_losing_database(request: pytest.FixtureRequest):
    persist = _terminate_own_backend if request.param == "terminate" else _connection_lost
    kind = JobKind(
        name="loses-database",
        params_model=NoParams,
        run=lambda ctx: {"ran": ctx.attempt},
        persist=persist,
    )
    KINDS[kind.name] = kind
    yield kind
    del KINDS[kind.name]


def _job(session_factory, queue: ProcrastinateQueue | None = None) -> int:
    with session_scope(session_factory) as session:
        job_id = repository.insert_job(session, LOCAL_TENANT_ID, "loses-database", {}, 3)["id"]
        if queue is not None:
            queue.enqueue(session, job_id, "cpu")
    return int(job_id)


def _row(session_factory, job_id: int) -> Job:
    with session_factory() as session:
        row = session.get(Job, job_id)
        assert row is not None
        return row


@pytest.mark.postgres
@pytest.mark.parametrize("kind_losing_database", ["terminate"], indirect=True)
def test_procrastinate_delivery_requeues_a_job_whose_database_went_away(
    kind_losing_database, session_factory, settings
) -> None:
    queue = ProcrastinateQueue(settings.database_url)
    job_id = _job(session_factory, queue)
    lock = queueing_lock(job_id)
    with session_scope(session_factory) as session:  # a worker took the delivery
        session.execute(
            text("UPDATE procrastinate_jobs SET status = 'doing' WHERE queueing_lock = :lock"),
            {"lock": lock},
        )

    deliver(job_id, session_factory, settings, "worker-a")  # returns: procrastinate is told ok

    row = _row(session_factory, job_id)
    assert row.status == JobStatus.queued and row.worker_id is None and row.result is None
    with session_factory() as session:
        waiting = session.execute(
            text("SELECT count(*) FROM procrastinate_jobs WHERE queueing_lock = :l AND"
                 " status = 'todo'"),
            {"l": lock},
        ).scalar()
    assert waiting == 1  # a fresh delivery: the job is not left without one

    deliver(job_id, session_factory, settings, "worker-b")  # the next delivery
    row = _row(session_factory, job_id)
    assert row.status == JobStatus.succeeded and row.attempts == 2
    assert row.result == {"ran": 2}


@pytest.mark.parametrize("kind_losing_database", ["raise"], indirect=True)
def test_in_process_worker_requeues_a_job_whose_database_went_away(
    kind_losing_database, session_factory, settings
) -> None:
    job_id = _job(session_factory)
    worker = JobWorker(session_factory, settings)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not _row(session_factory, job_id).status.terminal:
            assert time.monotonic() < deadline, _row(session_factory, job_id).status
            time.sleep(0.05)
    finally:
        worker.stop()
    row = _row(session_factory, job_id)
    assert row.status == JobStatus.succeeded, row.error
    assert row.attempts == 2 and row.result == {"ran": 2} and row.error is None
