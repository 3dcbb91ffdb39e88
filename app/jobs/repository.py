"""Every statement on the ``jobs`` and ``workers`` tables.

Every state change is one guarded UPDATE (``WHERE status = … AND worker_id = … AND
attempts = …``), atomic on SQLite and PostgreSQL alike: two workers never both claim a
job, and a worker that lost a job cannot write its outcome. The statements that run for
every job are Core and built once with bound parameters (no cache key to walk per call).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Update,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from app.db import READ_ONLY, SessionFactory, read_session, session_scope
from app.models import Job, JobStatus, Worker, utcnow

if TYPE_CHECKING:  # kind.py calls into this module
    from app.jobs.kind import JobContext

log = logging.getLogger(__name__)

JOBS = Job.__table__
MAX_ERROR_CHARS = 2000

Claimed = tuple[int, int, str, dict[str, Any]]  # job id, attempt, kind, params

_INSERT = (
    insert(JOBS)
    .values(
        tenant_id=bindparam("tenant_id"),
        kind=bindparam("kind"),
        params=bindparam("params", type_=JOBS.c.params.type),
        max_attempts=bindparam("max_attempts"),
    )
    .returning(*JOBS.c)
)
_READ_ONE = select(JOBS).where(JOBS.c.id == bindparam("id"))
_READ_MANY = select(JOBS).where(JOBS.c.id.in_(bindparam("ids", expanding=True)))


def insert_job(
    session: Session, tenant_id: int, kind: str, params: dict[str, Any], max_attempts: int
) -> dict:
    values = {"tenant_id": tenant_id, "kind": kind, "params": params, "max_attempts": max_attempts}
    return dict(session.execute(_INSERT, values).mappings().one())


def tenants_of(session: Session, job_ids: list[int]) -> dict[int, int]:
    """job id -> its tenant's id: the tenant of the rows a finished job leaves."""
    rows = session.execute(select(JOBS.c.id, JOBS.c.tenant_id).where(JOBS.c.id.in_(job_ids)))
    return {job_id: tenant_id for job_id, tenant_id in rows}


def read_job_row(session_factory: SessionFactory, job_id: int) -> dict[str, Any] | None:
    """The row as a mapping (one Core SELECT: every long-poll reads through here)."""
    engine = session_factory.kw["bind"]
    with engine.connect() as connection:
        connection = connection.execution_options(**READ_ONLY)
        row = connection.execute(_READ_ONE, {"id": job_id}).mappings().first()
    return None if row is None else dict(row)


def request_cancel(session: Session, job_id: int) -> None:
    """Queued: canceled now. Running: flagged; the job stops at its next progress point."""
    canceled = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued)
        .values(status=JobStatus.canceled, cancel_requested=True, finished_at=utcnow())
    ).rowcount
    if not canceled:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running)
            .values(cancel_requested=True)
        )


# --- claims ---------------------------------------------------------------------------


def _taking(which: ColumnElement[bool], takeable: ColumnElement[bool] | None = None) -> Update:
    """The UPDATE by which a worker takes the jobs ``which`` selects (one more attempt);
    ``takeable`` says which states it may take them from (default: queued)."""
    return (
        update(JOBS)
        .where(which, JOBS.c.status == JobStatus.queued if takeable is None else takeable)
        .values(
            status=JobStatus.running,
            worker_id=bindparam("c_worker"),
            attempts=JOBS.c.attempts + 1,
            started_at=bindparam("c_started", type_=JOBS.c.started_at.type),
            heartbeat_at=bindparam("c_beat", type_=JOBS.c.heartbeat_at.type),
            progress=0.0,
        )
    )


