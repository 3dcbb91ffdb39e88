"""The embedded default's worker is a child process of the API: SIGKILLed mid-job, it is
started again, and its job is retried and finishes once, with one result row."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
from conftest import Files, count, job_row, make_settings, upload, wait_until
from sqlalchemy import select

from app.db import create_db_engine, create_session_factory
from app.migrate import upgrade
from app.models import JobStatus, Prediction, Worker
from app.settings import Settings

pytestmark = pytest.mark.anyio
NAME = "tiny-digits"


def worker_pid(settings: Settings, worker_id: str) -> int:
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            return int(session.scalar(select(Worker.pid).where(Worker.id == worker_id)))
    finally:
        engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, files: Files) -> Settings:
    """The folder's settings, plus the slow job kind (imported by the worker process too)
    and a short stale-job timeout, so the killed worker's job is requeued soon."""
    settings = make_settings(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        files,
        extra_job_modules=["_slow_jobs"],
        stale_after_seconds=2.0,
    )
    upgrade(settings.database_url)
    return settings


async def test_killed_worker_process_is_restarted_and_its_job_finishes_once(
    client: httpx.AsyncClient, settings: Settings, files: Files
) -> None:
    a = await upload(client, files.net_a)
    slow = {"checkpoint_id": a, "metanetwork": NAME, "seconds": 1.5}
    response = await client.post("/v1/jobs", json={"kind": "slow_predict", "params": slow})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_until(
        lambda: (row := job_row(settings, job_id)).status == JobStatus.running
        and row.progress > 0,
        90,
        "the worker process to be running the slow job",
    )
    killed = job_row(settings, job_id).worker_id
    pid = worker_pid(settings, killed)
    assert pid != os.getpid()  # a process of its own
    os.kill(pid, signal.SIGKILL)
    while (job := (await client.get(f"/v1/jobs/{job_id}?wait=30")).json())["status"] in (
        "queued",
        "running",
    ):
        pass
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    assert job_row(settings, job_id).worker_id != killed
    assert count(settings, Prediction, job_id=job_id) == 1
    # the replacement answers new predictions as the first did
    again = await client.post(
        "/v1/predictions?wait=60", json={"checkpoint_id": a, "metanetwork": NAME}
    )
    assert again.json()["status"] == "succeeded", again.text
