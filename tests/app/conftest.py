"""Fixtures: real SQLite files, real PostgreSQL (fresh schema per test, skipped where there
is no server), migrations applied the way production does, and the ASGI app over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.blobs import BlobStore
from app.db import SessionFactory, create_db_engine, create_session_factory
from app.main import create_app
from app.migrate import upgrade
from app.models import Checkpoint
from app.settings import Settings

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_DATABASE = "test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_user() -> str:
    """The first role that can connect to the test database, or skip with the reason."""
    reasons = []
    for user in ("postgres", "root"):
        try:
            with psycopg.connect(
                host=PG_HOST, port=PG_PORT, dbname=PG_DATABASE, user=user, connect_timeout=3
            ):
                return user
        except psycopg.Error as exc:
            reasons.append(f"{user}: {str(exc).strip().splitlines()[0]}")
    pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}/{PG_DATABASE} ({reasons})")


@pytest.fixture
def postgres_url(postgres_user: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    schema = f"ws_test_{uuid.uuid4().hex[:12]}"
    admin = {"host": PG_HOST, "port": PG_PORT, "dbname": PG_DATABASE, "user": postgres_user}
    with psycopg.connect(**admin, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            f"postgresql+psycopg://{postgres_user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}"
            f"?options=-csearch_path%3D{schema}"
        )
    finally:
        with psycopg.connect(**admin, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on a SQLite file and once on PostgreSQL."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "worker_poll_seconds": 0.05,
        "heartbeat_seconds": 0.2,
        "stale_after_seconds": 5.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    settings = make_settings(tmp_path / "data", database_url)
    upgrade(settings.database_url)
    return settings


@pytest.fixture
def session_factory(settings: Settings) -> Iterator[SessionFactory]:
    engine = create_db_engine(settings.database_url)
    yield create_session_factory(engine)
    engine.dispose()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://weightscope") as client:
        yield client


@pytest.fixture
def stored_files(settings: Settings) -> Callable[[], list[Path]]:
    """Every file in the blob store, temp files included."""
    return lambda: BlobStore(settings.blob_dir).files()


@pytest.fixture
def checkpoint_rows(session_factory: SessionFactory) -> Callable[[], int]:
    def count() -> int:
        with session_factory() as session:
            return int(session.scalar(select(func.count()).select_from(Checkpoint)) or 0)

    return count


def _assert_problem(response: httpx.Response, status: int, detail_fragment: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert detail_fragment in body["detail"], body["detail"]
    return body


@pytest.fixture
def assert_problem() -> Callable[..., dict]:
    """Check a response is problem+json with this status and a detail naming the cause."""
    return _assert_problem
