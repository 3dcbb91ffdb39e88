"""Fixtures: real SQLite files, real PostgreSQL (fresh schema per test, skipped where there
is no server), migrations applied the way production does, and the ASGI app over HTTP
(``server``, the app on a loopback port, is shared from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.blobs import BlobStore
from app.db import SessionFactory, create_db_engine, create_session_factory
from app.migrate import upgrade
from app.models import Checkpoint, MetanetworkVersion
from app.settings import Settings


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
        # the names the tests' HTTP clients use (the default trusts only loopback names)
        "trusted_hosts": ["localhost", "127.0.0.1", "ws", "weightscope"],
        "worker_poll_seconds": 0.05,
        "heartbeat_seconds": 0.2,
        "stale_after_seconds": 5.0,
        # the worker in the API process: these tests register job kinds in this process
        # (tests/service runs the default, a worker process)
        "embedded_worker": "thread",
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
def stored_files(
    settings: Settings, session_factory: SessionFactory
) -> Callable[[], list[Path]]:
    """Every file in the blob store, temp files included, except the built-in metanetworks'
    weights (registered at start-up, there before any test's first request)."""

    def files() -> list[Path]:
        with session_factory() as session:
            builtin = set(
                session.scalars(
                    select(MetanetworkVersion.weights_sha256).where(
                        MetanetworkVersion.tenant_id.is_(None)
                    )
                )
            )
        return [
            p for p in BlobStore(settings.blob_dir).files() if p.parent.name + p.name not in builtin
        ]

    return files


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
