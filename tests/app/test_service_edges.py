"""Cross-cutting HTTP behaviour: problem+json everywhere, health checks, OpenAPI."""

from __future__ import annotations

import httpx
import pytest

from app.main import create_app
from app.migrate import downgrade

pytestmark = pytest.mark.anyio


async def test_routing_errors_are_problems(client, assert_problem) -> None:
    assert_problem(await client.get("/v1/nothing-here"), 404)
    assert_problem(await client.put("/v1/checkpoints"), 405)
    assert_problem(await client.get("/v1/checkpoints/not-a-number"), 422, "checkpoint_id")
    body = assert_problem(
        await client.post("/v1/jobs", content=b"{", headers={"content-type": "application/json"}),
        422,
    )
    assert body["type"].endswith("validation")


async def test_unexpected_errors_are_problems_without_internals(app, assert_problem) -> None:
    async def explode() -> None:
        raise RuntimeError("secret internal state")

    app.add_api_route("/explode", explode)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ws") as client:
        body = assert_problem(await client.get("/explode"), 500)
    assert "secret" not in body["detail"]


async def test_health_reports_database_migrations_and_worker(client) -> None:
    assert (await client.get("/livez")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"database", "migrations", "worker"}


async def test_not_ready_without_worker_or_schema(settings, assert_problem) -> None:
    application = create_app(settings.model_copy(update={"embedded_worker": "off"}))
    transport = httpx.ASGITransport(app=application)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=transport, base_url="http://ws") as client,
    ):
        assert_problem(await client.get("/readyz"), 503, "no live job worker")
        downgrade(settings.database_url, "base")
        assert_problem(await client.get("/readyz"), 503, "head is")


async def test_openapi_documents_the_api(client) -> None:
    assert (await client.get("/docs")).status_code == 200
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/v1/checkpoints", "/v1/checkpoints/{checkpoint_id}/file", "/v1/jobs/{job_id}"):
        assert path in paths
    upload = paths["/v1/checkpoints"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/octet-stream"} <= upload.keys()
