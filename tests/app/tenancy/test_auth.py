"""Authentication modes and API keys over HTTP: 401 without a valid key on every /v1 route
once auth is on, open on loopback while no key exists, refusing a network address without
auth, and the paths that stay open (or need an admin key)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from app import auth
from app.auth import AuthNotConfigured
from app.db import create_db_engine, create_session_factory
from app.keys import create_key, revoke_key
from app.migrate import upgrade
from app.models import LOCAL_TENANT_ID, ApiKey, Checkpoint
from app.settings import Settings
from tests.app.tenancy.conftest import Files, Tenant, serving, tenancy_settings, upload
from tests.app.tenancy.test_isolation import api_routes

pytestmark = pytest.mark.anyio


def _filled(template: str) -> str:
    return re.sub(r"\{name\}", "x", re.sub(r"\{\w+_id\}", "1", template))


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_every_api_route_needs_a_valid_key(app: FastAPI, client: httpx.AsyncClient) -> None:
    routes = api_routes(app)
    assert len(routes) >= 20
    for method, template in routes:
        path = _filled(template)
        for headers in (
            {},
            {"Authorization": "Bearer ws_not-a-key"},
            {"Authorization": "Bearer "},
            {"Authorization": "Basic d3M6d3M="},
        ):
            _assert_401(await client.request(method, path, headers=headers, json={}))


async def test_health_and_docs_stay_open(client: httpx.AsyncClient) -> None:
    for path in ("/livez", "/readyz", "/docs", "/openapi.json"):
        assert (await client.get(path)).status_code == 200, path


async def test_a_key_works_until_it_is_revoked(
    as_alice: httpx.AsyncClient, alice: Tenant, session_factory, files: Files
) -> None:
    created = await upload(as_alice, files.net_a)
    with session_factory() as session:
        assert session.get(Checkpoint, created["id"]).tenant_id == alice.tenant_id
        assert session.get(ApiKey, alice.key_id).last_used_at is not None
    assert revoke_key(session_factory, alice.key_id)
    _assert_401(await as_alice.get(f"/v1/checkpoints/{created['id']}"))
    assert not revoke_key(session_factory, alice.key_id)  # already revoked


async def test_only_the_hash_of_a_key_is_stored(session_factory, alice: Tenant) -> None:
    with session_factory() as session:
        row = session.get(ApiKey, alice.key_id)
        stored = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
    assert alice.token not in " ".join(stored)
    assert alice.token.startswith(row.prefix) and len(row.prefix) < len(alice.token) // 3


# --- modes --------------------------------------------------------------------------------


def sqlite_settings(tmp_path: Path, files: Files, **overrides: object) -> Settings:
    settings = tenancy_settings(
        tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", files, **overrides
    )
    upgrade(settings.database_url)
    return settings


def key_for(settings: Settings, tenant: str) -> str:
    engine = create_db_engine(settings.database_url)
    try:
        return create_key(create_session_factory(engine), f"{tenant}-key", tenant).token
    finally:
        engine.dispose()


async def test_auto_on_loopback_is_open_until_a_key_exists(
    tmp_path: Path, files: Files, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    monkeypatch.setattr(auth, "KEYS_SEEN_SECONDS", 0.0)
    settings = sqlite_settings(tmp_path, files, auth="auto", host="127.0.0.1")
    with caplog.at_level(logging.INFO, logger="app.auth"):
        async with serving(settings) as (_, client):
            assert "auth: open on 127.0.0.1" in caplog.text
            created = await upload(client, files.net_a)  # no key, no set-up
            assert (await client.get(f"/v1/checkpoints/{created['id']}")).status_code == 200
            token = key_for(settings, "alice")
            _assert_401(await client.get("/v1/checkpoints"))  # a key exists: keys from now on
            headers = {"Authorization": f"Bearer {token}"}
            keyed = await client.get("/v1/checkpoints", headers=headers)
            assert keyed.status_code == 200 and keyed.json()["items"] == []
    engine = create_db_engine(settings.database_url)
    with create_session_factory(engine)() as session:
        assert session.get(Checkpoint, created["id"]).tenant_id == LOCAL_TENANT_ID
    engine.dispose()


async def test_open_mode_ignores_keys_and_acts_as_the_local_tenant(
    tmp_path: Path, files: Files
) -> None:
    settings = sqlite_settings(tmp_path, files, auth="open")
    key_for(settings, "alice")
    async with serving(settings) as (_, client):
        created = await upload(client, files.net_a)
        listed = await client.get("/v1/checkpoints", headers={"Authorization": "Bearer nonsense"})
        assert [c["id"] for c in listed.json()["items"]] == [created["id"]]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::"])
async def test_auto_refuses_a_network_address_without_keys(
    tmp_path: Path, files: Files, host: str
) -> None:
    settings = sqlite_settings(tmp_path, files, auth="auto", host=host)
    with pytest.raises(AuthNotConfigured, match="refusing to serve"):
        async with serving(settings):
            pass


async def test_a_network_address_serves_with_keys_or_explicit_settings(
    tmp_path: Path, files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    settings = sqlite_settings(tmp_path, files, auth="auto", host="0.0.0.0")
    token = key_for(settings, "alice")
    async with serving(settings) as (_, client):  # a key exists: auth is on
        _assert_401(await client.get("/v1/checkpoints"))
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/v1/checkpoints", headers=headers)).status_code == 200
    required = settings.model_copy(update={"auth": "required"})
    async with serving(required) as (_, client):
        _assert_401(await client.get("/v1/checkpoints"))
    with caplog.at_level(logging.WARNING, logger="app.auth"):
        async with serving(settings.model_copy(update={"auth": "open"})) as (_, client):
            assert (await client.get("/v1/checkpoints")).status_code == 200
    assert "auth is OFF" in caplog.text


async def test_required_without_any_key_answers_401(tmp_path: Path, files: Files) -> None:
    async with serving(sqlite_settings(tmp_path, files, auth="required")) as (_, client):
        _assert_401(await client.get("/v1/checkpoints"))


async def test_metrics_need_an_admin_key_once_auth_is_on(
    tmp_path: Path, files: Files, make_tenant
) -> None:
    settings = sqlite_settings(tmp_path, files, auth="required")
    engine = create_db_engine(settings.database_url)
    factory = create_session_factory(engine)
    admin = create_key(factory, "ops", "operators", admin=True).token
    plain = create_key(factory, "app", "alice").token
    engine.dispose()

    async def metrics(_: Request) -> PlainTextResponse:
        return PlainTextResponse("weightscope_up 1\n")

    async with serving(settings) as (application, client):
        if not any(getattr(r, "path", None) == "/metrics" for r in application.routes):
            application.add_route("/metrics", metrics)
        _assert_401(await client.get("/metrics"))
        forbidden = await client.get("/metrics", headers={"Authorization": f"Bearer {plain}"})
        assert forbidden.status_code == 403
        allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
        assert allowed.status_code == 200
    open_settings = settings.model_copy(update={"auth": "open"})
    async with serving(open_settings) as (application, client):
        if not any(getattr(r, "path", None) == "/metrics" for r in application.routes):
            application.add_route("/metrics", metrics)
        assert (await client.get("/metrics")).status_code == 200


async def test_the_openapi_document_declares_the_bearer_scheme(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    secured = document["paths"]["/v1/checkpoints"]["get"]["security"]
    assert secured and not document["paths"]["/livez"]["get"].get("security")
