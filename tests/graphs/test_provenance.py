"""Every architecture says how it was obtained, and inference lists what it assumed."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from _graph_models import ResNet, randomize_norms
from torch import nn

import graphs
from graphs import ArchitectureError, MissingArchitectureError, Sine
from graphs.infer import activation_text, parse_activation
from graphs.safe_io import read_checkpoint, to_safetensors_bytes


def write(tmp_path: Path, tensors: dict[str, torch.Tensor], name: str = "x.safetensors") -> Path:
    path = tmp_path / name
    path.write_bytes(to_safetensors_bytes(tensors))
    return path


def rebuilt_matches(loaded: graphs.Loaded, model: nn.Module, x: torch.Tensor) -> bool:
    module = graphs.build_module(loaded.architecture)
    module.load_state_dict(loaded.tensors, strict=True)
    model.eval()
    module.eval()
    with torch.no_grad():
        return torch.allclose(module(x), model(x), atol=1e-5)


def mlp(act: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), act, nn.Linear(16, 16), act, nn.Linear(16, 2))


def sequential_siren(widths: list[int], w0: float = 30.0) -> nn.Sequential:
    """A SIREN written as a plain nn.Sequential, with the reference initialisation."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        linear = nn.Linear(fan_in, fan_out)
        bound = 1 / fan_in if i == 0 else math.sqrt(6 / fan_in) / w0
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound)
        layers.append(linear)
        if i < len(widths) - 2:
            layers.append(Sine(w0))
    return nn.Sequential(*layers)


# --- provenance values ----------------------------------------------------------------------


def test_saved_by_graphs_save_is_traced(tmp_path: Path) -> None:
    model = mlp(nn.Tanh())
    graphs.save(model, tmp_path / "m.safetensors", torch.randn(2, 3))
    loaded = graphs.load_checkpoint(tmp_path / "m.safetensors")
    assert (loaded.provenance, loaded.assumptions, loaded.notes) == ("traced", {}, ())
    assert graphs.load(tmp_path / "m.safetensors").provenance == graphs.Provenance("traced")


def test_given_arch_is_declared(tmp_path: Path) -> None:
    model = mlp(nn.Tanh())
    arch = graphs.describe(model, torch.randn(2, 3))
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()), arch=arch.to_dict())
    assert (loaded.provenance, loaded.assumptions) == ("declared", {})
    assert rebuilt_matches(loaded, model, torch.randn(4, 3))


def test_file_metadata_without_a_provenance_record_is_declared(tmp_path: Path) -> None:
    model = mlp(nn.Tanh())
    checkpoint = graphs.Checkpoint(dict(model.state_dict()),
                                   graphs.describe(model, torch.randn(2, 3)))
    path = tmp_path / "hand.safetensors"
    path.write_bytes(graphs.checkpoint_bytes(checkpoint))
    assert graphs.PROVENANCE_KEY not in read_checkpoint(path).metadata
    assert graphs.load_checkpoint(path).provenance == "declared"


def test_inferred_provenance_and_assumptions_survive_a_save(tmp_path: Path) -> None:
    model = mlp(nn.ReLU())
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    assert loaded.provenance == "inferred"
    assert loaded.assumptions == {"activation": "relu"}
    again = tmp_path / "again.safetensors"
    graphs.save_checkpoint(loaded.checkpoint, again)
    reread = graphs.load_checkpoint(again)
    assert (reread.provenance, reread.assumptions) == ("inferred", {"activation": "relu"})
    assert reread.architecture == loaded.architecture


def test_reserved_metadata_keys_are_refused() -> None:
    model = mlp(nn.ReLU())
    arch = graphs.describe(model, torch.randn(2, 3))
    for key in (graphs.ARCH_KEY, graphs.PROVENANCE_KEY):
        with pytest.raises(graphs.CheckpointError, match="is reserved"):
            graphs.checkpoint_bytes(graphs.Checkpoint(dict(model.state_dict()), arch,
                                                      {key: "x"}))


