"""What a job kind is, and the context a running job sees.

A job function gets a :class:`JobContext`, loads its own inputs (from ``ctx.params`` and
the database), reports progress (which is also where cancellation and lost ownership are
noticed) and returns a JSON-able result. It never writes the job row itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db import SessionFactory, session_scope
from app.models import Job, JobStatus, utcnow
from app.settings import Settings


class JobCanceled(Exception):
    """Raised at a progress point after a cancel was requested."""


class JobLost(Exception):
    """Raised at a progress point when this worker no longer owns the job (it was requeued)."""


@dataclass
class JobContext:
    job_id: int
    params: dict[str, Any]
    worker_id: str
    attempt: int
    session_factory: SessionFactory
    settings: Settings
    min_progress_interval: float = 0.2
    _last_write: float = field(default=0.0, repr=False)

    def progress(self, fraction: float) -> None:
        """Record progress (at most every ``min_progress_interval`` s) and stop if asked to."""
        now = time.monotonic()
        if self._last_write and now - self._last_write < self.min_progress_interval:
            return
        self._last_write = now
        with session_scope(self.session_factory) as session:
            cancel_requested = session.execute(
                update(Job)
                .where(
                    Job.id == self.job_id,
                    Job.status == JobStatus.running,
                    Job.worker_id == self.worker_id,
                    Job.attempts == self.attempt,
                )
                .values(progress=min(max(fraction, 0.0), 1.0), heartbeat_at=utcnow())
                .returning(Job.cancel_requested)
            ).scalar_one_or_none()
        if cancel_requested is None:
            raise JobLost(f"job {self.job_id} is no longer held by {self.worker_id}")
        if cancel_requested:
            raise JobCanceled(f"job {self.job_id} was canceled")


BatchOutcome = dict[str, Any] | Exception


@dataclass(frozen=True)
class JobKind:
    """A registered kind. ``run`` does the work in a worker. ``check`` (optional) rejects
    params that refer to missing things at submit time by raising ValueError (a 422) or a
    ``ProblemError`` with its own status. ``persist``
    (optional) writes extra rows in the same transaction that marks the job succeeded, so a
    result is stored exactly once.

    ``run_batch`` (optional) runs several claimed jobs whose params have the same
    ``batch_key`` at once (one forward pass for many predictions) and returns one outcome
    per job, a result or the exception that failed it. ``queue`` is the device class the
    kind needs: ``cpu``, or ``compute`` for the queue named by ``Settings.compute_queue``.
    ``persist_many`` (optional) is ``persist`` for a whole finished batch at once (one
    executemany), in the same transaction as the batch's terminal updates.
    """

    name: str
    params_model: type[BaseModel]
    run: Callable[[JobContext], dict[str, Any]]
    check: Callable[[Session, Any, Settings], None] | None = None
    persist: Callable[[Session, int, dict[str, Any]], None] | None = None
    description: str = ""
    run_batch: Callable[[list[JobContext]], list[BatchOutcome]] | None = None
    batch_key: Callable[[dict[str, Any]], str] | None = None
    queue: Literal["cpu", "compute"] = "cpu"
    persist_many: Callable[[Session, list[tuple[int, dict[str, Any]]]], None] | None = None
