"""How a committed job reaches whoever runs it.

``enqueue`` runs inside the transaction that inserts the job row, ``committed`` after it.
With the in-process queue the row is all there is: ``committed`` wakes the embedded worker
so it does not wait for its next poll (``weightscope worker`` processes find rows by
polling). The procrastinate queue (``procrastinate_queue.py``) defers the job's delivery in
the same transaction, so there is never a job without one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy.orm import Session


class JobQueue(Protocol):
    def enqueue(self, session: Session, job_id: int, queue: str) -> None:
        """In the transaction that creates the job."""

    def committed(self) -> None:
        """After that transaction committed."""

    def close(self) -> None:
        """Release connections (at shutdown)."""


class InProcessQueue:
    def __init__(self) -> None:
        self._wakers: list[Callable[[], None]] = []

    def add_waker(self, wake: Callable[[], None]) -> None:
        self._wakers.append(wake)

    def enqueue(self, session: Session, job_id: int, queue: str) -> None:
        pass  # the queued row is the whole message

    def committed(self) -> None:
        for wake in self._wakers:
            wake()

    def close(self) -> None:
        self._wakers.clear()
