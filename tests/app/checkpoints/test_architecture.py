"""Uploads record the architecture the graphs library finds (embedded or inferred)."""

from __future__ import annotations

import pytest
import torch

from graphs.safe_io import to_safetensors_bytes

pytestmark = pytest.mark.anyio

graphs = pytest.importorskip("graphs")
if not hasattr(graphs, "load"):
    pytest.skip("graphs.load is not available yet", allow_module_level=True)


def mlp_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


async def test_inferable_state_dict_gets_an_architecture(client) -> None:
    data = to_safetensors_bytes(mlp_state_dict())
    response = await client.post("/v1/checkpoints", files={"file": ("mlp.safetensors", data)})
    assert response.status_code == 201, response.text
    assert isinstance(response.json()["architecture"], dict)


async def test_unknown_layout_is_accepted_without_architecture(client) -> None:
    data = to_safetensors_bytes({"mystery": torch.ones(3, 3, 3)})
    response = await client.post("/v1/checkpoints", files={"file": ("x.safetensors", data)})
    assert response.status_code == 201, response.text
    assert response.json()["architecture"] is None


async def test_broken_embedded_architecture_is_rejected(
    client, stored_files, checkpoint_rows, assert_problem
) -> None:
    metadata = {graphs.ARCH_KEY: '{"not": "an op graph"}'}
    data = to_safetensors_bytes(mlp_state_dict(), metadata)
    response = await client.post("/v1/checkpoints", files={"file": ("bad.safetensors", data)})
    assert_problem(response, 422, "architecture")
    assert stored_files() == []
    assert checkpoint_rows() == 0
