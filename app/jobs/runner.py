"""Running claimed jobs: one at a time, or a micro-batch of one kind, each finishing
through its own guarded update (``repository``) so that a job yields exactly one result.

A queue backend may add work to the two transactions a run has, through ``QueueHooks``:
the one that claims a batch's mates (procrastinate takes their deliveries over there) and
the one that writes the outcomes (procrastinate finishes those deliveries and NOTIFYs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.db import SessionFactory, database_unreachable, session_scope
from app.jobs import repository
from app.jobs.kind import JobCanceled, JobContext, JobKind, JobLost, Outcome, get_kind
from app.logs import job_context
from app.models import JobStatus
from app.settings import Settings

log = logging.getLogger(__name__)

Notify = Callable[[dict[int, dict[str, Any]]], None]  # terminal rows by job id, committed


@dataclass(frozen=True)
class QueueHooks:
    """``adopt(session, leader_id, mate_ids)`` keeps only the mates it may run;
    ``finished(session, leader_id, job_ids)`` runs in the outcomes' transaction."""

    adopt: Callable[[Session, int, list[int]], list[int]]
    finished: Callable[[Session, int, list[int]], None]


def run_job(
    job: int | repository.Claimed,
    session_factory: SessionFactory,
    settings: Settings,
    worker_id: str,
    notify: Notify | None = None,
    hooks: QueueHooks | None = None,
) -> bool:
    """Run a claimed job, or claim it first when given its id (with ``hooks``, taking it
    over from a cut-short attempt). A kind with ``run_batch`` also claims up to
    ``max_batch - 1`` queued mates with the same batch key (waiting at most
    ``max_wait_ms`` for them) and runs them in one call. Returns whether the job's outcome
    was written (False when it was not ours to run)."""
    if isinstance(job, int):
        claimed = repository.claim(session_factory, job, worker_id, take_over=hooks is not None)
        if claimed is None:
            return False
    else:
        claimed = job
    job_id, attempt, kind_name, params = claimed
    ctx = JobContext(job_id, params, worker_id, attempt, session_factory, settings)
    try:
        kind: JobKind | None = get_kind(kind_name)
    except ValueError as exc:
        return _conclude([ctx], [exc], None, notify, hooks)[0]
    assert kind is not None
    batch = [ctx]
    if kind.run_batch is not None and kind.batch_key is not None and settings.max_batch > 1:
        batch += _claim_mates(ctx, kind.name, kind.batch_key, hooks)
    with job_context(",".join(str(c.job_id) for c in batch)):
        try:
            outcomes = kind.run_batch(batch) if kind.run_batch is not None else [kind.run(ctx)]
        except Exception as exc:  # the whole batch failed: each job gets the same reason
            outcomes = [exc] * len(batch)
        for outcome in outcomes:
            if isinstance(outcome, Exception) and database_unreachable(outcome):
                # not the job's fault: nothing is written, the worker releases the batch
                # (requeued) once the database answers again
                raise outcome
        return _conclude(batch, outcomes, kind, notify, hooks)[0]


def _claim_mates(
    first: JobContext,
    kind_name: str,
    batch_key: Callable[[dict[str, Any]], str],
    hooks: QueueHooks | None,
) -> list[JobContext]:
    """Queued jobs of the same kind and batch key, claimed until the batch is full or
    ``max_wait_ms`` has passed (the first look is immediate)."""
    settings = first.settings
    key = batch_key(first.params)
    deadline = time.monotonic() + settings.max_wait_ms / 1000
    mates: list[JobContext] = []
    while True:
        wanted = settings.max_batch - 1 - len(mates)
        candidates = repository.queued_candidates(
            first.session_factory, kind_name, 4 * settings.max_batch
        )
        params = {job_id: p for job_id, p in candidates if batch_key(p) == key}
        chosen = list(params)[:wanted]
        if chosen:
            with session_scope(first.session_factory) as session:
                if hooks is not None:
                    chosen = hooks.adopt(session, first.job_id, chosen)
                taken = repository.claim_many(session, chosen, first.worker_id) if chosen else []
            mates += [
                JobContext(
                    job_id, params[job_id], first.worker_id, attempt, first.session_factory,
                    settings,
                )
                for job_id, attempt in taken
            ]
        if len(mates) + 1 >= settings.max_batch or deadline - time.monotonic() <= 0:
            return mates
        time.sleep(min(deadline - time.monotonic(), 0.002))


