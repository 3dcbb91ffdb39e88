"""Another tenant's metanetworks and zoos do not exist for a caller: not listed, 404 to
read, delete or train on; built-ins are everyone's and nobody's to delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.db import create_db_engine, create_session_factory, session_scope
from app.models import MetanetworkVersion, Tenant
from app.settings import Settings
from app.tenancy import Caller, current_caller

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Any, database_url: str) -> Settings:
    """The API alone (no worker: nothing here runs a job)."""
    from app.migrate import upgrade
    from tests.app.conftest import make_settings

    settings = make_settings(tmp_path / "data", database_url, embedded_worker="off")
    upgrade(settings.database_url)
    return settings


def add_rows(settings: Settings) -> None:
    engine = create_db_engine(settings.database_url)
    try:
        with session_scope(create_session_factory(engine)) as session:
            session.add(Tenant(id=2, name="other"))
            session.flush()
            session.add(MetanetworkVersion(
                tenant_id=2, name="theirs", version=1, task="classification",
                card={"name": "theirs", "labels": ["a", "b"], "domain": {}, "metrics": {}},
                config={}, weights_sha256="ab" * 32, weights_size=1))
    finally:
        engine.dispose()


async def test_tenants_see_only_their_own(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, assert_problem: Any
) -> None:
    add_rows(settings)
    mine = [m["name"] for m in (await client.get("/v1/metanetworks")).json()]
    assert "theirs" not in mine and "digits-inr-classifier" in mine
    assert_problem(await client.get("/v1/metanetworks/theirs"), 404, "theirs")
    assert_problem(await client.delete("/v1/metanetworks/theirs"), 404, "theirs")

    app.dependency_overrides[current_caller] = lambda: Caller(tenant_id=2, key_id=7, admin=False)
    try:
        theirs = (await client.get("/v1/metanetworks")).json()
        assert [m["name"] for m in theirs if not m["builtin"]] == ["theirs"]
        assert (await client.get("/v1/metanetworks/theirs@1")).json()["version_number"] == 1
        assert_problem(await client.delete("/v1/metanetworks/digits-inr-classifier"), 409,
                       "built-in")
        assert (await client.delete("/v1/metanetworks/theirs")).json()["versions"] == [1]
        assert_problem(await client.get("/v1/metanetworks/theirs"), 404, "theirs")
    finally:
        app.dependency_overrides.clear()
