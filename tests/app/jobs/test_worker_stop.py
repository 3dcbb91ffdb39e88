"""Stopping the embedded worker process (issue 16, defect 10): a worker that has said it
stopped is not then waited for and killed, however slowly its interpreter would tear
itself down (torch's can take longer than the parent waits on a busy machine)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from app.jobs.notify import JobNotifier
from app.jobs.worker_process import WorkerProcess
from app.settings import Settings

pytestmark = pytest.mark.anyio

SLOW_TEARDOWN = '''
import atexit, time
atexit.register(time.sleep, 60)  # an interpreter teardown slower than the parent waits
'''


async def test_stopped_worker_process_exits_without_being_killed(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    (tmp_path / "slow_teardown.py").write_text(SLOW_TEARDOWN)
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned child gets this sys.path
    caplog.set_level(logging.INFO)
    worker = WorkerProcess(settings, JobNotifier(), ["slow_teardown"])
    worker.stop_timeout = 5.0
    worker.start()
    for _ in range(1200):  # the child imports torch first
        if worker._ready.is_set():
            break
        await asyncio.sleep(0.1)
    assert worker._ready.is_set(), "the worker process did not start"
    process = worker._process
    await asyncio.to_thread(worker.stop)
    assert process.exitcode == 0  # it left by itself; a kill would be -9
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()]
    assert "slow_teardown" not in sys.modules  # it ran in the child only
