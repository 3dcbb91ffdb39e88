"""Handing a committed job to whoever runs it.

The job row (status ``queued``) is the truth about a job; a queue only carries its id. With
the in-process backend, ``enqueue`` wakes the embedded worker so it does not wait for its
next poll, and ``weightscope worker`` processes find rows by polling. The procrastinate
backend (``app/jobs/procrastinate_queue.py``) defers a procrastinate job that carries the id
to the queue of the kind's device class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class JobQueue(Protocol):
    def enqueue(self, job_id: int, queue: str) -> None:
        """Called only after the transaction that created the job has committed."""

    def close(self) -> None:
        """Release connections (at shutdown)."""


class InProcessQueue:
    def __init__(self) -> None:
        self._wakers: list[Callable[[], None]] = []

    def add_waker(self, wake: Callable[[], None]) -> None:
        self._wakers.append(wake)

    def enqueue(self, job_id: int, queue: str) -> None:
        for wake in self._wakers:
            wake()

    def close(self) -> None:
        self._wakers.clear()