def test_malformed_provenance_record_is_an_architecture_error(tmp_path: Path) -> None:
    model = mlp(nn.ReLU())
    arch = graphs.describe(model, torch.randn(2, 3))
    path = tmp_path / "bad.safetensors"
    path.write_bytes(to_safetensors_bytes(dict(model.state_dict()), {
        graphs.ARCH_KEY: arch.to_json(), graphs.PROVENANCE_KEY: '{"source": "guessed"}'}))
    with pytest.raises(ArchitectureError, match="provenance in the file metadata"):
        graphs.load_checkpoint(path)


# --- the activation is never silent ----------------------------------------------------------


def test_plain_linear_stack_lists_its_assumed_activation(tmp_path: Path) -> None:
    model = mlp(nn.ReLU())
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    assert loaded.assumptions == {"activation": "relu"}
    (note,) = loaded.notes
    assert note.startswith("activation: not recorded in a state dict; assumed relu")
    assert "pass activation= to settle it" in note
    assert rebuilt_matches(loaded, model, torch.randn(4, 3))


@pytest.mark.parametrize("text, act", [("tanh", nn.Tanh()), ("gelu(tanh)", nn.GELU("tanh")),
                                       ("leaky_relu(0.2)", nn.LeakyReLU(0.2)),
                                       ("sigmoid", nn.Sigmoid()), ("silu", nn.SiLU())])
def test_activation_override_settles_it(text: str, act: nn.Module, tmp_path: Path) -> None:
    model = mlp(act)
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()), activation=text)
    assert loaded.provenance == "inferred"
    assert loaded.assumptions == {} and loaded.notes == ()
    assert rebuilt_matches(loaded, model, torch.randn(4, 3))


def test_plain_sequential_siren_is_not_silently_relu(tmp_path: Path) -> None:
    model = sequential_siren([2, 32, 32, 1])
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    assert loaded.assumptions == {"activation": "sine(30)"}
    (note,) = loaded.notes
    assert "the weights look like a SIREN's" in note and "pass activation=" in note
    assert [n.op for n in loaded.architecture.nodes].count("sine") == 2
    assert rebuilt_matches(loaded, model, torch.rand(8, 2) * 2 - 1)


def fit(model: nn.Module, steps: int = 300) -> nn.Module:
    """Fit an 8x8 random image (coordinates in [-1, 1]^2 -> intensity), as INR zoos do."""
    torch.manual_seed(1)
    grid = torch.linspace(-1, 1, 8)
    xy = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    image = torch.rand(64, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        ((model(xy) - image) ** 2).mean().backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("w0", [30.0, 15.0])
def test_fitted_sequential_siren_is_still_recognised(w0: float, tmp_path: Path) -> None:
    model = fit(sequential_siren([2, 32, 32, 1], w0))
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    assert loaded.assumptions == {"activation": "sine(30)"}


def test_fitted_relu_mlp_stays_relu(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = fit(nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                              nn.Linear(32, 1)))
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    assert loaded.assumptions == {"activation": "relu"}
    assert "do not look like a SIREN's" in loaded.notes[0]


def test_few_small_weights_are_no_siren_evidence(tmp_path: Path) -> None:
    tensors = {"0.weight": torch.randn(4, 2), "2.weight": torch.full((1, 4), 0.01)}
    loaded = graphs.load_checkpoint(write(tmp_path, tensors))
    assert loaded.assumptions == {"activation": "relu"}


@pytest.mark.parametrize("prefix", ["encoder_using.", "basin.", "sinkhorn."])
def test_sin_inside_another_word_is_no_name_hint(prefix: str, tmp_path: Path) -> None:
    tensors = {f"{prefix}{k}": v for k, v in mlp(nn.ReLU()).state_dict().items()}
    assert graphs.load_checkpoint(write(tmp_path, tensors)).assumptions == {"activation": "relu"}


def test_sequential_siren_with_another_w0_is_settled_by_the_caller(tmp_path: Path) -> None:
    model = sequential_siren([2, 16, 16, 1], w0=15.0)
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()),
                                    activation="sine(15)")
    assert loaded.assumptions == {}
    assert rebuilt_matches(loaded, model, torch.rand(8, 2) * 2 - 1)


