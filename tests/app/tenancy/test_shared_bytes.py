"""Blobs are shared by content, tenants never learn it: a tenant uploading bytes another
tenant stored gets the answer a new upload gets (201, its own row), through the same code
path (the file is read and validated again), and deleting one tenant's row keeps the file
the other's row still uses. Every insert names its tenant (no default to fall back on)."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from sqlalchemy.exc import IntegrityError

from app.checkpoints import service as checkpoints_service
from app.datasets import service as datasets_service
from app.models import Checkpoint, Dataset, Job
from tests.app.tenancy.conftest import Files, Tenant

pytestmark = pytest.mark.anyio


def counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(module, name)

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


async def test_the_same_bytes_of_another_tenant_are_a_new_upload(
    as_alice: httpx.AsyncClient, as_bob: httpx.AsyncClient, files: Files, monkeypatch,
    stored_files,
) -> None:  # fmt: skip
    validated = counting(monkeypatch, checkpoints_service, "_validate")
    data = files.net_a.read_bytes()
    first = await as_alice.post("/v1/checkpoints", files={"file": ("m.safetensors", data)})
    second = await as_bob.post("/v1/checkpoints", files={"file": ("m.safetensors", data)})
    assert first.status_code == second.status_code == 201
    assert validated == [1, 1]  # bob's upload was read and validated like a new one
    a, b = first.json(), second.json()
    assert a.keys() == b.keys() and a["id"] != b["id"]
    differ = {k for k in a if a[k] != b[k]}
    assert differ <= {"id", "created_at"}, differ
    assert second.headers["location"] == f"/v1/checkpoints/{b['id']}"
    # alice's own second upload is the known one: 200, nothing read again
    again = await as_alice.post("/v1/checkpoints", files={"file": ("m.safetensors", data)})
    assert again.status_code == 200 and again.json()["id"] == a["id"] and validated == [1, 1]
    assert len(stored_files()) == 1  # one file for both

    assert (await as_alice.delete(f"/v1/checkpoints/{a['id']}")).status_code == 204
    download = await as_bob.get(f"/v1/checkpoints/{b['id']}/file")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == b["blob_sha256"]
    assert (await as_bob.delete(f"/v1/checkpoints/{b['id']}")).status_code == 204
    assert stored_files() == []


async def test_the_same_dataset_of_another_tenant_is_a_new_upload(
    as_alice: httpx.AsyncClient, as_bob: httpx.AsyncClient, files: Files, monkeypatch
) -> None:
    read = counting(monkeypatch, datasets_service, "read_eval_set")
    data = files.dataset.read_bytes()
    first = await as_alice.post("/v1/datasets", files={"file": ("d.safetensors", data)})
    second = await as_bob.post("/v1/datasets", files={"file": ("d.safetensors", data)})
    assert first.status_code == second.status_code == 201
    assert read == [1, 1]
    assert first.json()["id"] != second.json()["id"]


async def test_a_dataset_file_survives_a_checkpoint_of_the_same_bytes(
    as_alice: httpx.AsyncClient, as_bob: httpx.AsyncClient, files: Files, stored_files
) -> None:
    """A dataset (x, y) is also a valid safetensors checkpoint: deleting that checkpoint
    must not remove the file the dataset uses."""
    data = files.dataset.read_bytes()
    dataset = (await as_alice.post("/v1/datasets", files={"file": ("d", data)})).json()
    checkpoint = await as_bob.post("/v1/checkpoints", files={"file": ("d", data)})
    assert checkpoint.status_code == 201, checkpoint.text
    assert (await as_bob.delete(f"/v1/checkpoints/{checkpoint.json()['id']}")).status_code == 204
    assert len(stored_files()) == 1
    assert (await as_alice.get(f"/v1/datasets/{dataset['id']}")).status_code == 200


@pytest.mark.parametrize(
    "row",
    [
        lambda: Checkpoint(sha256="0" * 64, size=1, format="safetensors", blob_sha256="0" * 64,
                           blob_size=1, tensor_count=1, parameter_count=1, dtype_summary={}),
        lambda: Dataset(sha256="0" * 64, size=1, blob_sha256="0" * 64, num_samples=1,
                        x_shape=[1, 1], y_shape=[1], num_classes=1),
        lambda: Job(kind="inspect", params={}, max_attempts=1),
    ],
)  # fmt: skip
def test_an_insert_without_a_tenant_fails(session_factory, alice: Tenant, row) -> None:
    with session_factory() as session:
        session.add(row())
        with pytest.raises(IntegrityError):
            session.commit()
