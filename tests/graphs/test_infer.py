"""Architecture inference from tensor names and shapes for the common layouts."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from _graph_models import ResNet, mlp, randomize_norms, siren
from torch import nn

import graphs
from graphs import MissingArchitectureError
from graphs.safe_io import to_safetensors_bytes


def _roundtrip(model: nn.Module, x: torch.Tensor) -> graphs.Checkpoint:
    """Save the bare state dict (no architecture), load with inference, compare outputs."""
    model.eval()
    ckpt = graphs.load(to_safetensors_bytes(model.state_dict()))
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors, strict=True)
    with torch.no_grad():
        assert torch.allclose(module(x), model(x), atol=1e-6)
    return ckpt


def test_sequential_mlp() -> None:
    ckpt = _roundtrip(mlp([10, 16, 12, 3]), torch.randn(4, 10))
    assert [n.op for n in ckpt.architecture.nodes] == ["linear", "relu", "linear", "relu",
                                                      "linear"]


def test_sequential_mlp_with_flatten_and_batchnorm() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 2))
    randomize_norms(model, torch.Generator().manual_seed(0))
    _roundtrip(model, torch.randn(3, 16))


def test_sequential_cnn_with_pooling_and_flatten() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 16, 10))
    ckpt = _roundtrip(model, torch.randn(2, 1, 8, 8))
    assert ckpt.architecture.inputs[0].shape == (1, 8, 8)


def test_sequential_cnn_with_batchnorm_and_global_pooling() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    randomize_norms(model, torch.Generator().manual_seed(0))
    ckpt = _roundtrip(model, torch.randn(2, 3, 9, 9))
    assert ckpt.architecture.inputs[0].shape == (3, None, None)


def test_torchvision_resnet18_layout() -> None:
    torch.manual_seed(0)
    model = randomize_norms(ResNet(), torch.Generator().manual_seed(0))
    ckpt = _roundtrip(model, torch.randn(1, 3, 32, 32))
    assert 11_600_000 < ckpt.architecture.num_parameters() < 11_800_000
    nmap = graphs.neuron_map(ckpt.architecture)
    hidden = [g for g in nmap.groups.values() if g.permutable]
    # stem+layer1 stream, 3 more streams, one inner group per block
    assert len(hidden) == 4 + 8


def test_cifar_resnet_layout() -> None:
    model = randomize_norms(ResNet((8, 16), (1, 1), classes=3, stem_kernel=3),
                            torch.Generator().manual_seed(1))
    _roundtrip(model, torch.randn(2, 3, 8, 8))


def test_siren_reference_layout() -> None:
    ckpt = _roundtrip(siren([2, 16, 16, 1]), torch.rand(5, 2))
    assert [n.attrs["w0"] for n in ckpt.architecture.nodes if n.op == "sine"] == [30.0, 30.0]


@pytest.mark.parametrize(
    "tensors",
    [
        {"encoder.weight": torch.zeros(3, 3)},
        {"0.weight": torch.zeros(3, 3), "4.weight": torch.zeros(2, 3)},  # gap of 3 between linears
        {"0.weight": torch.zeros(4, 3, 3, 3), "2.weight": torch.zeros(5, 8)},  # 8 != 4·s²
        {"0.weight": torch.zeros(3, 3), "1.weight": torch.zeros(3)},  # LayerNorm? unknown
    ],
)
def test_unknown_layouts_say_how_to_attach_an_architecture(tensors: dict) -> None:
    with pytest.raises(MissingArchitectureError, match="attach one"):
        graphs.load(to_safetensors_bytes(tensors))


def test_the_hint_names_the_library_calls_that_attach_an_architecture(tmp_path) -> None:
    """The hint names real calls (no vague 'arch' argument), and the one it names works."""
    model = nn.Sequential(OrderedDict(encoder=nn.Linear(3, 3, bias=False)))
    path = tmp_path / "plain.safetensors"
    path.write_bytes(to_safetensors_bytes(model.state_dict()))
    with pytest.raises(MissingArchitectureError) as error:
        graphs.load(path)
    hint = str(error.value)
    assert "'arch'" not in hint
    assert "graphs.save(module, path, example_input)" in hint
    assert "graphs.load(path, arch=op_graph_json)" in hint
    assert "graphs.save_checkpoint(" in hint
    op_graph_json = graphs.describe(model, torch.randn(1, 3)).to_json()
    graphs.save_checkpoint(graphs.load(path, arch=op_graph_json), tmp_path / "attached.st")
    assert graphs.load(tmp_path / "attached.st").architecture.to_json() == op_graph_json
