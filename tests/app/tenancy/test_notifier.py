"""The notifier answers a job's watchers from memory only for the job's own tenant: anyone
else goes to the row, and gets the 404 a missing job gets."""

from __future__ import annotations

from app.jobs.notify import JobNotifier
from app.models import JobStatus, utcnow


def test_open_and_finished_jobs_are_remembered_per_tenant() -> None:
    notifier = JobNotifier()
    with notifier.signalling():
        notifier.accepted(5, 1)
    assert notifier.is_open(5, 1) and not notifier.is_open(5, 2)
    row = {
        "id": 5, "tenant_id": 1, "kind": "k", "status": JobStatus.succeeded, "progress": 1.0,
        "params": {}, "result": {"secret": 42}, "error": None, "attempts": 1,
        "max_attempts": 3, "cancel_requested": False, "worker_id": "w", "created_at": utcnow(),
        "started_at": utcnow(), "finished_at": utcnow(), "heartbeat_at": None,
    }  # fmt: skip
    notifier.finished({5: row})
    assert not notifier.is_open(5, 1)
    assert notifier.terminal(5, 1) is not None and notifier.terminal(5, 1).result == {"secret": 42}
    assert notifier.terminal(5, 2) is None
