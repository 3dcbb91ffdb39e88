"""Handing a committed job to whoever runs it.

The job row (status ``queued``) is the queue itself; with the in-process backend,
``enqueue`` only wakes the embedded worker so it does not wait for its next poll. Workers in
other processes (``weightscope worker``) find the row by polling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class JobQueue(Protocol):
    def enqueue(self, job_id: int) -> None:
        """Called only after the transaction that created the job has committed."""


class InProcessQueue:
    def __init__(self) -> None:
        self._wakers: list[Callable[[], None]] = []

    def add_waker(self, wake: Callable[[], None]) -> None:
        self._wakers.append(wake)

    def enqueue(self, job_id: int) -> None:
        for wake in self._wakers:
            wake()
