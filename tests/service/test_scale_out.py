"""Scale-out on PostgreSQL: QUEUE=procrastinate, the API commits each job with its
procrastinate delivery, separate ``weightscope worker`` processes run them; a job queued
before any worker runs once one starts; a SIGKILLed worker's job is retried by another and
finishes once, with one result row. Skipped where no PostgreSQL is reachable."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from subprocess import Popen

import httpx
import pytest
from conftest import Files, count, job_row, upload, wait_until
from sqlalchemy import text

import graphs
from app.db import create_db_engine, create_session_factory, session_scope
from app.jobs import events
from app.jobs.notify import JobNotifier
from app.jobs.procrastinate_queue import ProcrastinateQueue, adopt, finished
from app.main import create_app
from app.models import JobStatus, Merge, Prediction
from app.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]
NAME = "tiny-digits"


@pytest.fixture
async def pg_client(pg_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(pg_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://ws") as client:
            yield client


async def test_predict_and_merge_through_a_worker_process(
    pg_client: httpx.AsyncClient,
    pg_settings: Settings,
    files: Files,
    start_worker: Callable[[], Popen],
) -> None:
    a, b = await upload(pg_client, files.net_a), await upload(pg_client, files.net_b)
    # queued while no worker runs: its delivery waits in procrastinate, committed with it
    early = await pg_client.post("/v1/predictions", json={"checkpoint_id": b, "metanetwork": NAME})
    orphan = early.json()["id"]
    start_worker()
    response = await pg_client.post(
        "/v1/predictions?wait=90", json={"checkpoint_id": a, "metanetwork": NAME}
    )
    job = response.json()
    assert job["status"] == "succeeded", job
    assert job["worker_id"] and job["attempts"] == 1
    (row,) = (await pg_client.get("/v1/predictions", params={"checkpoint_id": a})).json()["items"]
    assert row["job_id"] == job["id"] and row["label"] == job["result"]["label"]

    dataset = await pg_client.post(
        "/v1/datasets", files={"file": ("d.safetensors", files.dataset.read_bytes())}
    )
    merge_job = (
        await pg_client.post(
            "/v1/merges?wait=90",
            json={"checkpoints": [a, b], "dataset_id": dataset.json()["id"], "curve_points": 3},
        )
    ).json()
    assert merge_job["status"] == "succeeded", merge_job
    (merge,) = (await pg_client.get("/v1/merges")).json()["items"]
    assert merge["barrier"] is not None and len(merge["result"]["curves"]["aligned"]["losses"]) == 3
    download = await pg_client.get(f"/v1/checkpoints/{merge['result_checkpoint_id']}/file")
    assert graphs.load(download.content).architecture == graphs.load(files.net_a).architecture

    wait_until(lambda: job_row(pg_settings, orphan).status.terminal, 60, "the early job")
    assert job_row(pg_settings, orphan).status == JobStatus.succeeded
    for job_id in (job["id"], orphan):
        assert count(pg_settings, Prediction, job_id=job_id) == 1
    assert count(pg_settings, Merge, job_id=merge_job["id"]) == 1
    jobs = (await pg_client.get("/v1/jobs")).json()["items"]
    assert {j["status"] for j in jobs} == {"succeeded"}


async def test_killed_worker_job_is_retried_and_finishes_once(
    pg_client: httpx.AsyncClient,
    pg_settings: Settings,
    files: Files,
    start_worker: Callable[[], Popen],
) -> None:
    first = start_worker()
    a = await upload(pg_client, files.net_a)
    response = await pg_client.post(
        "/v1/jobs",
        json={
            "kind": "slow_predict",
            "params": {"checkpoint_id": a, "metanetwork": NAME, "seconds": 1.5},
        },
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_until(
        lambda: (
            (row := job_row(pg_settings, job_id)).status == JobStatus.running and row.progress > 0
        ),
        90,
        "the first worker to be running the slow job",
    )
    killed_worker = job_row(pg_settings, job_id).worker_id
    start_worker()  # starts up (slow imports) while the first one is busy; takes over later
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    wait_until(
        lambda: job_row(pg_settings, job_id).status.terminal, 90, "the job to finish elsewhere"
    )
    job = job_row(pg_settings, job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert job.attempts == 2 and job.worker_id != killed_worker
    assert count(pg_settings, Prediction, job_id=job_id) == 1


async def test_a_worker_process_wakes_the_long_poll_of_the_job_it_finishes(
    pg_client: httpx.AsyncClient,
    files: Files,
    start_worker: Callable[[], Popen],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's NOTIFY reaches the API and wakes the long-poll of the job it finished
    (polls are a minute apart, so polling does not end these waits)."""
    for name in ("FIRST_DELAY", "MAX_DELAY", "OPEN_POLL_SECONDS"):
        monkeypatch.setattr(events, name, 60.0)
    announced: list[int] = []
    notify = JobNotifier.notify
    monkeypatch.setattr(
        JobNotifier, "notify", lambda self, ids: notify(self, announced.extend(ids) or ids)
    )
    start_worker()
    a = await upload(pg_client, files.net_a)
    for _ in range(2):  # the first also waits out the worker's start-up
        response = await pg_client.post(
            "/v1/predictions?wait=50", json={"checkpoint_id": a, "metanetwork": NAME}
        )
        assert response.json()["status"] == "succeeded", response.text
        assert response.json()["id"] in announced


def test_a_batch_takes_its_mates_deliveries_over_and_finishes_them(
    pg_settings: Settings,
) -> None:
    """What a micro-batch does with procrastinate for the mates it claims: their waiting
    deliveries become ``doing`` (so only procrastinate's stall retry can hand them out
    again), and they are finished in the transaction that writes the outcomes; the
    delivered job's own is left to procrastinate; no other job's is touched."""
    engine = create_db_engine(pg_settings.database_url)
    factory = create_session_factory(engine)
    queue = ProcrastinateQueue(pg_settings.database_url)
    statuses = text("SELECT queueing_lock, status FROM procrastinate_jobs ORDER BY id")
    try:
        with session_scope(factory) as session:
            for job_id in (101, 102, 103, 104):
                queue.enqueue(session, job_id, "cpu")
            session.execute(
                text(
                    "UPDATE procrastinate_jobs SET status = 'doing'"
                    " WHERE queueing_lock = 'job-101'"
                )
            )
        with session_scope(factory) as session:
            assert adopt(session, 101, [102, 103]) == [102, 103]
        with engine.connect() as connection:
            assert dict(connection.execute(statuses).all()) == {
                "job-101": "doing", "job-102": "doing", "job-103": "doing", "job-104": "todo",
            }  # fmt: skip
        with session_scope(factory) as session:
            assert adopt(session, 101, [102, 104]) == [104]  # 102 is no longer waiting
            finished(session, 101, [101, 102, 103])
        with engine.connect() as connection:
            assert dict(connection.execute(statuses).all()) == {
                "job-101": "doing", "job-104": "doing",
            }  # fmt: skip
    finally:
        engine.dispose()
