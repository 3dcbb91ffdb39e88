"""A merge whose rows cannot be written leaves neither its blob nor any row behind."""

from __future__ import annotations

import pytest
import torch
from sqlalchemy import func, select

import graphs
from app.merges import repository
from app.models import Merge

pytestmark = pytest.mark.anyio


def mlp_bytes(seed: int) -> bytes:
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return graphs.checkpoint_bytes(graphs.from_module(module, torch.zeros(1, 4)))


async def test_failure_after_the_blob_is_placed_leaves_neither(
    client, monkeypatch, session_factory, stored_files, checkpoint_rows
) -> None:
    ids = []
    for seed in (1, 2):
        response = await client.post("/v1/checkpoints", files={"file": ("m.st", mlp_bytes(seed))})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    before = stored_files()

    def fail(session, merge, inputs) -> None:  # after the checkpoint row and its blob
        raise RuntimeError("injected failure")

    monkeypatch.setattr(repository, "add_merge", fail)
    response = await client.post("/v1/merges?wait=60", json={"checkpoints": ids})
    assert response.status_code == 422  # a failed job: a problem carrying the job
    job = response.json()["job"]
    assert job["status"] == "failed" and "injected failure" in job["error"]
    assert stored_files() == before  # no merged blob, no temp file
    assert checkpoint_rows() == 2
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Merge)) == 0

    monkeypatch.undo()
    job = (await client.post("/v1/merges?wait=60", json={"checkpoints": ids})).json()
    assert job["status"] == "succeeded", job
    assert len(stored_files()) == len(before) + 1 and checkpoint_rows() == 3
