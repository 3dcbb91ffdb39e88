"""Upload, dedup (also under a race), list/filter/paginate, download and delete."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
import torch

from app.checkpoints import repository
from app.models import LOCAL_TENANT_ID, Prediction
from graphs.safe_io import read_checkpoint, to_safetensors_bytes

pytestmark = pytest.mark.anyio


@pytest.fixture
def database_url(any_database_url: str) -> str:
    return any_database_url


def tensors(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "fc1.weight": torch.randn(8, 4, generator=generator),
        "fc1.bias": torch.randn(8, generator=generator),
        "fc2.weight": torch.randn(2, 8, generator=generator).half(),
    }


def safetensors_bytes(seed: int) -> bytes:
    return to_safetensors_bytes(tensors(seed))


def pytorch_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors(seed), buffer)
    return buffer.getvalue()


async def upload(client: httpx.AsyncClient, data: bytes, name: str = "m.safetensors"):
    return await client.post("/v1/checkpoints", files={"file": (name, data)})


async def test_upload_describes_the_checkpoint_and_serves_it_back(client, stored_files) -> None:
    data = safetensors_bytes(1)
    response = await upload(client, data, "../../model.safetensors")
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/checkpoints/{body['id']}"
    assert body["format"] == "safetensors"
    assert body["filename"] == "model.safetensors"
    assert body["size"] == len(data)
    assert body["tensor_count"] == 3
    assert body["parameter_count"] == 8 * 4 + 8 + 2 * 8
    assert body["dtype_summary"] == {"F16": 16, "F32": 40}
    assert "architecture" in body

    assert (await client.get(f"/v1/checkpoints/{body['id']}")).json() == body
    download = await client.get(f"/v1/checkpoints/{body['id']}/file")
    assert download.status_code == 200
    assert download.content == data
    assert len(stored_files()) == 1


async def test_same_bytes_twice_is_one_row_and_one_blob(
    client, stored_files, checkpoint_rows
) -> None:
    data = safetensors_bytes(2)
    first = await upload(client, data)
    again = await client.post(
        "/v1/checkpoints",
        content=data,
        headers={"content-type": "application/octet-stream", "x-filename": "other.bin"},
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert len(stored_files()) == 1
    assert checkpoint_rows() == 1


async def test_concurrent_uploads_of_the_same_bytes_race_to_one_row(
    client, stored_files, checkpoint_rows
) -> None:
    data = safetensors_bytes(3)
    responses = await asyncio.gather(*(upload(client, data) for _ in range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert checkpoint_rows() == 1
    assert len(stored_files()) == 1


async def test_losing_the_unique_constraint_race_returns_the_winner(
    client, monkeypatch, stored_files, checkpoint_rows
) -> None:
    data = safetensors_bytes(4)
    winner = (await upload(client, data)).json()
    # Both requests passed the "already stored?" check before either inserted:
    monkeypatch.setattr(repository, "by_sha256", _found_only_after_insert_failed())
    loser = await upload(client, data)
    assert loser.status_code == 200
    assert loser.json()["id"] == winner["id"]
    assert checkpoint_rows() == 1
    assert len(stored_files()) == 1


def _found_only_after_insert_failed():
    original = repository.by_sha256
    calls = iter([False, True, True])

    def find(session, tenant_id, sha256):
        return original(session, tenant_id, sha256) if next(calls) else None

    return find


async def test_pytorch_upload_is_stored_as_equivalent_safetensors(client) -> None:
    data = pytorch_bytes(5)
    response = await client.post(
        "/v1/checkpoints?filename=model.pt",
        content=data,
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["format"] == "pytorch"
    assert body["filename"] == "model.pt"
    assert body["blob_sha256"] != body["sha256"]
    download = await client.get(f"/v1/checkpoints/{body['id']}/file")
    assert 'filename="model.safetensors"' in download.headers["content-disposition"]
    stored = read_checkpoint(download.content)
    assert stored.format == "safetensors"
    for name, tensor in tensors(5).items():
        assert torch.equal(stored.tensors[name], tensor)


async def test_delete_removes_the_blob_once_nothing_uses_it(client, stored_files) -> None:
    as_safetensors = (await upload(client, safetensors_bytes(6))).json()
    as_pytorch = (await upload(client, pytorch_bytes(6), "m.pt")).json()
    assert as_pytorch["blob_sha256"] == as_safetensors["blob_sha256"]  # same tensors, one blob
    assert len(stored_files()) == 1

    assert (await client.delete(f"/v1/checkpoints/{as_safetensors['id']}")).status_code == 204
    assert len(stored_files()) == 1
    assert (await client.get(f"/v1/checkpoints/{as_pytorch['id']}/file")).status_code == 200
    assert (await client.delete(f"/v1/checkpoints/{as_pytorch['id']}")).status_code == 204
    assert stored_files() == []
    assert (await client.get(f"/v1/checkpoints/{as_pytorch['id']}")).status_code == 404


async def test_checkpoint_used_by_a_prediction_cannot_be_deleted(
    client, session_factory, assert_problem
) -> None:
    checkpoint = (await upload(client, safetensors_bytes(7))).json()
    with session_factory() as session:
        session.add(Prediction(tenant_id=LOCAL_TENANT_ID, checkpoint_id=checkpoint["id"]))
        session.commit()
    response = await client.delete(f"/v1/checkpoints/{checkpoint['id']}")
    assert_problem(response, 409, "used by 1 prediction (id ")
