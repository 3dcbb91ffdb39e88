"""Fixtures for end-to-end service tests: digits networks, a dataset and a tiny
metanetwork (built once per session), the app over HTTP on SQLite with the embedded
worker, and PostgreSQL with procrastinate and ``weightscope worker`` subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))

from _service_nets import (
    digits,
    mlp,
    save_dataset,
    save_net,
    save_tiny_metanetwork,
    train,
)

from app.db import create_db_engine, create_session_factory
from app.migrate import upgrade
from app.models import Job
from app.settings import Settings

torch.set_num_threads(1)

WEIGHTSCOPE = Path(sys.executable).parent / "weightscope"


@dataclass(frozen=True)
class Files:
    net_a: Path
    net_b: Path
    net_c: Path  # same architecture, a third seed
    wide: Path  # same ops and shapes, more neurons than the metanetwork's domain holds
    other_io: Path  # different input/output shapes: outside the domain at request time
    other_arch: Path  # 32 hidden units: cannot be merged with net_a
    dataset: Path
    bad_dataset: Path  # x of the wrong shape
    metanetworks: Path


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("service-files")
    x_train, y_train, x_test, y_test = digits()
    nets = [
        save_net(train(mlp(16, seed), x_train, y_train, 150, seed), root / f"net{seed}.safetensors")
        for seed in (1, 2, 3)
    ]
    wide = save_net(mlp(64, 4), root / "wide.safetensors")
    torch.manual_seed(5)
    other_io = save_net(
        torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)),
        root / "other_io.safetensors",
        (3,),
    )
    other_arch = save_net(mlp(32, 6), root / "other_arch.safetensors")
    metanetworks = root / "metanetworks"
    save_tiny_metanetwork(metanetworks, nets)
    return Files(
        *nets,
        wide,
        other_io,
        other_arch,
        save_dataset(root / "digits.safetensors", x_test, y_test),
        save_dataset(root / "bad.safetensors", x_test.reshape(len(x_test), -1)[:, :10], y_test),
        metanetworks,
    )


def make_settings(data_dir: Path, database_url: str, files: Files, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        # the names the tests' HTTP clients use (the default trusts only loopback names)
        "trusted_hosts": ["localhost", "127.0.0.1", "ws", "weightscope"],
        "metanetwork_dir": files.metanetworks,
        "worker_poll_seconds": 0.05,
        "heartbeat_seconds": 0.2,
        "stale_after_seconds": 5.0,
        "max_wait_ms": 0.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path, files: Files) -> Settings:
    settings = make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", files)
    upgrade(settings.database_url)
    return settings


def assert_problem(response: httpx.Response, status: int, fragment: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and fragment in body["detail"], body
    return body


async def upload(client: httpx.AsyncClient, path: Path, route: str = "/v1/checkpoints") -> int:
    response = await client.post(route, files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    return int(response.json()["id"])


# --- PostgreSQL and worker processes -----------------------------------------------------


SCALE_OUT = {
    "queue": "procrastinate",
    "embedded_worker": "off",
    "heartbeat_seconds": 0.3,
    "stale_after_seconds": 2.0,
    "stalled_worker_seconds": 2.0,
    "worker_poll_seconds": 0.2,
    "extra_job_modules": ["_slow_jobs"],
}


@pytest.fixture
def pg_settings(tmp_path: Path, postgres_url: str, files: Files) -> Settings:
    settings = make_settings(tmp_path / "data", postgres_url, files, **SCALE_OUT)
    upgrade(settings.database_url)
    return settings


@pytest.fixture
def start_worker(pg_settings: Settings, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen]]:
    """Start ``weightscope worker`` processes on the test's database; all are stopped at
    the end (SIGTERM, then SIGKILL)."""
    processes: list[subprocess.Popen] = []
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent),
        "OMP_NUM_THREADS": "1",
    }
    for key, value in pg_settings.model_dump(mode="json").items():
        if value is None:  # unset: the worker applies its own default
            continue
        env[f"WEIGHTSCOPE_{key.upper()}"] = (
            json.dumps(value) if isinstance(value, list) else str(value)
        )

    def start() -> subprocess.Popen:
        log = (tmp_path / f"worker-{len(processes)}.log").open("wb")
        process = subprocess.Popen(
            [str(WEIGHTSCOPE), "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate``; fail the test (with ``what``) if it stays false for ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def job_row(settings: Settings, job_id: int) -> Job:
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            return session.get_one(Job, job_id)
    finally:
        engine.dispose()


def count(settings: Settings, model: type, **where: object) -> int:
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            query = select(func.count()).select_from(model)
            for key, value in where.items():
                query = query.where(getattr(model, key) == value)
            return int(session.scalar(query) or 0)
    finally:
        engine.dispose()
