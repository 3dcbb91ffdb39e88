"""Dataset uploads name their file the way checkpoint uploads do: a name past 255 characters
is a 422 naming the limit (never silently cut), and a refused upload stores nothing."""

from __future__ import annotations

import pytest
import torch
from sqlalchemy import func, select

from app.models import Dataset
from graphs.safe_io import to_safetensors_bytes

pytestmark = pytest.mark.anyio


def dataset_bytes() -> bytes:
    generator = torch.Generator().manual_seed(0)
    return to_safetensors_bytes(
        {"x": torch.randn(8, 3, generator=generator), "y": torch.randint(0, 2, (8,))}
    )


def dataset_rows(session_factory) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Dataset)) or 0)


@pytest.mark.parametrize("where", ["query", "multipart", "multipart-short"])
async def test_a_too_long_dataset_filename_is_a_422_naming_the_limit(
    client, assert_problem, stored_files, session_factory, where
) -> None:
    name = "a" * (300 if where == "multipart-short" else 5000)
    if where == "query":
        response = await client.post(
            "/v1/datasets", params={"filename": name}, content=dataset_bytes()
        )
    else:
        response = await client.post("/v1/datasets", files={"file": (name, dataset_bytes())})
    body = assert_problem(response, 422)
    assert "255" in body["detail"], body["detail"]
    assert "long" in body["detail"] or "at most" in body["detail"], body["detail"]
    assert stored_files() == [] and dataset_rows(session_factory) == 0


@pytest.mark.parametrize("where", ["query", "multipart"])
async def test_a_dataset_filename_at_the_limit_is_kept_whole(client, where) -> None:
    name = "d" * 243 + ".safetensors"
    assert len(name) == 255
    if where == "query":
        response = await client.post(
            "/v1/datasets", params={"filename": name}, content=dataset_bytes()
        )
    else:
        response = await client.post("/v1/datasets", files={"file": (name, dataset_bytes())})
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == name


async def test_openapi_documents_the_dataset_filename_limit(client) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/datasets"]["post"]
    (filename,) = [p for p in operation["parameters"] if p["name"] == "filename"]
    assert filename["in"] == "query"
    assert "255" in str(filename["schema"])
