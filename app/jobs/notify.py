"""In-process wake-ups for whoever watches a job (long-poll and SSE, ``app/jobs/events.py``)."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

from app.jobs.schemas import JobOut

REMEMBERED_JOBS = 4096  # terminal jobs kept for readers, and jobs accepted here still open


class JobNotifier:
    """In-process wake-ups for coroutines watching jobs.

    ``notify(job_ids)`` may be called from any thread after the transaction that changed
    those jobs has committed; every coroutine inside ``watch(job_id)`` for one of them is
    woken in its own event loop. A notification is only a hint to read the row again: the
    row stays the truth, and a missed one costs at most a poll interval.
    ``signals_completions`` is true while something reports the jobs that finish: the
    embedded worker (its own), the PostgreSQL completion listener (everyone's); each holds
    a ``signalling()`` context while it does.

    ``finished(rows)`` is what that worker calls: the rows its terminal UPDATEs returned,
    after the commit. A terminal job never changes again (every UPDATE of a job is guarded
    by ``status`` queued or running), so those rows are kept (the most recent
    ``REMEMBERED_JOBS``) and a reader gets a finished job from here with no database read
    and no thread hop. ``accepted(job_id, tenant_id)`` marks a job this process queued: a
    long-poll for it may wait for the wake-up before its first read, since the job exists
    and is not finished until ``finished`` says so (or a poll finds it finished elsewhere).
    Both remember the job's tenant and answer only that tenant (anyone else reads the row,
    and gets the 404 a missing job gets).
    """

    def __init__(self) -> None:
        self._watchers: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()
        self._terminal: OrderedDict[int, tuple[int, JobOut]] = OrderedDict()
        self._open: OrderedDict[int, int] = OrderedDict()  # job id -> tenant id
        self._deleted: OrderedDict[int, None] = OrderedDict()
        self._signallers = 0

    @property
    def signals_completions(self) -> bool:
        return self._signallers > 0

    @contextmanager
    def signalling(self) -> Iterator[None]:
        with self._lock:
            self._signallers += 1
        try:
            yield
        finally:
            with self._lock:
                self._signallers -= 1

    @contextmanager
    def watch(self, job_id: int) -> Iterator[asyncio.Event]:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._watchers.setdefault(job_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                watchers = self._watchers.get(job_id)
                if watchers is not None:
                    watchers.discard(entry)
                    if not watchers:
                        del self._watchers[job_id]

    def notify(self, job_ids: Iterable[int]) -> None:
        with self._lock:
            entries = [e for job_id in job_ids for e in self._watchers.get(job_id, ())]
        self._wake(entries)

    def finished(self, rows: Mapping[int, Mapping[str, Any]]) -> None:
        """Terminal rows, committed by this process's worker: remember them, then wake."""
        jobs = {
            job_id: (int(row["tenant_id"]), JobOut.model_validate(dict(row)))
            for job_id, row in rows.items()
        }
        with self._lock:
            for job_id, (tenant_id, job) in jobs.items():
                if job.status.terminal and job_id not in self._deleted:
                    self._terminal[job_id] = (tenant_id, job)
                    self._open.pop(job_id, None)
            while len(self._terminal) > REMEMBERED_JOBS:
                self._terminal.popitem(last=False)
            entries = [e for job_id in jobs for e in self._watchers.get(job_id, ())]
        self._wake(entries)

    def deleted(self, job_ids: Iterable[int]) -> None:
        """Jobs whose rows were deleted (committed): never served from memory again (ids
        are never reused, so a late ``finished`` for them is dropped), watchers woken."""
        ids = list(job_ids)
        with self._lock:
            for job_id in ids:
                self._terminal.pop(job_id, None)
                self._open.pop(job_id, None)
                self._deleted[job_id] = None
            while len(self._deleted) > REMEMBERED_JOBS:
                self._deleted.popitem(last=False)
            entries = [e for job_id in ids for e in self._watchers.get(job_id, ())]
        self._wake(entries)

    def terminal(self, job_id: int, tenant_id: int) -> JobOut | None:
        """The tenant's job, if this process saw it finish (and still remembers it)."""
        with self._lock:
            found = self._terminal.get(job_id)
        return found[1] if found is not None and found[0] == tenant_id else None

    def accepted(self, job_id: int, tenant_id: int) -> None:
        """A job of the tenant this process has just committed as queued."""
        if not self.signals_completions:
            return
        with self._lock:
            self._open[job_id] = tenant_id
            while len(self._open) > REMEMBERED_JOBS:
                self._open.popitem(last=False)

    def is_open(self, job_id: int, tenant_id: int) -> bool:
        """The tenant's job, queued here and not yet seen finished (False once forgotten:
        then read the row)."""
        with self._lock:
            return self._open.get(job_id) == tenant_id

    @staticmethod
    def _wake(entries: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
        """One ``call_soon_threadsafe`` per event loop (each is a write to that loop's
        self-pipe), however many of its coroutines a batch wakes."""
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
        for loop, event in entries:
            by_loop.setdefault(loop, []).append(event)
        for loop, events in by_loop.items():
            with suppress(RuntimeError):  # that loop has closed: nobody waits there any more
                loop.call_soon_threadsafe(_set_all, events)


def _set_all(events: list[asyncio.Event]) -> None:
    for event in events:
        event.set()
