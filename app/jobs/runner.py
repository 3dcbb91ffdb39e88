"""Running one job with exactly-once results, and recovering jobs of dead workers.

Every state change is a single guarded UPDATE (``WHERE status = … AND worker_id = …``),
which is atomic on SQLite and PostgreSQL alike: two workers can never both claim a job, and
a worker that lost a job (it was requeued after its heartbeat went stale) cannot write a
result for it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Update, bindparam, delete, or_, select, update
from sqlalchemy.orm import Session

from app.db import SessionFactory, session_scope
from app.jobs.completions import announce
from app.jobs.kind import JobCanceled, JobContext, JobLost
from app.jobs.registry import get_kind
from app.models import Job, JobStatus, Worker, utcnow
from app.settings import Settings

log = logging.getLogger(__name__)

JOBS = Job.__table__  # the hot statements below are Core: a third of the ORM's cost each

MAX_ERROR_CHARS = 2000


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def next_queued_job_id(session_factory: SessionFactory) -> int | None:
    with session_factory() as session:
        return session.scalars(
            select(JOBS.c.id).where(JOBS.c.status == JobStatus.queued).order_by(JOBS.c.id).limit(1)
        ).first()


def claim(session_factory: SessionFactory, job_id: int, worker_id: str) -> int | None:
    """Take a queued job; returns the attempt number, or None if someone else has it."""
    claimed = _claim(session_factory, job_id, worker_id)
    return None if claimed is None else claimed[0]


Claimed = tuple[int, int, str, dict[str, Any]]  # job id, attempt, kind, params


def _claim(session_factory: SessionFactory, job_id: int, worker_id: str) -> Claimed | None:
    """``claim``, also returning the job's kind and params (one statement, no extra read)."""
    return _claim_with(session_factory, _CLAIM_ONE, worker_id, {"c_id": job_id})


def claim_next(session_factory: SessionFactory, worker_id: str) -> Claimed | None:
    """Take the oldest queued job in one statement; None when there was none to take (or
    another worker took the one seen: call again while ``next_queued_job_id`` finds one)."""
    return _claim_with(session_factory, _CLAIM_NEXT, worker_id, {})