def test_siren_name_hint_decides_the_default(tmp_path: Path) -> None:
    model = mlp(nn.ReLU())  # default-init weights: only the name says SIREN
    tensors = {f"siren.{k}": v for k, v in model.state_dict().items()}
    loaded = graphs.load_checkpoint(write(tmp_path, tensors))
    assert loaded.assumptions == {"activation": "sine(30)"}
    assert "names a SIREN" in loaded.notes[0]


def test_siren_reference_layout_lists_w0(tmp_path: Path) -> None:
    from _graph_models import siren

    loaded = graphs.load_checkpoint(write(tmp_path, siren([2, 16, 16, 1]).state_dict()))
    assert loaded.assumptions == {"activation": "sine(30)"}
    assert "SIREN reference layout" in loaded.notes[0]


def test_resnet_lists_activation_and_unknown_input_size(tmp_path: Path) -> None:
    model = randomize_norms(ResNet((8, 16), (1, 1), classes=3, stem_kernel=3),
                            torch.Generator().manual_seed(1))
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    assert loaded.assumptions == {
        "activation": "relu", "input_shape": [3, None, None], "padding": "kernel//2",
        "pooling": "adaptive_avg_pool2d(1) at avgpool"}
    assert all(any(n.startswith(f"{k}: ") for n in loaded.notes) for k in loaded.assumptions)
    assert "no max-pool after a 3x3 stem" in " ".join(loaded.notes)
    assert rebuilt_matches(loaded, model, torch.randn(2, 3, 8, 8))


def test_imagenet_resnet_lists_its_stem_pool(tmp_path: Path) -> None:
    model = randomize_norms(ResNet((8, 16), (1, 1), classes=3, stem_kernel=7),
                            torch.Generator().manual_seed(2))
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    assert loaded.assumptions["pooling"] == (
        "max_pool2d(3, 2, 1) at maxpool; adaptive_avg_pool2d(1) at avgpool")
    assert loaded.assumptions["padding"] == "kernel//2"
    padding = next(n for n in loaded.notes if n.startswith("padding: "))
    assert "3 on the 7x7 stem, stride 2" in padding
    assert rebuilt_matches(loaded, model, torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("text", ["softmax", "relu(2)", "sine(x)", "gelu(exact)", "sine(inf)",
                                  "sine((1))"])
def test_bad_activation_text_is_refused(text: str) -> None:
    with pytest.raises(ArchitectureError, match="activation"):
        parse_activation(text)


@pytest.mark.parametrize("text", ["relu", "gelu(none)", "gelu(tanh)", "leaky_relu(0.2)",
                                  "sine(30)", "sine(1.5)"])
def test_activation_text_round_trips(text: str) -> None:
    assert activation_text(parse_activation(text)) == text


# --- the input shape ---------------------------------------------------------------------------


def global_pool_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def flatten_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 5, padding=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 16, 10))


def test_conv_net_that_pools_globally_lists_its_unknown_input_size(tmp_path: Path) -> None:
    loaded = graphs.load_checkpoint(write(tmp_path, global_pool_cnn().state_dict()))
    assert loaded.assumptions["input_shape"] == [3, None, None]
    assert loaded.architecture.inputs[0].shape == (3, None, None)
    assert any(n.startswith("input_shape: spatial size unknown") for n in loaded.notes)


def test_input_shape_override_fixes_the_spatial_size(tmp_path: Path) -> None:
    model = global_pool_cnn()
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()), input_shape=(3, 9, 9))
    assert loaded.architecture.inputs[0].shape == (3, 9, 9)
    # Conv(0) ReLU(1) Conv(2) ReLU(3) AdaptiveAvgPool2d(4) Flatten(5) Linear(6)
    assert loaded.assumptions == {
        "activation": "relu", "padding": [1, 1], "pooling": "adaptive_avg_pool2d(1) at 4"}
    assert rebuilt_matches(loaded, model, torch.randn(2, 3, 9, 9))


