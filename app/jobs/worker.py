"""The in-process queue's worker: a loop that claims queued jobs, plus a heartbeat.

Runs as a thread inside ``serve`` (``embedded_worker=thread``), as the embedded worker
process that ``serve`` supervises, or as the whole of a ``weightscope worker`` process.
With this queue the job row is the whole state: a worker's row in ``workers`` and the
``heartbeat_at`` of the jobs it runs are refreshed every ``heartbeat_seconds``; once they
are stale, any worker's recovery pass requeues the job.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from app.blobs import BlobStore
from app.db import SessionFactory, database_unreachable, session_scope, when_reachable
from app.jobs import repository
from app.jobs.runner import Notify, run_job
from app.metrics import serve_worker_metrics
from app.models import JobStatus
from app.settings import Settings

log = logging.getLogger(__name__)


class JobWorker:
    """``notify`` gets the terminal rows of the jobs it finished, once committed (the
    embedded worker's one way of telling the API's watchers)."""

    def __init__(
        self, session_factory: SessionFactory, settings: Settings, notify: Notify | None = None
    ) -> None:
        self.id = repository.new_worker_id()
        self.session_factory = session_factory
        self.settings = settings
        self.notify = notify
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        repository.register_worker(self.session_factory, self.id)
        repository.recover_stale_jobs(self.session_factory, self._stale_after)
        # a worker starting may be the replacement of one killed mid-write
        swept = BlobStore(self.settings.blob_dir).sweep_temp_files()
        if swept:
            log.info("removed %d partial file(s) left by a killed process", swept)
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._work_loop, "jobs")):
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
        repository.unregister_worker(self.session_factory, self.id)
        log.info("job worker %s stopped", self.id)

    def run_forever(self, start_wait_s: float = 0.0) -> None:
        """Foreground mode for ``weightscope worker``: run until interrupted; a database
        that cannot be reached at the start gets ``start_wait_s`` to come back."""
        serve_worker_metrics(self.settings.worker_metrics_port)
        when_reachable(self.start, start_wait_s)
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
            claimed = repository.claim_next(self.session_factory, self.id)
            if claimed is None:
                if not repository.any_queued(self.session_factory):
                    return ran
                continue  # another worker took the one we saw; there are more
            if run_job(claimed, self.session_factory, self.settings, self.id, self.notify):
                ran += 1
        return ran

    @property
    def _stale_after(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.stale_after_seconds)

    def _work_loop(self) -> None:
        last_recovery = time.monotonic()
        must_release = False
        while not self._stop.is_set():
            try:
                if must_release:
                    self._release_held()
                    must_release = False
                self.run_pending()
                if time.monotonic() - last_recovery > self.settings.stale_after_seconds / 2:
                    last_recovery = time.monotonic()
                    repository.recover_stale_jobs(self.session_factory, self._stale_after)
            except Exception as exc:
                # a run cut short wrote nothing; its jobs are released before the next one
                must_release = True
                if database_unreachable(exc):
                    log.warning(
                        "job worker %s: the database is unreachable (%s); retrying",
                        self.id, str(exc).splitlines()[0],
                    )
                else:
                    log.exception("job worker %s: loop error; retrying", self.id)
            self._wake.wait(self.settings.worker_poll_seconds)
            self._wake.clear()

    def _release_held(self) -> None:
        """Requeue the jobs a cut-short run left ``running`` under this worker (its
        heartbeat would otherwise keep them from stale recovery forever)."""
        with session_scope(self.session_factory) as session:
            released = repository.release_held(session, self.id)
        failed = [job_id for job_id, status in released.items() if status != JobStatus.queued]
        if failed and self.notify is not None:
            rows = {i: repository.read_job_row(self.session_factory, i) for i in failed}
            self.notify({i: row for i, row in rows.items() if row is not None})

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                repository.beat(self.session_factory, self.id)
            except Exception as exc:
                if database_unreachable(exc):
                    log.warning("job worker %s: heartbeat: database unreachable", self.id)
                else:
                    log.exception("job worker %s: heartbeat failed", self.id)
