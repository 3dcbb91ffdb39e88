"""Fixtures every test folder shares: the anyio backend, the real PostgreSQL on
127.0.0.1 (skipped, with the reason, where it is not reachable), a fresh schema per test,
and the ASGI app with an HTTP client on the ``settings`` of the requesting test's folder."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

    from app.settings import Settings

PG = {"host": "127.0.0.1", "port": 5432, "dbname": "test"}


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    """A test that runs ``configure_logging`` (a CLI command, a worker) leaves the root
    logger as it found it, so later tests' captured stderr holds only their own lines."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_user() -> str:
    """The first role that can connect to the test database, or skip with the reason."""
    reasons = []
    for user in ("postgres", "root"):
        try:
            with psycopg.connect(**PG, user=user, connect_timeout=3):
                return user
        except psycopg.Error as exc:
            reasons.append(f"{user}: {str(exc).strip().splitlines()[0]}")
    pytest.skip(f"PostgreSQL not reachable at {PG['host']}:{PG['port']}/{PG['dbname']} ({reasons})")


@pytest.fixture
def postgres_url(postgres_user: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema (procrastinate's tables go there too),
    dropped after the test."""
    schema = f"ws_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(**PG, user=postgres_user, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            f"postgresql+psycopg://{postgres_user}@{PG['host']}:{PG['port']}/{PG['dbname']}"
            f"?options=-csearch_path%3D{schema}"
        )
    finally:
        with psycopg.connect(**PG, user=postgres_user, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


# --- the service over HTTP ---------------------------------------------------------------
# One definition for tests/app and tests/service: each folder's conftest keeps its own
# ``settings`` fixture (they differ), and pytest resolves it from the requesting test. The
# service is imported in the fixtures, so the other folders' tests do not load it.


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app on the folder's settings, its lifespan (worker, database) entered."""
    from app.main import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on ``app`` in this process (ASGI transport, no socket)."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://weightscope") as client:
        yield client


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """The app (with its embedded worker) served by uvicorn on a free loopback port, in a
    thread of this process; its base URL (for the CLI and the client)."""
    import socket
    import threading
    import time

    import uvicorn

    from app.main import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(20)
