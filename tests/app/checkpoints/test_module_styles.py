"""Uploads of the module styles added last (grouped convs, ConvNeXt's channels_first
LayerNorm, attention with a fixed non-causal mask): each self-describing file is accepted
as traced and stored exactly, mask buffer included."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
import torch

import graphs

sys.path.insert(0, str(Path(__file__).parents[2] / "graphs"))
from _families import build  # the model families of tests/graphs

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("name", ["resnext", "convnext_stages", "local_attention"])
async def test_a_self_describing_upload_is_stored_exactly(
    client: httpx.AsyncClient, tmp_path: Path, name: str
) -> None:
    model, x = build(name, 0)
    path = tmp_path / f"{name}.safetensors"
    arch = graphs.save(model, path, x)
    response = await client.post("/v1/checkpoints", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 201, response.text
    assert response.json()["reading"]["provenance"] == "traced"
    stored = graphs.load(
        (await client.get(f"/v1/checkpoints/{response.json()['id']}/file")).content
    )
    assert stored.architecture == arch
    state = model.state_dict()
    assert stored.tensors.keys() == state.keys()
    for k, t in state.items():
        assert torch.equal(stored.tensors[k], t), k
    if name == "local_attention":
        assert stored.tensors["attn.0.local_mask"].dtype == torch.bool