def test_flattened_conv_net_lists_the_derived_input_size(tmp_path: Path) -> None:
    model = flatten_cnn()
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    # Conv(0) ReLU(1) MaxPool2d(2) Conv(3, kernel 5) ReLU(4) Flatten(5) Linear(6)
    assert loaded.assumptions == {"activation": "relu", "input_shape": [1, 8, 8],
                                  "padding": [1, 2], "pooling": "max_pool2d(2) at 2"}
    assert "assuming a square input" in " ".join(loaded.notes)
    settled = graphs.load_checkpoint(write(tmp_path, model.state_dict()), input_shape=(1, 8, 8),
                                     activation="relu")
    # what no parameter settles stays listed: the layout's padding and pooling conventions
    assert settled.assumptions == {"padding": [1, 2], "pooling": "max_pool2d(2) at 2"}
    assert [n.split(":")[0] for n in settled.notes] == ["padding", "pooling"]
    assert rebuilt_matches(settled, model, torch.randn(2, 1, 8, 8))


def test_input_shape_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MissingArchitectureError,
                       match=r"do not fit it with input_shape \[1, 10, 10\]"):
        graphs.load_checkpoint(write(tmp_path, flatten_cnn().state_dict()), input_shape=(1, 10, 10))


def test_mlp_on_flattened_images_takes_the_image_shape(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    assert loaded.assumptions["input_shape"] == [64]
    shaped = graphs.load_checkpoint(write(tmp_path, model.state_dict()), input_shape=[1, 8, 8])
    assert shaped.architecture.inputs[0].shape == (1, 8, 8)
    assert "input_shape" not in shaped.assumptions
    assert rebuilt_matches(shaped, model, torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize("shape", [(), (0, 8), (1, 2, 3, 4, 5), (1.5,), (True,)])
def test_bad_input_shape_is_refused(shape: tuple, tmp_path: Path) -> None:
    with pytest.raises(ArchitectureError, match="input_shape must be 1 to 4 positive integers"):
        graphs.load_checkpoint(write(tmp_path, mlp(nn.ReLU()).state_dict()), input_shape=shape)


def test_overrides_are_refused_for_a_declared_architecture(tmp_path: Path) -> None:
    graphs.save(mlp(nn.ReLU()), tmp_path / "m.safetensors", torch.randn(2, 3))
    for kwargs in ({"activation": "relu"}, {"input_shape": (3,)}):
        with pytest.raises(ArchitectureError) as excinfo:
            graphs.load_checkpoint(tmp_path / "m.safetensors", **kwargs)
        assert str(excinfo.value) == (
            "activation= and input_shape= settle an inferred architecture only; this "
            "checkpoint's architecture is given (arch or file metadata) and already fixes both")


def test_a_prefixed_conv_stack_names_its_pools_by_module_path(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("net", nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 2 * 2, 3)))
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    assert loaded.assumptions["padding"] == [1, 2, 1]
    assert loaded.assumptions["pooling"] == "max_pool2d(2) at net.3, net.6"
    assert loaded.assumptions["input_shape"] == [1, 8, 8]
    assert rebuilt_matches(loaded, model, torch.randn(2, 1, 8, 8))


def test_a_conv_stack_without_pools_says_none(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    loaded = graphs.load_checkpoint(write(tmp_path, model.state_dict()))
    assert loaded.assumptions["padding"] == [1, 0]
    assert loaded.assumptions["pooling"] == "none"


def test_a_stack_that_starts_with_a_norm_is_an_unknown_layout_not_a_crash(
        tmp_path: Path) -> None:
    model = nn.Sequential(nn.BatchNorm1d(4, affine=False), nn.Linear(4, 2))
    with pytest.raises(MissingArchitectureError, match="attach one"):
        graphs.load_checkpoint(write(tmp_path, model.state_dict()))
