"""The files users actually have, through HTTP: training checkpoints, wrapper prefixes,
whole pickled modules, and architectures inference has to settle (issue 14)."""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Callable

import httpx
import pytest
import torch
from torch import nn

import graphs

pytestmark = pytest.mark.anyio


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 10),
    )


class Sine(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(30 * x)


def siren() -> nn.Sequential:
    """A SIREN written as a plain Sequential (the sine module holds no tensors, so the state
    dict looks like a ReLU MLP's), initialised as the SIREN paper does."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(2, 32), Sine(), nn.Linear(32, 32), Sine(), nn.Linear(32, 1)
    )
    with torch.no_grad():
        for layer in (net[2], net[4]):
            bound = math.sqrt(6 / layer.in_features) / 30
            layer.weight.uniform_(-bound, bound)
    return net


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


async def post(client: httpx.AsyncClient, data: bytes, **params: str) -> httpx.Response:
    return await client.post(
        "/v1/checkpoints", params=params, files={"file": ("model.pt", data)}
    )


async def test_a_training_checkpoint_is_read_and_its_extras_listed(
    client: httpx.AsyncClient,
) -> None:
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(4, 64)).sum().backward()
    optimizer.step()
    body = {
        "model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 7,
        "args": argparse.Namespace(lr=0.1),
    }
    response = await post(client, saved(body))
    assert response.status_code == 201, response.text
    checkpoint = response.json()
    reading = checkpoint["reading"]
    assert reading["nested_under"] == "model"
    assert {"optimizer", "epoch", "args"} <= {k.split(".")[0] for k in reading["ignored_keys"]}
    assert reading["provenance"] == "inferred"
    assert checkpoint["architecture"] is not None
    assert checkpoint["tensor_count"] == 4  # the model's tensors, not the optimizer's
    stored = graphs.load((await client.get(f"/v1/checkpoints/{checkpoint['id']}/file")).content)
    assert stored.tensors.keys() == net.state_dict().keys()


async def test_a_data_parallel_prefix_is_stripped(client: httpx.AsyncClient) -> None:
    state = {f"module.{k}": v for k, v in mlp().state_dict().items()}
    response = await post(client, saved({"state_dict": state}))
    assert response.status_code == 201, response.text
    reading = response.json()["reading"]
    assert reading["prefix_stripped"] == "module." and reading["nested_under"] == "state_dict"
    stored = graphs.load(
        (await client.get(f"/v1/checkpoints/{response.json()['id']}/file")).content
    )
    assert set(stored.tensors) == set(mlp().state_dict())


async def test_a_whole_pickled_module_is_refused_with_one_helpful_line(
    client: httpx.AsyncClient, assert_problem: Callable[..., dict],
    checkpoint_rows: Callable[[], int],
) -> None:
    response = await post(client, saved(mlp()))
    body = assert_problem(response, 422, "whole pickled module")
    assert "torch.save(model.state_dict(), path)" in body["detail"]
    assert "\n" not in body["detail"] and "\x1b" not in body["detail"]
    assert "weights_only=False" not in body["detail"]
    assert checkpoint_rows() == 0


async def test_an_inferred_activation_is_said_and_can_be_settled(
    client: httpx.AsyncClient, assert_problem: Callable[..., dict]
) -> None:
    plain = saved(mlp().state_dict())
    first = (await post(client, plain)).json()
    assert first["reading"]["assumptions"]["activation"] == "relu"
    assert any("activation" in note for note in first["reading"]["notes"])
    # the same bytes, settled differently: a conflict, never silently the old reading
    assert_problem(await post(client, plain, activation="tanh"), 409, "already stored")

    other = saved({"net": mlp().state_dict()})
    settled = await post(client, other, activation="tanh")
    assert settled.status_code == 201, settled.text
    assert settled.json()["reading"]["settled"] == {"activation": "tanh"}
    assert "activation" not in settled.json()["reading"]["assumptions"]  # given, not assumed
    blob = (await client.get(f"/v1/checkpoints/{settled.json()['id']}/file")).content
    assert "tanh" in graphs.load(blob).architecture.to_json()  # the worker reads it settled


async def test_a_plain_sequential_siren_is_not_silently_a_relu_network(
    client: httpx.AsyncClient,
) -> None:
    response = await post(client, saved(siren().state_dict()))
    assert response.status_code == 201, response.text
    reading = response.json()["reading"]
    assert reading["assumptions"]["activation"] == "sine(30)"


async def test_a_cnn_takes_its_input_shape_at_upload(
    client: httpx.AsyncClient, assert_problem: Callable[..., dict]
) -> None:
    data = saved(cnn().state_dict())
    response = await post(client, data, input_shape="1,8,8")
    assert response.status_code == 201, response.text
    assert response.json()["reading"]["settled"] == {"input_shape": [1, 8, 8]}
    assert response.json()["architecture"]["inputs"]["x"] == [1, 8, 8]
    assert_problem(await post(client, data, input_shape="1,x"), 422)


async def test_overrides_are_refused_for_a_self_describing_file(
    client: httpx.AsyncClient, assert_problem: Callable[..., dict], tmp_path
) -> None:
    path = tmp_path / "net.safetensors"
    graphs.save(mlp(), path, torch.zeros(1, 64))
    response = await client.post(
        "/v1/checkpoints", params={"activation": "tanh"},
        files={"file": ("net.safetensors", path.read_bytes())},
    )
    assert_problem(response, 422, "inferred architecture only")
    plain = await client.post(
        "/v1/checkpoints", files={"file": ("net.safetensors", path.read_bytes())}
    )
    assert plain.json()["reading"]["provenance"] == "traced"
