"""Jobs a QA pass found answered badly: a list filter that can never match, and a train
job through ``POST /v1/jobs`` that asked the caller for its tenant."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.models import LOCAL_TENANT_ID
from tests.app.metanetworks._zoo import insert_zoo, save_nets

pytestmark = pytest.mark.anyio


async def test_list_with_an_unknown_kind_is_a_422_naming_the_kinds(client, assert_problem) -> None:
    body = assert_problem(await client.get("/v1/jobs?kind=bogus"), 422, "kind: 'bogus'")
    for kind in ("inspect", "merge", "predict", "train"):
        assert kind in body["detail"]
    assert (await client.get("/v1/jobs?kind=merge")).json()["items"] == []
    assert_problem(await client.get("/v1/jobs?status=bogus"), 422, "query.status")


async def test_openapi_lists_the_job_kinds_of_the_filter(client) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/jobs"]["get"]
    (kind,) = [p for p in operation["parameters"] if p["name"] == "kind"]
    enums = [o.get("enum") for o in kind["schema"].get("anyOf", [kind["schema"]])]
    assert any(e and {"inspect", "merge", "predict", "train"} <= set(e) for e in enums), kind


@pytest.fixture
async def client_without_worker(settings):
    """The API alone: a queued train job stays queued."""
    application = create_app(settings.model_copy(update={"embedded_worker": "off"}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://ws") as client:
            yield client


async def test_train_through_post_jobs_takes_the_tenant_from_the_api_key(
    client_without_worker, settings, tmp_path: Path, assert_problem
) -> None:
    client = client_without_worker
    zoo_id = await insert_zoo(client, settings.database_url, save_nets(tmp_path / "nets"), "z")
    params = {"name": "mine", "zoo_id": zoo_id, "epochs": 1}
    response = await client.post("/v1/jobs", json={"kind": "train", "params": params})
    assert response.status_code == 202, response.text
    assert response.json()["params"]["tenant_id"] == LOCAL_TENANT_ID

    for tenant in (LOCAL_TENANT_ID, 2):
        named = await client.post(
            "/v1/jobs",
            json={"kind": "train", "params": {**params, "name": "other", "tenant_id": tenant}},
        )
        assert_problem(named, 422, "tenant_id: not a parameter")


async def test_train_job_create_schema_has_no_tenant_id(client) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    train = schemas["TrainJobCreate"]["properties"]["params"]
    ref = train.get("$ref") or train["allOf"][0]["$ref"]
    params = schemas[ref.rsplit("/", 1)[1]]
    assert "tenant_id" not in params["properties"]
    assert {"name", "zoo_id"} <= set(params["required"])
