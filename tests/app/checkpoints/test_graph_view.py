"""GET /v1/checkpoints/{id}/graph: every neuron and weight of a small network, the layer
diagram of a large one, 404 for another tenant's checkpoint, and the documented schema."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch
from torch import nn

import graphs
from app.checkpoints.schemas import GraphView
from app.keys import create_key
from app.migrate import upgrade
from app.settings import Settings
from tests.app.conftest import make_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Authentication required, so two tenants can be told apart."""
    settings = make_settings(tmp_path / "data", database_url, auth="required", rate_limit="")
    upgrade(settings.database_url)
    return settings


def _headers(session_factory, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_key(session_factory, tenant, tenant).token}"}


def _saved(net: nn.Module, example: torch.Tensor, path: Path) -> bytes:
    graphs.save(net, path, example)
    return path.read_bytes()


async def _upload(client: httpx.AsyncClient, headers: dict[str, str], data: bytes) -> int:
    response = await client.post(
        "/v1/checkpoints", files={"file": ("net.safetensors", data)}, headers=headers
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def test_an_mlp_is_drawn_neuron_by_neuron_with_its_weights(
    client, session_factory, tmp_path
) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    alice = _headers(session_factory, "alice")
    checkpoint = await _upload(client, alice, _saved(net, torch.zeros(1, 4), tmp_path / "m"))

    response = await client.get(f"/v1/checkpoints/{checkpoint}/graph", headers=alice)
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["detail"] == "full" and view["checkpoint_id"] == checkpoint
    assert (view["neuron_count"], view["weight_count"]) == (4 + 6 + 3, 4 * 6 + 6 * 3)
    assert len(view["nodes"]) == 13 and len(view["edges"]) == 42
    assert [c["size"] for c in view["columns"]] == [4, 6, 3]
    kinds = [n["kind"] for n in view["nodes"]]
    assert kinds == ["input"] * 4 + ["hidden"] * 6 + ["output"] * 3
    assert view["layers"] == [] and view["links"] == []

    # every weight value, where the neuron map puts it: fc.weight[j, i] is edge i -> j
    by_ends = {(e["source"], e["target"]): e["weight"] for e in view["edges"]}
    columns = {(n["layer"], n["position"]): n["id"] for n in view["nodes"]}
    for layer, linear in ((0, net[0]), (1, net[2])):
        for j in range(linear.out_features):
            target = columns[(layer + 1, j)]
            assert view["nodes"][target]["bias"] == pytest.approx(linear.bias[j].item())
            for i in range(linear.in_features):
                value = by_ends[(columns[(layer, i)], target)]
                assert value == pytest.approx(linear.weight[j, i].item(), abs=1e-7)

    layers = await client.get(
        f"/v1/checkpoints/{checkpoint}/graph", params={"detail": "layers"}, headers=alice
    )
    assert layers.json()["detail"] == "layers"
    assert [layer["op"] for layer in layers.json()["layers"]] == [
        "input", "linear", "relu", "linear"]  # fmt: skip
    GraphView.model_validate(layers.json())


async def test_a_cnn_past_the_cap_is_a_layer_diagram(client, session_factory, tmp_path) -> None:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(256, 10),
    )  # fmt: skip
    net.eval()
    alice = _headers(session_factory, "alice")
    data = _saved(net, torch.zeros(1, 3, 8, 8), tmp_path / "c")
    checkpoint = await _upload(client, alice, data)

    view = (await client.get(f"/v1/checkpoints/{checkpoint}/graph", headers=alice)).json()
    assert view["neuron_count"] > view["max_nodes"]  # 3 + 128 + 128 + 256 + 10
    assert view["weight_count"] > view["max_edges"]
    assert view["detail"] == "layers" and "one box per layer" in view["reason"]
    assert view["nodes"] == [] and view["edges"] == []
    layers = {layer["id"]: layer for layer in view["layers"]}
    conv = next(n for n in graphs.load(data).architecture.nodes if n.op == "conv2d")
    assert layers[conv.name]["parameter_count"] == 3 * 128 * 9 + 128
    assert layers[conv.name]["shape"] == [128, 8, 8]
    link = next(link for link in view["links"] if link["target"] == conv.name)
    assert link["weight_count"] == 3 * 128 * 9
    assert link["weight_norm"] == pytest.approx(net[0].weight.norm().item(), rel=1e-5)
    assert sum(layer["parameter_count"] for layer in view["layers"]) == view["parameter_count"]

    full = await client.get(
        f"/v1/checkpoints/{checkpoint}/graph", params={"detail": "full"}, headers=alice
    )
    assert full.json()["detail"] == "full"
    assert len(full.json()["edges"]) == view["weight_count"]
    GraphView.model_validate(view)


async def test_full_detail_past_its_limit_is_a_422(
    client, session_factory, tmp_path, assert_problem
) -> None:
    net = nn.Sequential(nn.Linear(400, 300))  # 120,000 weights: past the 100,000 drawn
    alice = _headers(session_factory, "alice")
    checkpoint = await _upload(client, alice, _saved(net, torch.zeros(1, 400), tmp_path / "w"))
    url = f"/v1/checkpoints/{checkpoint}/graph"
    full = await client.get(url, params={"detail": "full"}, headers=alice)
    assert_problem(full, 422, "full detail is drawn up to 5,000 neurons and 100,000 weights")
    auto = await client.get(url, headers=alice)
    assert auto.json()["detail"] == "layers"
    assert auto.json()["links"][0]["weight_count"] == 120_000


async def test_another_tenants_checkpoint_is_404_and_bad_detail_422(
    client, session_factory, tmp_path, assert_problem
) -> None:
    alice, bob = _headers(session_factory, "alice"), _headers(session_factory, "bob")
    net = nn.Sequential(nn.Linear(2, 2))
    checkpoint = await _upload(client, alice, _saved(net, torch.zeros(1, 2), tmp_path / "s"))
    theirs = await client.get(f"/v1/checkpoints/{checkpoint}/graph", headers=bob)
    assert_problem(theirs, 404, f"checkpoint {checkpoint}")
    bad = await client.get(
        f"/v1/checkpoints/{checkpoint}/graph", params={"detail": "all"}, headers=alice
    )
    assert_problem(bad, 422)


async def test_a_checkpoint_without_architecture_is_a_422(
    client, session_factory, assert_problem
) -> None:
    from graphs.safe_io import to_safetensors_bytes

    alice = _headers(session_factory, "alice")
    data = to_safetensors_bytes({"a": torch.ones(3, 3, 3, 3, 3)})
    checkpoint = await _upload(client, alice, data)
    response = await client.get(f"/v1/checkpoints/{checkpoint}/graph", headers=alice)
    assert_problem(response, 422, "no known architecture")


async def test_the_route_is_documented(app) -> None:
    operation = app.openapi()["paths"]["/v1/checkpoints/{checkpoint_id}/graph"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GraphView"}  # fmt: skip
    for status in ("404", "422"):
        assert "application/problem+json" in operation["responses"][status]["content"]
    schemas = app.openapi()["components"]["schemas"]
    for name in ("GraphView", "GraphNeuron", "GraphWeight", "GraphLayer", "GraphLink"):
        for field, spec in schemas[name]["properties"].items():
            assert spec.get("description"), (name, field)
