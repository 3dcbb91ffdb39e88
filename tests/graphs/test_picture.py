"""graphs.picture: the drawing data of a parameter graph agrees with the graph itself
(neurons, edges, values), for a residual conv net with normalization too."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graphs
from graphs.picture import picture


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv1(x)))
        h = h + torch.relu(self.conv2(h))
        return self.fc(h.mean((2, 3)))


def _checkpoint() -> graphs.Checkpoint:
    torch.manual_seed(0)
    net = Residual().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
    return graphs.from_module(net, torch.zeros(1, 2, 5, 5))


def test_every_neuron_and_weight_is_drawn_with_its_value() -> None:
    ckpt = _checkpoint()
    graph = graphs.to_graph(ckpt)
    view = picture(ckpt, "full")
    assert view["detail"] == "full"
    assert len(view["nodes"]) == graph.num_nodes == view["neuron_count"]
    assert len(view["edges"]) == graph.edge_index.shape[1] == view["weight_count"]
    assert sum(c["size"] for c in view["columns"]) == graph.num_nodes
    kinds = {n["kind"] for n in view["nodes"]}
    assert kinds == {"input", "hidden", "output", "norm", "join"}
    # positions run 0.. within each column, and columns are the graph's depths
    for column in view["columns"]:
        positions = sorted(n["position"] for n in view["nodes"] if n["layer"] == column["index"])
        assert positions == list(range(column["size"]))
    # a conv edge carries its kernel's mean; identity edges (residual, norm) carry 1
    conv = ckpt.tensors["conv1.weight"]  # (out 4, in 2, 3, 3)
    inputs = [n["id"] for n in view["nodes"] if n["kind"] == "input"]
    first = {(e["source"], e["target"]): e for e in view["edges"] if e["type"] == "conv"}
    targets = sorted({t for s, t in first if s == inputs[0]})
    for j, target in enumerate(targets[:4]):
        value = first[(inputs[0], target)]["weight"]
        assert value == pytest.approx(conv[j, 0].mean().item(), abs=1e-6)
    identity = [e for e in view["edges"] if e["type"] in ("residual", "norm")]
    assert identity and all(e["weight"] == 1.0 for e in identity)
    # a layer's bias sits on its neurons
    fc_bias = ckpt.tensors["fc.bias"]
    outputs = [n for n in view["nodes"] if n["kind"] == "output"]
    assert [n["bias"] for n in outputs] == pytest.approx(fc_bias.tolist())


def test_the_layer_view_counts_parameters_and_weights() -> None:
    ckpt = _checkpoint()
    view = picture(ckpt, "layers")
    assert view["detail"] == "layers" and view["nodes"] == []
    layers = {layer["id"]: layer for layer in view["layers"]}
    assert sum(layer["parameter_count"] for layer in view["layers"]) == view["parameter_count"]
    conv2 = next(
        n.name for n in ckpt.architecture.nodes if n.params.get("weight") == "conv2.weight"
    )
    assert layers[conv2]["shape"] == [4, 5, 5]
    into = [link for link in view["links"] if link["target"] == conv2]
    assert [link["weight_count"] for link in into] == [4 * 4 * 9]
    assert into[0]["weight_norm"] == pytest.approx(ckpt.tensors["conv2.weight"].norm().item())
    add = next(layer for layer in view["layers"] if layer["op"] == "add")
    assert len([link for link in view["links"] if link["target"] == add["id"]]) == 2


def test_auto_picks_by_size() -> None:
    ckpt = _checkpoint()
    assert picture(ckpt)["detail"] == "full"
    assert picture(ckpt, max_edges=10)["detail"] == "layers"
    assert "one box per layer" in picture(ckpt, max_nodes=5)["reason"]
