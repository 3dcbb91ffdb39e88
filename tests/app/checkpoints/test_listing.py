"""History: cursor pagination and filters over checkpoints; upload size and type limits."""

from __future__ import annotations

import datetime as dt
import io

import httpx
import pytest
import torch
from fastapi import FastAPI

from app.main import create_app
from graphs.safe_io import to_safetensors_bytes

pytestmark = pytest.mark.anyio


def model_bytes(seed: int) -> bytes:
    return to_safetensors_bytes({"w": torch.full((2,), float(seed))})


async def upload_many(client: httpx.AsyncClient, count: int) -> list[dict]:
    created = []
    for seed in range(count):
        response = await client.post("/v1/checkpoints", files={"file": ("m", model_bytes(seed))})
        created.append(response.json())
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer)
    response = await client.post("/v1/checkpoints", files={"file": ("m.pt", buffer.getvalue())})
    created.append(response.json())
    return created


async def test_cursor_pages_walk_everything_newest_first(client) -> None:
    created = await upload_many(client, 4)
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/checkpoints", params=params)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted((c["id"] for c in created), reverse=True)


async def test_filters_by_format_sha_prefix_and_time(client) -> None:
    created = await upload_many(client, 3)
    pytorch = (await client.get("/v1/checkpoints", params={"format": "pytorch"})).json()
    assert [item["id"] for item in pytorch["items"]] == [created[-1]["id"]]

    target = created[1]
    by_prefix = (
        await client.get("/v1/checkpoints", params={"sha256_prefix": target["sha256"][:12]})
    ).json()
    assert [item["id"] for item in by_prefix["items"]] == [target["id"]]

    created_at = dt.datetime.fromisoformat(target["created_at"])
    window = {
        "created_after": (created_at - dt.timedelta(microseconds=1)).isoformat(),
        "created_before": (created_at + dt.timedelta(microseconds=1)).isoformat(),
    }
    in_window = (await client.get("/v1/checkpoints", params=window)).json()
    assert [item["id"] for item in in_window["items"]] == [target["id"]]
    future = {"created_after": (created_at + dt.timedelta(days=1)).isoformat()}
    assert (await client.get("/v1/checkpoints", params=future)).json()["items"] == []


async def test_bad_cursor_and_bad_prefix_are_problems(client, assert_problem) -> None:
    assert_problem(await client.get("/v1/checkpoints?cursor=bm9wZQ"), 422, "cursor")
    assert_problem(await client.get("/v1/checkpoints?sha256_prefix=xyz"), 422, "hex")
    body = assert_problem(await client.get("/v1/checkpoints?limit=0"), 422, "limit")
    assert body["errors"][0]["loc"] == ["query", "limit"]


@pytest.fixture
async def small_limit_app(settings) -> FastAPI:
    limited = settings.model_copy(update={"max_upload_bytes": 1000})
    application = create_app(limited)
    async with application.router.lifespan_context(application):
        yield application


async def test_size_limit_is_enforced_while_streaming(
    small_limit_app, stored_files, checkpoint_rows, assert_problem
) -> None:
    async def chunks():  # no Content-Length: only counting the stream can stop it
        for _ in range(50):
            yield bytes(100)

    transport = httpx.ASGITransport(app=small_limit_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ws") as client:
        raw = await client.post(
            "/v1/checkpoints",
            content=chunks(),
            headers={"content-type": "application/octet-stream"},
        )
        assert_problem(raw, 413, "limit of 1000 bytes")
        multipart = await client.post("/v1/checkpoints", files={"file": ("m", bytes(5000))})
        assert_problem(multipart, 413, "limit of 1000 bytes")
    assert stored_files() == []
    assert checkpoint_rows() == 0


async def test_unsupported_content_type_and_missing_field(client, assert_problem) -> None:
    response = await client.post(
        "/v1/checkpoints", content=b"x", headers={"content-type": "text/plain"}
    )
    assert_problem(response, 415, "multipart/form-data")
    response = await client.post("/v1/checkpoints", files={"other": ("m", b"x")})
    assert_problem(response, 422, "'file'")