def _taking(which: ColumnElement[bool]) -> Update:
    """The UPDATE by which a worker takes the queued jobs ``which`` selects (one more
    attempt, fresh heartbeat), built once with bound parameters: a statement rebuilt with
    literal values was walked for its cache key on every claim."""
    return (
        update(JOBS)
        .where(which, JOBS.c.status == JobStatus.queued)
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
_CLAIM_NEXT = _taking(JOBS.c.id == _OLDEST_QUEUED).returning(*_CLAIMED)
_CLAIM_MANY = _taking(JOBS.c.id.in_(bindparam("c_ids", expanding=True))).returning(
    JOBS.c.id, JOBS.c.attempts
)
_READ_JOBS = select(JOBS).where(JOBS.c.id.in_(bindparam("ids", expanding=True)))
_CANDIDATES = (
    select(JOBS.c.id, JOBS.c.params)
    .where(JOBS.c.status == JobStatus.queued, JOBS.c.kind == bindparam("kind"))
    .order_by(JOBS.c.id)
    .limit(bindparam("limit"))
)


def _taken_by(worker_id: str) -> dict[str, Any]:
    """The bound values of ``_taking`` for this worker, now."""
    now = utcnow()
    return {"c_worker": worker_id, "c_started": now, "c_beat": now}


def _claim_with(
    session_factory: SessionFactory, statement: Update, worker_id: str, params: dict[str, Any]
) -> Claimed | None:
    with session_scope(session_factory) as session:
        row = session.execute(statement, params | _taken_by(worker_id)).first()
    return None if row is None else (row[0], row[1], row[2], dict(row[3]))


Notify = Callable[[dict[int, dict[str, Any]]], None]  # terminal rows by job id, committed


def run_job(
    job_id: int,
    session_factory: SessionFactory,
    settings: Settings,
    worker_id: str | None = None,
    notify: Notify | None = None,
) -> bool:
    """Claim, run and finish one job. The same call serves embedded and remote workers.

    A kind with ``run_batch`` also claims up to ``max_batch - 1`` more queued jobs with the
    same batch key, waiting at most ``max_wait_ms`` for them, and runs them together; each
    still finishes through its own guarded update, all of them in one transaction. Returns
    False when the job was not ours to run (already claimed, or lost midway). ``notify``
    gets the rows of the jobs this call brought to a terminal state (as their terminal
    UPDATEs returned them), after the commit.
    """
    worker_id = worker_id or new_worker_id()
    claimed = _claim(session_factory, job_id, worker_id)
    if claimed is None:
        return False
    return run_claimed(claimed, session_factory, settings, worker_id, notify)


def run_claimed(
    claimed: Claimed,
    session_factory: SessionFactory,
    settings: Settings,
    worker_id: str,
    notify: Notify | None = None,
) -> bool:
    """``run_job`` for a job this worker has just claimed."""
    job_id, attempt, kind_name, params = claimed
    ctx = JobContext(job_id, params, worker_id, attempt, session_factory, settings)
    try:
        kind = get_kind(kind_name)
    except ValueError as exc:
        return _conclude_all([ctx], [exc], None, notify)[0]
    if kind.run_batch is not None and kind.batch_key is not None and settings.max_batch > 1:
        batch = [ctx, *_claim_batch_mates(ctx, kind.name, kind.batch_key)]
        try:
            outcomes = kind.run_batch(batch)
        except Exception as exc:  # the whole batch failed: each job gets the same reason
            outcomes = [exc] * len(batch)
        return _conclude_all(batch, outcomes, kind.persist, notify, kind.persist_many)[0]
    try:
        result: dict[str, Any] | Exception = kind.run(ctx)
    except Exception as exc:
        result = exc
    return _conclude_all([ctx], [result], kind.persist, notify)[0]


def _conclude(ctx: JobContext, outcome: dict[str, Any] | Exception, persist: Any) -> bool:
    """Finish a job from its result or from the exception that ended it."""
    return _conclude_all([ctx], [outcome], persist)[0]


Final = tuple[JobStatus, dict[str, Any]]


def _final(ctx: JobContext, outcome: dict[str, Any] | Exception) -> Final | None:
    """The terminal status and ``_finish`` keywords for an outcome; None when the job was
    lost (it belongs to another attempt now, and nothing may be written)."""
    if not isinstance(outcome, Exception):
        return JobStatus.succeeded, {"result": outcome}
    if isinstance(outcome, JobCanceled):
        return JobStatus.canceled, {"error": "canceled while running"}
    if isinstance(outcome, JobLost):
        log.warning(
            "job %s was taken from worker %s; its result is dropped", ctx.job_id, ctx.worker_id
        )
        return None
    if isinstance(outcome, ValueError):  # bad input (CheckpointError & co): no retry
        return JobStatus.failed, {"error": str(outcome)}
    log.error("job %s failed", ctx.job_id, exc_info=outcome)
    return JobStatus.failed, {"error": f"{type(outcome).__name__}: {outcome}"}


def _conclude_all(
    ctxs: list[JobContext],
    outcomes: list[dict[str, Any] | Exception],
    persist: Any,
    notify: Notify | None = None,
    persist_many: Any = None,
) -> list[bool]:
    """Finish jobs from their outcomes in one transaction (one commit for a whole batch),
    each through its own guarded update (a batch's as one executemany, ``_write_batch``).
    Should that transaction fail (a ``persist`` that raises, a job that changed hands),
    each job is finished on its own instead, so one bad result cannot hold back the
    others. Returns, per job, whether its outcome was written."""
    finals = [_final(c, o) for c, o in zip(ctxs, outcomes, strict=True)]
    work = [(i, c, f) for i, (c, f) in enumerate(zip(ctxs, finals, strict=True)) if f]
    rows: list[dict[str, Any] | None] = [None] * len(ctxs)
    if not work:
        return [False] * len(ctxs)
    try:
        with session_scope(ctxs[0].session_factory) as session:
            if len(work) > 1:
                written = _write_batch(session, work, persist, persist_many)
                for (index, _, _), row in zip(work, written, strict=True):
                    rows[index] = row
            else:
                for index, ctx, (status, kw) in work:
                    rows[index] = _write(session, ctx, status, persist=persist, **kw)
            announce(session, [ctx.job_id for ctx, row in zip(ctxs, rows, strict=True) if row])
    except Exception as exc:
        if len(work) == 1:
            raise
        if isinstance(exc, _ChangedHands):
            log.warning("%s; finishing the batch's jobs one by one", exc)
        else:
            log.exception("finishing %d jobs together failed; finishing them one by one", len(work))
        rows = [None] * len(ctxs)
        for index, ctx, (status, kw) in work:
            try:
                rows[index] = _finish(ctx, status, persist=persist, **kw)
            except Exception:
                log.exception("job %s: its outcome could not be written", ctx.job_id)
    if notify is not None:
        done = {ctx.job_id: row for ctx, row in zip(ctxs, rows, strict=True) if row is not None}
        if done:
            try:
                notify(done)
            except Exception:
                log.exception("notifying watchers of jobs %s failed", list(done))
    return [row is not None for row in rows]


def _claim_batch_mates(
    first: JobContext, kind_name: str, batch_key: Callable[[dict[str, Any]], str]
) -> list[JobContext]:
    """Claim queued jobs of the same kind and batch key, up to ``max_batch - 1`` of them,
    polling for at most ``max_wait_ms`` (the first poll is immediate)."""
    settings = first.settings
    key = batch_key(first.params)
    deadline = time.monotonic() + settings.max_wait_ms / 1000
    mates: list[JobContext] = []
    while True:
        wanted = settings.max_batch - 1 - len(mates)
        with first.session_factory() as session:
            candidates = session.execute(
                _CANDIDATES, {"kind": kind_name, "limit": 4 * settings.max_batch}
            ).all()
        params = {job_id: p for job_id, p in candidates if batch_key(p) == key}
        chosen = list(params)[:wanted]
        if chosen:
            for job_id, attempt in claim_many(first.session_factory, chosen, first.worker_id):
                mates.append(
                    JobContext(
                        job_id,
                        dict(params[job_id]),
                        first.worker_id,
                        attempt,
                        first.session_factory,
                        settings,
                    )
                )
        remaining = deadline - time.monotonic()
        if len(mates) + 1 >= settings.max_batch or remaining <= 0:
            return mates
        time.sleep(min(remaining, 0.002))


def claim_many(
    session_factory: SessionFactory, job_ids: list[int], worker_id: str
) -> list[tuple[int, int]]:
    """Take those of ``job_ids`` that are still queued, in one guarded UPDATE; returns
    (job id, attempt) for each one taken."""
    with session_scope(session_factory) as session:
        rows = session.execute(_CLAIM_MANY, {"c_ids": job_ids} | _taken_by(worker_id)).all()
    return sorted((job_id, attempt) for job_id, attempt in rows)


def _finish(
    ctx: JobContext,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    persist: Any = None,
) -> dict[str, Any] | None:
    """Write the outcome only if this worker still owns this attempt (one transaction)."""
    with session_scope(ctx.session_factory) as session:
        row = _write(session, ctx, status, result=result, error=error, persist=persist)
        if row is not None:
            announce(session, [ctx.job_id])
        return row


class _ChangedHands(Exception):
    """Some job of a batch is no longer this worker's: write the batch one job at a time."""


def _terminal_values(status: JobStatus, result: Any, error: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "heartbeat_at": None}
    if status == JobStatus.succeeded:
        values.update(result=result, progress=1.0)
    if error is not None:
        values["error"] = error[:MAX_ERROR_CHARS]
    return values


def _write_batch(
    session: Session,
    work: list[tuple[int, JobContext, Final]],
    persist: Any,
    persist_many: Any,
) -> list[dict[str, Any]]:
    """A batch's guarded terminal UPDATEs as one executemany per set of columns, its rows
    read back in one SELECT, and ``persist_many``'s rows written in one go (3-4 statements
    for a batch instead of two per job). Raises ``_ChangedHands`` when the UPDATEs did not
    match one row each (a job was taken over), or when the driver cannot count the rows of
    an executemany: the caller rolls back and writes the jobs one by one."""
    if not session.get_bind().dialect.supports_sane_multi_rowcount:
        raise _ChangedHands("this database driver cannot count an executemany's rows")
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for _, ctx, (status, kw) in work:
        values = _terminal_values(status, kw.get("result"), kw.get("error"))
        guard = {"g_id": ctx.job_id, "g_worker": ctx.worker_id, "g_attempt": ctx.attempt}
        params = guard | {f"v_{k}": v for k, v in values.items()}
        groups.setdefault(frozenset(values), []).append(params)
    for columns, params_list in groups.items():
        matched = session.execute(_finish_statement(columns, returning=False), params_list)
        if matched.rowcount != len(params_list):
            raise _ChangedHands(f"{len(params_list) - matched.rowcount} job(s) changed hands")
    ids = [ctx.job_id for _, ctx, _ in work]
    found = session.execute(_READ_JOBS, {"ids": ids}).mappings().all()
    by_id = {row["id"]: dict(row) for row in found}
    results = [(c.job_id, kw["result"]) for _, c, (_, kw) in work if kw.get("result") is not None]
    if persist_many is not None and results:
        persist_many(session, results)
    elif persist is not None:
        for job_id, result in results:
            persist(session, job_id, result)
    return [by_id[job_id] for job_id in ids]


@functools.cache
def _finish_statement(columns: frozenset[str], returning: bool = True) -> Update:
    """The guarded terminal UPDATE for this set of columns, built once with bound
    parameters (a result dict as a literal value made SQLAlchemy walk it for a cache key
    on every call). It returns the whole row (the job as its watchers will see it), except
    for an executemany, which cannot return rows."""
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


def _write(
    session: Session,
    ctx: JobContext,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    persist: Any = None,
) -> dict[str, Any] | None:
    """The guarded terminal update (and ``persist``'s rows) inside the caller's transaction:
    the job's terminal row, or None, writing nothing, when this worker no longer owns this
    attempt."""
    values = _terminal_values(status, result, error)
    guard = {"g_id": ctx.job_id, "g_worker": ctx.worker_id, "g_attempt": ctx.attempt}
    statement = _finish_statement(frozenset(values))
    row = (
        session.execute(statement, guard | {f"v_{k}": v for k, v in values.items()})
        .mappings()
        .first()
    )
    if row is None:
        log.warning("job %s changed hands before it finished; outcome dropped", ctx.job_id)
        return None
    if persist is not None and result is not None:
        persist(session, ctx.job_id, result)
    return dict(row)


def recover_stale_jobs(session_factory: SessionFactory, stale_after: dt.timedelta) -> list[int]:
    """Requeue (or fail, once out of attempts) running jobs whose worker is gone or silent."""
    cutoff = utcnow() - stale_after
    with session_scope(session_factory) as session:
        session.execute(delete(Worker).where(Worker.heartbeat_at < cutoff))
        live_workers = select(Worker.id)
        orphans = session.execute(
            select(Job.id, Job.worker_id, Job.attempts, Job.max_attempts).where(
                Job.status == JobStatus.running,
                or_(
                    Job.heartbeat_at.is_(None),
                    Job.heartbeat_at < cutoff,
                    Job.worker_id.is_(None),
                    Job.worker_id.not_in(live_workers),
                ),
            )
        ).all()
    recovered = []
    for job_id, worker_id, attempts, max_attempts in orphans:
        with session_scope(session_factory) as session:
            if _release(session, job_id, worker_id, attempts, max_attempts):
                recovered.append(job_id)
    return recovered


def _release(
    session: Session, job_id: int, worker_id: str | None, attempts: int, max_attempts: int
) -> bool:
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
        log.warning("job %s of dead worker %s: %s", job_id, worker_id, values["status"])
    return released == 1
