"""In-process wake-ups for whoever watches a job (long-poll and SSE, ``app/jobs/events.py``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress


class JobNotifier:
    """In-process wake-ups for coroutines watching jobs.

    ``notify(job_ids)`` may be called from any thread (the embedded worker's) after the
    transaction that changed those jobs has committed; every coroutine inside
    ``watch(job_id)`` for one of them is woken in its own event loop. A notification is only
    a hint to read the row again: the row stays the truth, and a missed one costs at most a
    poll interval. ``signals_completions`` is set while an in-process worker reports the
    jobs it finishes.
    """

    def __init__(self) -> None:
        self._watchers: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()
        self.signals_completions = False

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
        for loop, event in entries:
            with suppress(RuntimeError):  # that loop has closed: nobody waits there any more
                loop.call_soon_threadsafe(event.set)
