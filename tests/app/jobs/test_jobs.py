"""Jobs end to end (inspect), cancellation, exactly-once claims and dead-worker recovery."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from pydantic import BaseModel

from app.blobs import TEMP_PREFIX, BlobStore
from app.db import session_scope
from app.jobs import repository, runner
from app.jobs.kind import KINDS, JobContext, JobKind, JobLost
from app.jobs.worker import JobWorker
from app.main import create_app
from app.models import LOCAL_TENANT_ID, Job, JobStatus
from graphs.safe_io import to_safetensors_bytes

pytestmark = pytest.mark.anyio


@pytest.fixture
def database_url(any_database_url: str) -> str:
    return any_database_url


async def upload(client, tensors: dict[str, torch.Tensor]) -> dict:
    data = to_safetensors_bytes(tensors)
    response = await client.post("/v1/checkpoints", files={"file": ("m.safetensors", data)})
    assert response.status_code == 201, response.text
    return response.json()


async def test_inspect_job_runs_to_a_result(client) -> None:
    checkpoint = await upload(
        client, {"w": torch.tensor([[0.0, -3.0], [1.0, 2.0]]), "n": torch.tensor([0, 4])}
    )
    accepted = await client.post(f"/v1/checkpoints/{checkpoint['id']}/inspect")
    assert accepted.status_code == 202
    location = accepted.headers["location"]
    job = (await client.get(location, params={"wait": 30})).json()
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0 and job["attempts"] == 1
    stats = {t["name"]: t for t in job["result"]["tensors"]}
    assert stats["w"]["shape"] == [2, 2] and stats["w"]["dtype"] == "F32"
    assert stats["w"]["mean"] == pytest.approx(0.0)
    assert stats["w"]["min"] == -3.0 and stats["w"]["max"] == 2.0
    assert stats["w"]["abs_max"] == 3.0
    assert stats["w"]["frac_zero"] == 0.25
    assert stats["w"]["std"] == pytest.approx(
        torch.tensor([0.0, -3, 1, 2]).std(correction=0).item()
    )
    assert stats["n"]["dtype"] == "I64" and stats["n"]["frac_zero"] == 0.5


async def test_create_list_and_validate_jobs(client, assert_problem) -> None:
    checkpoint = await upload(client, {"w": torch.ones(3)})
    created = await client.post(
        "/v1/jobs", json={"kind": "inspect", "params": {"checkpoint_id": checkpoint["id"]}}
    )
    assert created.status_code == 202
    assert created.headers["location"] == f"/v1/jobs/{created.json()['id']}"
    await client.get(created.headers["location"], params={"wait": 30})

    listed = (
        await client.get("/v1/jobs", params={"kind": "inspect", "status": "succeeded"})
    ).json()
    assert [job["id"] for job in listed["items"]] == [created.json()["id"]]
    assert (await client.get("/v1/jobs", params={"status": "queued"})).json()["items"] == []

    assert_problem(await client.post("/v1/jobs", json={"kind": "nope"}), 422, "unknown job kind")
    missing = await client.post(
        "/v1/jobs", json={"kind": "inspect", "params": {"checkpoint_id": 999}}
    )
    assert_problem(missing, 422, "checkpoint 999 does not exist")
    assert_problem(await client.post("/v1/jobs", json={"kind": "inspect"}), 422, "checkpoint_id")
    assert_problem(await client.post("/v1/checkpoints/999/inspect"), 404, "checkpoint 999")
    assert_problem(await client.get("/v1/jobs/999"), 404, "job 999")


@pytest.fixture
async def client_without_worker(settings):
    """The API alone: jobs stay queued until a test runs a worker itself."""
    import httpx

    application = create_app(settings.model_copy(update={"embedded_worker": "off"}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://ws") as client:
            yield client


async def test_cancel_queued_job_and_refuse_to_cancel_finished_one(
    client_without_worker, settings, session_factory, assert_problem
) -> None:
    client = client_without_worker
    checkpoint = await upload(client, {"w": torch.ones(3)})
    first = (await client.post(f"/v1/checkpoints/{checkpoint['id']}/inspect")).json()
    second = (await client.post(f"/v1/checkpoints/{checkpoint['id']}/inspect")).json()
    canceled = await client.post(f"/v1/jobs/{first['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert (await client.post(f"/v1/jobs/{first['id']}/cancel")).json()["status"] == "canceled"

    # A separate worker process (here: in a thread) picks up only the live job.
    assert JobWorker(session_factory, settings).run_pending() == 1
    done = (await client.get(f"/v1/jobs/{second['id']}")).json()
    assert done["status"] == "succeeded"
    assert (await client.get(f"/v1/jobs/{first['id']}")).json()["status"] == "canceled"
    assert_problem(await client.post(f"/v1/jobs/{second['id']}/cancel"), 409, "already succeeded")


class NoParams(BaseModel):
    pass


@pytest.fixture
def blocking_kind(monkeypatch):
    """A job kind that reports progress until released, so cancellation can reach it."""
    started, release = threading.Event(), threading.Event()

    def run(ctx: JobContext) -> dict:
        ctx.min_progress_interval = 0.0
        started.set()
        release.wait(30)
        for step in range(100):
            ctx.progress(step / 100)
        return {"finished": True}

    monkeypatch.setitem(KINDS, "blocking", JobKind("blocking", NoParams, run))
    return started, release


async def test_cancel_running_job_stops_it_at_a_progress_point(
    client, blocking_kind, assert_problem
) -> None:
    started, release = blocking_kind
    job = (await client.post("/v1/jobs", json={"kind": "blocking"})).json()
    assert started.wait(30)
    requested = (await client.post(f"/v1/jobs/{job['id']}/cancel")).json()
    assert requested["status"] == "running" and requested["cancel_requested"] is True
    release.set()
    waited = await client.get(f"/v1/jobs/{job['id']}", params={"wait": 30})
    final = assert_problem(waited, 409, "canceled")["job"]  # canceled is not a success
    assert final["status"] == "canceled"
    assert final["result"] is None


def queued_job(session_factory, kind: str = "counting", max_attempts: int = 3) -> int:
    with session_factory() as session:
        job = Job(tenant_id=LOCAL_TENANT_ID, kind=kind, params={}, max_attempts=max_attempts)
        session.add(job)
        session.commit()
        return job.id


@pytest.fixture
def counting_kind(monkeypatch):
    runs: list[int] = []

    def run(ctx: JobContext) -> dict:
        runs.append(ctx.job_id)
        return {"attempt": ctx.attempt}

    monkeypatch.setitem(KINDS, "counting", JobKind("counting", NoParams, run))
    return runs


def test_racing_workers_run_a_job_exactly_once(session_factory, settings, counting_kind) -> None:
    job_id = queued_job(session_factory)
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(
            pool.map(lambda i: runner.run_job(job_id, session_factory, settings, f"w{i}"), range(6))
        )
    assert outcomes.count(True) == 1
    assert counting_kind == [job_id]
    with session_factory() as session:
        job = session.get_one(Job, job_id)
        assert job.status == JobStatus.succeeded and job.attempts == 1


def test_job_of_a_dead_worker_is_requeued_and_the_old_owner_cannot_finish(
    session_factory, settings, counting_kind
) -> None:
    job_id = queued_job(session_factory)
    claimed = repository.claim(session_factory, job_id, "ghost-worker")  # no workers row: dead
    assert claimed is not None
    attempt = claimed[1]
    assert attempt == 1
    ghost = JobContext(job_id, {}, "ghost-worker", attempt, session_factory, settings)

    assert repository.recover_stale_jobs(session_factory, dt.timedelta(minutes=5)) == [job_id]
    with pytest.raises(JobLost):
        ghost.progress(0.5)
    assert runner.run_job(job_id, session_factory, settings, "live-worker")
    late = repository.terminal_values(JobStatus.succeeded, {"attempt": "ghost"}, None)
    with session_scope(session_factory) as session:
        assert repository.finish_one(session, ghost, late) is None
    with session_factory() as session:
        job = session.get_one(Job, job_id)
        assert (job.status, job.result, job.attempts) == (JobStatus.succeeded, {"attempt": 2}, 2)


def test_job_is_failed_once_out_of_attempts(session_factory, counting_kind) -> None:
    job_id = queued_job(session_factory, max_attempts=1)
    repository.claim(session_factory, job_id, "ghost-worker")
    repository.recover_stale_jobs(session_factory, dt.timedelta(minutes=5))
    with session_factory() as session:
        job = session.get_one(Job, job_id)
        assert job.status == JobStatus.failed
        assert "gave up after 1 attempts" in (job.error or "")
    assert counting_kind == []


def test_job_with_a_fresh_heartbeat_and_live_worker_is_left_alone(
    session_factory, settings, counting_kind
) -> None:
    worker = JobWorker(session_factory, settings)
    repository.register_worker(session_factory, worker.id)
    job_id = queued_job(session_factory)
    repository.claim(session_factory, job_id, worker.id)
    assert repository.recover_stale_jobs(session_factory, dt.timedelta(minutes=5)) == []
    assert repository.recover_stale_jobs(session_factory, dt.timedelta(seconds=-1)) == [job_id]


def test_failing_job_records_the_error(session_factory, settings, monkeypatch) -> None:
    def run(ctx: JobContext) -> dict:
        raise ValueError("checkpoint has no usable tensors")

    monkeypatch.setitem(KINDS, "failing", JobKind("failing", NoParams, run))
    job_id = queued_job(session_factory, kind="failing")
    assert runner.run_job(job_id, session_factory, settings, "w")
    with session_factory() as session:
        job = session.get_one(Job, job_id)
        assert (job.status, job.error) == (JobStatus.failed, "checkpoint has no usable tensors")


def test_starting_worker_removes_what_a_killed_one_was_writing(session_factory, settings) -> None:
    """A replacement worker starts beside the temp file of the write its predecessor was
    killed in (a training state, say): no one would ever remove it otherwise."""
    blobs = BlobStore(settings.blob_dir)
    abandoned = blobs.root / f"{TEMP_PREFIX}killed-mid-write"
    abandoned.write_bytes(b"partial")
    live = blobs.temp()  # another process still writing keeps its file
    worker = JobWorker(session_factory, settings)
    worker.start()
    try:
        assert not abandoned.exists() and live.path.exists()
    finally:
        worker.stop()
        live.discard()