_OLDEST_QUEUED = (
    select(JOBS.c.id)
    .where(JOBS.c.status == JobStatus.queued)
    .order_by(JOBS.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's writer is alone anyway
    .scalar_subquery()
)
_CLAIMED = (JOBS.c.id, JOBS.c.attempts, JOBS.c.kind, JOBS.c.params)
_CLAIM_ONE = _taking(JOBS.c.id == bindparam("c_id")).returning(*_CLAIMED)
# procrastinate delivers a job to one worker at a time, and again only once the worker that
# had it stalled: such a delivery takes the row over from the attempt it cut short
_TAKE_OVER = _taking(
    JOBS.c.id == bindparam("c_id"),
    or_(
        JOBS.c.status == JobStatus.queued,
        (JOBS.c.status == JobStatus.running) & (JOBS.c.attempts < JOBS.c.max_attempts),
    ),
).returning(*_CLAIMED)
_CLAIM_NEXT = _taking(JOBS.c.id == _OLDEST_QUEUED).returning(*_CLAIMED)
_CLAIM_MANY = _taking(JOBS.c.id.in_(bindparam("c_ids", expanding=True))).returning(
    JOBS.c.id, JOBS.c.attempts
)
_NEXT_QUEUED = select(JOBS.c.id).where(JOBS.c.status == JobStatus.queued).limit(1)
_CANDIDATES = (
    select(JOBS.c.id, JOBS.c.params)
    .where(JOBS.c.status == JobStatus.queued, JOBS.c.kind == bindparam("kind"))
    .order_by(JOBS.c.id)
    .limit(bindparam("limit"))
)


def _taken_by(worker_id: str) -> dict[str, Any]:
    now = utcnow()
    return {"c_worker": worker_id, "c_started": now, "c_beat": now}


def _claim_with(
    session_factory: SessionFactory, statement: Update, worker_id: str, params: dict[str, Any]
) -> Claimed | None:
    with session_scope(session_factory) as session:
        row = session.execute(statement, params | _taken_by(worker_id)).first()
    return None if row is None else (row[0], row[1], row[2], dict(row[3]))


def claim(
    session_factory: SessionFactory, job_id: int, worker_id: str, take_over: bool = False
) -> Claimed | None:
    """Take this job (queued; or running too with ``take_over``); None if it is not ours."""
    statement = _TAKE_OVER if take_over else _CLAIM_ONE
    return _claim_with(session_factory, statement, worker_id, {"c_id": job_id})


def claim_next(session_factory: SessionFactory, worker_id: str) -> Claimed | None:
    """Take the oldest queued job; None when another worker took the one it saw first."""
    return _claim_with(session_factory, _CLAIM_NEXT, worker_id, {})


def any_queued(session_factory: SessionFactory) -> bool:
    with read_session(session_factory) as session:
        return session.execute(_NEXT_QUEUED).first() is not None


def queued_candidates(
    session_factory: SessionFactory, kind: str, limit: int
) -> list[tuple[int, dict[str, Any]]]:
    with read_session(session_factory) as session:
        rows = session.execute(_CANDIDATES, {"kind": kind, "limit": limit}).all()
    return [(job_id, dict(params)) for job_id, params in rows]


def claim_many(
    session: Session, job_ids: list[int], worker_id: str
) -> list[tuple[int, int]]:
    """Take those of ``job_ids`` that are still queued; (job id, attempt) of each taken."""
    rows = session.execute(_CLAIM_MANY, {"c_ids": job_ids} | _taken_by(worker_id)).all()
    return sorted((job_id, attempt) for job_id, attempt in rows)


def record_progress(
    ctx: JobContext, fraction: float, detail: dict[str, Any] | None = None
) -> bool | None:
    """Progress (and its detail, when given) and heartbeat of a held job; its
    ``cancel_requested``, or None if lost."""
    values: dict[str, Any] = {"progress": fraction, "heartbeat_at": utcnow()}
    if detail is not None:
        values["progress_detail"] = detail
    with session_scope(ctx.session_factory) as session:
        return session.execute(
            update(Job)
            .where(
                Job.id == ctx.job_id,
                Job.status == JobStatus.running,
                Job.worker_id == ctx.worker_id,
                Job.attempts == ctx.attempt,
            )
            .values(**values)
            .returning(Job.cancel_requested)
        ).scalar_one_or_none()


# --- finishing ------------------------------------------------------------------------


class ChangedHands(Exception):
    """Some job of a batch is no longer this worker's: write the batch one job at a time."""


def terminal_values(status: JobStatus, result: Any, error: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "heartbeat_at": None}
    if status == JobStatus.succeeded:
        values.update(result=result, progress=1.0)
    if error is not None:
        values["error"] = error[:MAX_ERROR_CHARS]
    return values


@functools.cache
def _finish_statement(columns: frozenset[str], returning: bool) -> Update:
    """The guarded terminal UPDATE for this set of columns; an executemany cannot return
    rows, so a batch reads them back in one SELECT."""
    statement = (
        update(JOBS)
        .where(
            JOBS.c.id == bindparam("g_id"),
            JOBS.c.status == JobStatus.running,
            JOBS.c.worker_id == bindparam("g_worker"),
            JOBS.c.attempts == bindparam("g_attempt"),
        )
        .values({name: bindparam(f"v_{name}") for name in sorted(columns)})
    )
    return statement.returning(*JOBS.c) if returning else statement


def _guarded(ctx: JobContext, values: dict[str, Any]) -> dict[str, Any]:
    guard = {"g_id": ctx.job_id, "g_worker": ctx.worker_id, "g_attempt": ctx.attempt}
    return guard | {f"v_{k}": v for k, v in values.items()}


def finish_one(session: Session, ctx: JobContext, values: dict[str, Any]) -> dict | None:
    """The job's terminal row, or None (nothing written) if this attempt lost it."""
    statement = _finish_statement(frozenset(values), returning=True)
    row = session.execute(statement, _guarded(ctx, values)).mappings().first()
    if row is None:
        log.warning("job %s changed hands before it finished; outcome dropped", ctx.job_id)
    return None if row is None else dict(row)


def finish_many(
    session: Session, finals: list[tuple[JobContext, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """A batch's guarded UPDATEs as one executemany per set of columns, rows read back
    in one SELECT. Raises ``ChangedHands`` when they did not match one row each, or when
    the driver cannot count an executemany's rows."""
    if not session.get_bind().dialect.supports_sane_multi_rowcount:
        raise ChangedHands("this database driver cannot count an executemany's rows")
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for ctx, values in finals:
        groups.setdefault(frozenset(values), []).append(_guarded(ctx, values))
    for columns, params in groups.items():
        matched = session.execute(_finish_statement(columns, returning=False), params)
        if matched.rowcount != len(params):
            raise ChangedHands(f"{len(params) - matched.rowcount} job(s) changed hands")
    ids = [ctx.job_id for ctx, _ in finals]
    by_id = {row["id"]: dict(row) for row in session.execute(_READ_MANY, {"ids": ids}).mappings()}
    return [by_id[job_id] for job_id in ids]


# --- workers and recovery (the in-process queue) ---------------------------------------


def new_worker_id() -> str:
    import uuid

    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def register_worker(session_factory: SessionFactory, worker_id: str) -> None:
    """Add the worker's row; again is harmless (a start retried after an outage)."""
    with session_scope(session_factory) as session:
        session.merge(Worker(id=worker_id, hostname=socket.gethostname(), pid=os.getpid()))


def unregister_worker(session_factory: SessionFactory, worker_id: str) -> None:
    with session_scope(session_factory) as session:
        session.execute(delete(Worker).where(Worker.id == worker_id))


def beat(session_factory: SessionFactory, worker_id: str) -> None:
    """Refresh the worker's row and its running jobs' heartbeats."""
    now = utcnow()
    with session_scope(session_factory) as session:
        seen = session.execute(
            update(Worker).where(Worker.id == worker_id).values(heartbeat_at=now)
        ).rowcount
        if not seen:  # pruned as dead while we were busy: come back
            session.add(Worker(id=worker_id, hostname=socket.gethostname(), pid=os.getpid()))
        session.execute(
            update(Job)
            .where(Job.worker_id == worker_id, Job.status == JobStatus.running)
            .values(heartbeat_at=now)
        )


def live_worker(session_factory: SessionFactory, stale_after: dt.timedelta) -> str | None:
    with read_session(session_factory) as session:
        cutoff = utcnow() - stale_after
        return session.scalar(select(Worker.id).where(Worker.heartbeat_at >= cutoff).limit(1))


def recover_stale_jobs(session_factory: SessionFactory, stale_after: dt.timedelta) -> list[int]:
    """Requeue (or fail, once out of attempts) running jobs whose worker is gone or silent."""
    cutoff = utcnow() - stale_after
    with session_scope(session_factory) as session:
        session.execute(delete(Worker).where(Worker.heartbeat_at < cutoff))
        orphans = session.execute(
            select(Job.id, Job.worker_id, Job.attempts, Job.max_attempts).where(
                Job.status == JobStatus.running,
                or_(
                    Job.heartbeat_at.is_(None),
                    Job.heartbeat_at < cutoff,
                    Job.worker_id.is_(None),
                    Job.worker_id.not_in(select(Worker.id)),
                ),
            )
        ).all()
        return [
            job_id
            for job_id, worker_id, attempts, max_attempts in orphans
            if _release(session, job_id, worker_id, attempts, max_attempts)
        ]


def release_held(session: Session, worker_id: str) -> dict[int, JobStatus]:
    """Requeue (or fail, once out of attempts) the running jobs this worker holds but no
    longer runs: a run whose database went away mid-way wrote nothing, and its jobs go
    back to the queue once the database answers again. Only for a worker between runs.
    Returns the new status of each released job."""
    held = session.execute(
        select(Job.id, Job.attempts, Job.max_attempts).where(
            Job.status == JobStatus.running, Job.worker_id == worker_id
        )
    ).all()
    released = {}
    for job_id, attempts, max_attempts in held:
        status = _release(session, job_id, worker_id, attempts, max_attempts)
        if status is not None:
            released[job_id] = status
    return released


def _release(
    session: Session, job_id: int, worker_id: str | None, attempts: int, max_attempts: int
) -> JobStatus | None:
    if attempts >= max_attempts:
        values: dict[str, Any] = {
            "status": JobStatus.failed,
            "finished_at": utcnow(),
            "error": f"worker {worker_id} stopped responding; gave up after {attempts} attempts",
        }
    else:
        values = {"status": JobStatus.queued, "started_at": None, "progress": 0.0}
    values.update(worker_id=None, heartbeat_at=None)
    released = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.running,
            Job.worker_id.is_(None) if worker_id is None else Job.worker_id == worker_id,
            Job.attempts == attempts,
        )
        .values(**values)
    ).rowcount
    if released:
        log.warning("job %s of worker %s released: %s", job_id, worker_id, values["status"])
    return values["status"] if released == 1 else None


def status_of(session: Session, job_id: int) -> JobStatus | None:
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    return None if status is None else JobStatus(status)


def give_up(session_factory: SessionFactory, job_id: int) -> None:
    """Fail a job that is still running after its last attempt was cut short (a delivery
    could not take it over: out of attempts)."""
    with session_scope(session_factory) as session:
        session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.running,
                Job.attempts >= Job.max_attempts,
            )
            .values(
                status=JobStatus.failed,
                finished_at=utcnow(),
                heartbeat_at=None,
                error="its worker stopped responding; gave up after the last attempt",
            )
        )


# --- deleting ---------------------------------------------------------------------------


def delete_jobs(session: Session, job_ids: list[int]) -> list[int]:
    """Remove job rows; returns their ids (for ``JobNotifier.deleted`` once committed). A
    worker still running one finds it gone at its next progress point (``JobLost``) and
    writes nothing: every one of its updates is guarded by the row."""
    if job_ids:
        session.execute(delete(JOBS).where(JOBS.c.id.in_(job_ids)))
    return job_ids
