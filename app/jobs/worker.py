"""A job worker: a loop that claims queued jobs one at a time, plus a heartbeat.

Runs as a thread inside ``serve`` (the embedded default) or as the whole of a
``weightscope worker`` process. Its row in ``workers`` and the ``heartbeat_at`` of the job
it runs are refreshed every ``heartbeat_seconds``; when they go stale, any worker's
recovery pass requeues the job.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time

from sqlalchemy import delete, update

from app.db import SessionFactory, session_scope
from app.jobs.runner import (
    Notify,
    claim_next,
    new_worker_id,
    next_queued_job_id,
    recover_stale_jobs,
    run_claimed,
)
from app.models import Job, JobStatus, Worker, utcnow
from app.settings import Settings

log = logging.getLogger(__name__)


class JobWorker:
    """``poll_jobs=False`` keeps only the registration and heartbeat: a procrastinate
    worker process gets its job ids from procrastinate, not by polling the table.
    ``notify`` gets the terminal rows of the jobs it finished, by id, once committed (the
    embedded worker hands them to the API's notifier, which answers long-polls and event
    streams from them)."""

    def __init__(
        self,
        session_factory: SessionFactory,
        settings: Settings,
        *,
        poll_jobs: bool = True,
        notify: Notify | None = None,
    ) -> None:
        self.id = new_worker_id()
        self.session_factory = session_factory
        self.settings = settings
        self.poll_jobs = poll_jobs
        self.notify = notify
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._register()
        recover_stale_jobs(self.session_factory, self._stale_after)
        loops = [(self._heartbeat_loop, "heartbeat")]
        if self.poll_jobs:
            loops.append((self._work_loop, "jobs"))
        for target, name in loops:
            thread = threading.Thread(target=target, name=f"worker-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("job worker %s started", self.id)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current job; a job still running after ``timeout`` is left to
        recovery (its worker row is gone, so the next recovery pass requeues it)."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        with session_scope(self.session_factory) as session:
            session.execute(delete(Worker).where(Worker.id == self.id))
        log.info("job worker %s stopped", self.id)

    def run_forever(self) -> None:
        """Foreground mode for ``weightscope worker``: run until interrupted."""
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def run_pending(self) -> int:
        """Run queued jobs until none is left; returns how many this worker ran."""
        ran = 0
        while not self._stop.is_set():
            claimed = claim_next(self.session_factory, self.id)
            if claimed is None:
                if next_queued_job_id(self.session_factory) is None:
                    return ran
                continue  # another worker took the one we saw; there are more
            if run_claimed(claimed, self.session_factory, self.settings, self.id, self.notify):
                ran += 1
        return ran

    @property
    def _stale_after(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.stale_after_seconds)

    def _register(self) -> None:
        with session_scope(self.session_factory) as session:
            session.add(Worker(id=self.id, hostname=socket.gethostname(), pid=os.getpid()))

    def _work_loop(self) -> None:
        last_recovery = time.monotonic()
        while not self._stop.is_set():
            try:
                self.run_pending()
                if time.monotonic() - last_recovery > self.settings.stale_after_seconds / 2:
                    last_recovery = time.monotonic()
                    recover_stale_jobs(self.session_factory, self._stale_after)
            except Exception:
                log.exception("job worker %s: loop error; retrying", self.id)
            self._wake.wait(self.settings.worker_poll_seconds)
            self._wake.clear()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                self.beat()
            except Exception:
                log.exception("job worker %s: heartbeat failed", self.id)

    def beat(self) -> None:
        now = utcnow()
        with session_scope(self.session_factory) as session:
            seen = session.execute(
                update(Worker).where(Worker.id == self.id).values(heartbeat_at=now)
            ).rowcount
            if not seen:  # pruned as dead while we were busy: come back
                session.add(Worker(id=self.id, hostname=socket.gethostname(), pid=os.getpid()))
            session.execute(
                update(Job)
                .where(Job.worker_id == self.id, Job.status == JobStatus.running)
                .values(heartbeat_at=now)
            )
