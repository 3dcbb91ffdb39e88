"""Fault tests (issue 16): PostgreSQL restarted under load (procrastinate, a cluster of the
test's own) leaves no job stuck and no result twice, and answers 503 rather than 500
while down; ``serve`` SIGKILLed during uploads and started again leaves no partial
upload file and no row without its blob."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from _throwaway_postgres import Cluster, throwaway_postgres  # noqa: F401 (a fixture)
from conftest import SCALE_OUT, WEIGHTSCOPE, Files, make_settings, upload
from sqlalchemy import func, select

from app.blobs import TEMP_PREFIX, BlobStore
from app.db import create_db_engine, create_session_factory
from app.main import create_app
from app.migrate import upgrade
from app.models import Checkpoint, Job, JobStatus, Prediction
from app.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
NAME = "tiny-digits"


def _environment(settings: Settings, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    for key, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"WEIGHTSCOPE_{key.upper()}"] = (
                json.dumps(value) if isinstance(value, list) else str(value)
            )
    return env


@contextlib.contextmanager
def _processes(tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    """Started processes, each in its own group; SIGTERM then SIGKILL at the end."""
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        cwd=log.parent, start_new_session=True,
    )


def _jobs_by_status(settings: Settings) -> dict[str, int]:
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            return {JobStatus(status).value: count for status, count in rows}
    finally:
        engine.dispose()


@pytest.mark.parametrize("queue", ["procrastinate", "inprocess"])
async def test_postgres_restart_under_load_leaves_no_stuck_job(
    throwaway_postgres: Cluster, files: Files, tmp_path: Path, queue: str  # noqa: F811
) -> None:
    """Both queues, with two ``weightscope worker`` processes each."""
    overrides = {**SCALE_OUT, "queue": queue}
    settings = make_settings(tmp_path / "data", throwaway_postgres.url, files, **overrides)
    upgrade(settings.database_url)
    env = _environment(settings, tmp_path)
    application = create_app(settings)
    statuses: list[int] = []
    accepted: list[int] = []
    with _processes(tmp_path) as workers:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://ws") as client:
                checkpoint = await upload(client, files.net_a)
                for n in range(2):
                    workers.append(
                        _start([str(WEIGHTSCOPE), "worker"], env, tmp_path / f"worker{n}.log")
                    )
                done = anyio.Event()

                async def submit() -> None:
                    while not done.is_set():
                        response = await client.post(
                            "/v1/jobs",
                            json={
                                "kind": "slow_predict",
                                "params": {
                                    "checkpoint_id": checkpoint, "metanetwork": NAME,
                                    "seconds": 0.1,
                                },
                            },
                        )
                        statuses.append(response.status_code)
                        if response.status_code == 202:
                            accepted.append(response.json()["id"])
                        else:
                            assert response.status_code == 503, response.text
                            assert response.headers["retry-after"].isdigit()
                            await anyio.sleep(0.2)
                        # a fixed pace (4 x 10/s): the load must not depend on how fast this
                        # machine answers, or it meets the tenant's jobs-in-flight quota (429)
                        await anyio.sleep(0.1)

                async with anyio.create_task_group() as load:
                    for _ in range(4):
                        load.start_soon(submit)
                    for _ in range(3):  # the fault campaign's `pg_ctl -m fast restart`
                        await anyio.sleep(2.5)
                        await anyio.to_thread.run_sync(throwaway_postgres.restart)
                    await anyio.sleep(2.0)
                    done.set()

                deadline = time.monotonic() + 180
                while (pending := _pending(settings)) and time.monotonic() < deadline:
                    await anyio.sleep(0.5)
                by_status = _jobs_by_status(settings)
                scraped = await client.get("/metrics")  # read from procrastinate's tables too

    assert scraped.status_code == 200
    assert "weightscope_database_up 1.0" in scraped.text
    assert "weightscope_job_duration_seconds_bucket{" in scraped.text
    assert "weightscope_worker_heartbeat_age_seconds{" in scraped.text
    assert "weightscope_workers_alive 2.0" in scraped.text

    assert accepted and set(statuses) <= {202, 503}, statuses
    assert not pending, f"stuck jobs after the restarts: {by_status}"
    assert sum(by_status.values()) == len(accepted)
    engine = create_db_engine(settings.database_url)
    with create_session_factory(engine)() as session:
        results = session.scalar(select(func.count()).select_from(Prediction))
        failed = session.execute(select(Job.id, Job.error).where(Job.status == "failed")).all()
    engine.dispose()
    # one result per succeeded job, never two; a job fails only once out of attempts
    assert results == by_status.get("succeeded", 0), by_status
    assert all("attempts" in (error or "") for _, error in failed), failed


def _pending(settings: Settings) -> int:
    by_status = _jobs_by_status(settings)
    return by_status.get("queued", 0) + by_status.get("running", 0)


# --- SIGKILL of serve during uploads ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/livez", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail("serve did not start")


def _slow_upload(base: str, data: bytes, stop: threading.Event) -> None:
    """Streams a checkpoint in small pieces, so that it is mid-body when serve dies."""

    def body() -> Iterator[bytes]:
        for start in range(0, len(data), 64 * 1024):
            if stop.is_set():
                time.sleep(30)  # stalls until serve dies
            yield data[start : start + 64 * 1024]
            time.sleep(0.01)

    with contextlib.suppress(httpx.HTTPError):
        httpx.post(
            f"{base}/v1/checkpoints",
            content=body(),
            headers={"content-type": "application/octet-stream"},
            timeout=60,
        )


def test_sigkill_of_serve_during_uploads_leaves_no_partial_file_or_row(
    files: Files, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WEIGHTSCOPE_DATA_DIR": str(data_dir),
        "WEIGHTSCOPE_METANETWORK_DIR": str(files.metanetworks),
        "WEIGHTSCOPE_PORT": str(port),
    }
    import torch

    torch.manual_seed(0)
    big = {f"layer{i}.weight": torch.randn(256, 256) for i in range(12)}  # ~3 MB each upload
    from graphs.safe_io import to_safetensors_bytes

    with _processes(tmp_path) as started:
        serve = _start([str(WEIGHTSCOPE), "serve"], env, tmp_path / "serve.log")
        started.append(serve)
        _wait_ready(base, serve)
        # finished uploads first, then uploads still streaming when serve is killed
        for seed in range(3):
            response = httpx.post(
                f"{base}/v1/checkpoints",
                content=to_safetensors_bytes({"w": torch.full((8,), float(seed))}),
                timeout=30,
            )
            assert response.status_code == 201, response.text
        stop = threading.Event()
        uploads = [
            threading.Thread(
                target=_slow_upload,
                args=(base, to_safetensors_bytes({**big, "seed": torch.tensor([n])}), stop),
            )
            for n in range(6)
        ]
        for thread in uploads:
            thread.start()
        blobs = BlobStore(settings.blob_dir)
        deadline = time.monotonic() + 60
        while len(_temp_files(blobs)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        partial = _temp_files(blobs)
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()
        assert partial, "no upload was in flight when serve was killed"
        assert _temp_files(blobs), "the partial uploads should be on disk until the restart"

        serve = _start([str(WEIGHTSCOPE), "serve"], env, tmp_path / "serve.log")
        started.append(serve)
        _wait_ready(base, serve)
        assert _temp_files(blobs) == []  # swept at start-up
        listed = httpx.get(f"{base}/v1/checkpoints", params={"limit": 100}, timeout=30).json()
        for item in listed["items"]:
            download = httpx.get(f"{base}/v1/checkpoints/{item['id']}/file", timeout=30)
            assert download.status_code == 200, download.text
        for thread in uploads:
            thread.join(60)

    engine = create_db_engine(settings.database_url)
    with create_session_factory(engine)() as session:
        rows = session.execute(select(Checkpoint.id, Checkpoint.blob_sha256)).all()
    engine.dispose()
    assert len(rows) >= 3
    assert all(blobs.exists(sha256) for _, sha256 in rows)  # no row without its blob


def _temp_files(blobs: BlobStore) -> list[Path]:
    return sorted(blobs.root.glob(f"{TEMP_PREFIX}*"))
