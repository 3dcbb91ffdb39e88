"""The op graph: JSON round trip, strict validation, describe/save/load/build_module."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _graph_models import FAMILIES, family
from torch import nn

import graphs
from graphs import ArchitectureError, MissingArchitectureError, UnsupportedOpError


def _mlp_spec() -> dict[str, Any]:
    model, x = family("mlp", 0, 1)  # nodes 0 (linear), 1, 2 (linear), 3, 4 (linear)
    return graphs.describe(model, x).to_dict()


def test_json_round_trip_and_summary() -> None:
    model, x = family("cnn_bn", 1, 0)
    arch = graphs.describe(model, x)
    again = graphs.Architecture.from_json(arch.to_json())
    assert again == arch and again.version == 1
    summary = arch.summary()
    json.dumps(summary)
    assert summary["num_parameters"] == sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for n, b in model.named_buffers() if "num_batches" not in n) + 2
    assert summary["op_counts"]["conv2d"] == 2 and "norm" in summary["families"]


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(_mlp_spec())
    target = spec
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["version"], 2, "unsupported architecture version"),
        (["nodes", 0, "op"], "conv7d", "unknown op 'conv7d'"),
        (["nodes", 0, "inputs"], ["ghost"], "dangling"),
        (["nodes", 0, "inputs"], ["4"], "cycle"),
        (["nodes", 1, "name"], "0", "duplicate name '0'"),
        (["nodes", 0, "attrs", "in_features"], 7, "expects last dim 7"),
        (["nodes", 0, "attrs", "bias"], "yes", "invalid value for attr 'bias'"),
        (["nodes", 0, "attrs", "extra"], 1, "unknown"),
        (["nodes", 0, "params", "weight"], "0.w", "must be named"),
        (["nodes", 0, "params"], {}, "params must be exactly"),
        (["nodes", 2, "params", "weight"], "5.weight", "must share one module prefix"),
        (["nodes", 2, "params", "weight"], "0.weight", "weight sharing"),
        (["outputs"], ["nowhere"], "output 'nowhere'"),
        (["nodes", 0, "name"], 5, "name must be a non-empty string"),
        (["inputs", 0, "shape"], [-1], "shape must be"),
        (["inputs"], [], "non-empty"),
        (["nodes", 0, "surprise"], 1, "unknown key"),
        (["outputs"], _DELETE, "missing key"),
    ],
)
def test_malformed_architectures_are_clear_errors(path: list[Any], value: Any,
                                                  message: str) -> None:
    with pytest.raises(ArchitectureError, match=message):
        graphs.Architecture.from_json(_mutate(path, value))


@pytest.mark.parametrize("text", ["{", "[]", "null", '"x"'])
def test_non_object_json_is_an_error(text: str) -> None:
    with pytest.raises(ArchitectureError):
        graphs.Architecture.from_json(text)


def test_tensor_mismatches_are_clear_errors() -> None:
    model, x = family("mlp", 0, 0)
    ckpt = graphs.from_module(model, x)
    arch = ckpt.architecture
    missing = dict(ckpt.tensors)
    del missing["2.bias"]
    with pytest.raises(ArchitectureError, match=r"missing.*2\.bias"):
        arch.check_tensors(missing)
    with pytest.raises(ArchitectureError, match="not in the architecture: extra"):
        arch.check_tensors({**ckpt.tensors, "extra": torch.zeros(1)})
    wrong = {**ckpt.tensors, "2.weight": torch.zeros(3, 5)}
    with pytest.raises(ArchitectureError, match=r"'2\.weight' has shape \[3, 5\]"):
        arch.check_tensors(wrong)
    raw = graphs.safe_io.to_safetensors_bytes(wrong)
    with pytest.raises(ArchitectureError, match="has shape"):
        graphs.load(raw, arch=arch)


@pytest.mark.parametrize("name", FAMILIES)
def test_save_load_build_end_to_end(name: str, tmp_path: Path) -> None:
    model, x = family(name, 1, 3)
    path = tmp_path / "model.safetensors"
    arch = graphs.save(model, path, x, metadata={"label": "7"})
    ckpt = graphs.load(path)
    assert ckpt.architecture == arch and ckpt.metadata == {"label": "7"}
    assert sorted(ckpt.tensors) == sorted(model.state_dict())
    module = graphs.build_module(ckpt.architecture)
    assert not module.training
    assert sorted(module.state_dict()) == sorted(ckpt.tensors)
    module.load_state_dict(ckpt.tensors, strict=True)
    with torch.no_grad():
        assert torch.equal(module(x), model(x))
    assert graphs.load(graphs.checkpoint_bytes(ckpt)).metadata == {"label": "7"}


def test_load_prefers_the_arch_argument() -> None:
    model, x = family("mlp", 0, 0)
    raw = graphs.safe_io.to_safetensors_bytes(model.state_dict(), {"k": "v"})
    spec = graphs.describe(model, x).to_json()
    ckpt = graphs.load(raw, arch=spec)
    assert ckpt.metadata == {"k": "v"} and ckpt.architecture.nodes[0].op == "linear"


def test_load_without_any_architecture_says_how_to_attach_one() -> None:
    raw = graphs.safe_io.to_safetensors_bytes({"encoder.w": torch.zeros(2, 2)})
    with pytest.raises(MissingArchitectureError, match="attach one"):
        graphs.load(raw)


def test_corrupt_embedded_architecture_is_an_error() -> None:
    raw = graphs.safe_io.to_safetensors_bytes({"0.weight": torch.zeros(2, 2)},
                                              {graphs.ARCH_KEY: '{"version": 1}'})
    with pytest.raises(ArchitectureError, match="file metadata"):
        graphs.load(raw)


class _Cumsum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, 1)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.Softplus()), "Softplus"),
        (nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")), "reflect"),
        (nn.Sequential(nn.Linear(4, 4), _Cumsum()), r"^1 \(call_function cumsum\)"),
        (nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (2, 2))), "Unflatten"),
    ],
)
def test_unsupported_ops_are_named(module: nn.Module, message: str) -> None:
    x = torch.randn(2, 4, 5, 5) if isinstance(module[0], nn.Conv2d) else torch.randn(2, 4)
    with pytest.raises(UnsupportedOpError, match=message):
        graphs.describe(module, x)


def test_describe_functional_forms() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 3, 3, padding="same")
            self.fc = nn.Linear(3 * 5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.nn.functional.leaky_relu(self.conv(x), 0.2)
            h = h.view(h.size(0), -1)
            return torch.sigmoid(self.fc(h))

    model = Net()
    x = torch.randn(3, 2, 5)
    arch = graphs.describe(model, x)
    assert [n.op for n in arch.nodes] == ["conv1d", "leaky_relu", "flatten", "linear", "sigmoid"]
    module = graphs.build_module(arch)
    module.load_state_dict(model.state_dict())
    assert torch.equal(module(x), model(x))


@pytest.mark.parametrize(
    "act", [nn.ReLU(), nn.GELU(approximate="tanh"), nn.SiLU(), nn.Tanh(), nn.Sigmoid(),
            nn.LeakyReLU(0.3), graphs.Sine(3.0), nn.Dropout(0.2)],
)
def test_every_activation_is_described_and_rebuilt(act: nn.Module) -> None:
    model = nn.Sequential(nn.Linear(4, 6), act, nn.Linear(6, 2)).eval()
    x = torch.randn(3, 4)
    ckpt = graphs.from_module(model, x)
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors)
    assert torch.equal(module(x), model(x))
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(0))
    module.load_state_dict(permuted.tensors)
    assert torch.allclose(module(x), model(x), atol=1e-6)


def test_conv1d_with_1d_pooling() -> None:
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
                          nn.Conv1d(4, 4, 3), nn.AvgPool1d(2), nn.Conv1d(4, 3, 1),
                          nn.AdaptiveMaxPool1d(2), nn.Flatten(), nn.Linear(6, 2)).eval()
    x = torch.randn(3, 2, 12)
    ckpt = graphs.from_module(model, x)
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors)
    assert torch.equal(module(x), model(x))
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(0))
    module.load_state_dict(permuted.tensors)
    assert torch.allclose(module(x), model(x), atol=1e-6)
    back = graphs.from_graph(graphs.to_graph(permuted), permuted)
    assert all(torch.equal(back.tensors[k], v) for k, v in permuted.tensors.items())


def test_nodes_in_any_order_are_sorted() -> None:
    spec = _mlp_spec()
    spec["nodes"].reverse()
    arch = graphs.Architecture.from_json(spec)
    assert [n.name for n in arch.nodes] == [n["name"] for n in _mlp_spec()["nodes"]]


def test_oversized_op_graph_is_refused() -> None:
    spec = _mlp_spec()
    spec["nodes"] = [{"name": f"r{i}", "op": "relu", "inputs": [spec["inputs"][0]["name"]],
                      "attrs": {}, "params": {}} for i in range(25_000)]
    with pytest.raises(ArchitectureError, match="more than"):
        graphs.Architecture.from_json(spec)


def test_pytorch_zip_state_dict_is_read_safely_and_inferred() -> None:
    import io

    model, x = family("mlp", 1, 0)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    ckpt = graphs.load(buffer.getvalue())
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors)
    assert torch.equal(module(x), model(x))