def _terminal(ctx: JobContext, outcome: Outcome) -> dict[str, Any] | None:
    """The terminal values for an outcome; None when the job was lost (it belongs to
    another attempt now, and nothing may be written)."""
    if not isinstance(outcome, Exception):
        return repository.terminal_values(JobStatus.succeeded, outcome, None)
    if isinstance(outcome, JobCanceled):
        return repository.terminal_values(JobStatus.canceled, None, "canceled while running")
    if isinstance(outcome, JobLost):
        log.warning("job %s was taken from %s; its result is dropped", ctx.job_id, ctx.worker_id)
        return None
    if isinstance(outcome, ValueError):  # bad input (CheckpointError & co): no retry
        return repository.terminal_values(JobStatus.failed, None, str(outcome))
    log.error("job %s failed", ctx.job_id, exc_info=outcome)
    error = f"{type(outcome).__name__}: {outcome}"
    return repository.terminal_values(JobStatus.failed, None, error)


def _conclude(
    ctxs: list[JobContext],
    outcomes: list[Outcome],
    kind: JobKind | None,
    notify: Notify | None,
    hooks: QueueHooks | None,
) -> list[bool]:
    """Finish jobs from their outcomes in one transaction. Should it fail (a ``persist``
    that raises, a job that changed hands), each job is finished on its own instead, so
    one bad result cannot hold back the others; a job whose rows cannot be written fails.
    Returns, per job, whether its outcome was written."""
    finals = [(c, v) for c, o in zip(ctxs, outcomes, strict=True) if (v := _terminal(c, o))]
    rows: dict[int, dict[str, Any]] = {}
    try:
        rows = _write(ctxs[0].job_id, finals, kind, hooks)
    except Exception as exc:
        if database_unreachable(exc):
            raise  # nothing was committed: the worker releases the jobs (requeued) later
        if isinstance(exc, repository.ChangedHands):
            log.warning("%s; finishing the batch's jobs one by one", exc)
        else:
            log.exception("finishing %d job(s) failed; one by one now", len(finals))
        for ctx, values in finals:
            try:
                if len(finals) == 1:
                    raise exc
                rows |= _write(ctxs[0].job_id, [(ctx, values)], kind, hooks)
            except Exception as one:  # its rows cannot be written: it fails, with the reason
                error = f"its result could not be stored: {type(one).__name__}: {one}"
                failed = repository.terminal_values(JobStatus.failed, None, error)
                rows |= _write(ctxs[0].job_id, [(ctx, failed)], None, hooks)
    if notify is not None and rows:
        try:
            notify(rows)
        except Exception:
            log.exception("notifying watchers of jobs %s failed", list(rows))
    return [ctx.job_id in rows for ctx in ctxs]


def _write(
    leader_id: int,
    finals: list[tuple[JobContext, dict[str, Any]]],
    kind: JobKind | None,
    hooks: QueueHooks | None,
) -> dict[int, dict[str, Any]]:
    """One transaction: the guarded terminal updates, the kind's rows, the queue's part."""
    if not finals:
        return {}
    with session_scope(finals[0][0].session_factory) as session:
        if len(finals) == 1:
            row = repository.finish_one(session, *finals[0])
            written = [row] if row is not None else []
        else:
            written = repository.finish_many(session, finals)
        succeeded = [
            (row["id"], row["result"])
            for row in written
            if row["status"] == JobStatus.succeeded
        ]
        if kind is not None and kind.persist is not None and succeeded:
            kind.persist(session, succeeded)
        if hooks is not None and written:
            hooks.finished(session, leader_id, [row["id"] for row in written])
    return {row["id"]: row for row in written}
