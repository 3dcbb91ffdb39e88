"""Probe features: the graph pass computes what the network computes, and stays equivariant."""

import pytest
import torch
from _nets import checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch

import graphs
from graphs import NODE_TYPES
from models.data import graph_of
from models.probes import probe_activations, probe_supported

INPUT_DIMS = {"siren": 2, "mlp": 64, "cnn": 64}


def run_probes(ckpts: list[graphs.Checkpoint], points: torch.Tensor) -> tuple[Batch, torch.Tensor]:
    batch = Batch.from_data_list([graph_of(c) for c in ckpts])
    return batch, probe_activations(batch, len(ckpts), points)


def outputs(batch: Batch, values: torch.Tensor, graph: int) -> torch.Tensor:
    """The output neurons' rows of one graph, in their fixed order."""
    rows = (batch.batch == graph) & (batch.node_pos >= 0) & (
        batch.node_type != NODE_TYPES["input"])
    order = batch.node_pos[rows].argsort()
    return values[rows][order]


@pytest.mark.parametrize("family", ["siren", "mlp"])
def test_output_neurons_hold_the_network_output(family: str) -> None:
    ckpt = checkpoint(family, seed=3)
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors)
    points = torch.rand(7, INPUT_DIMS[family], generator=torch.Generator().manual_seed(0)) * 2 - 1
    batch, values = run_probes([ckpt], points)
    x = points if family == "siren" else points.view(7, 1, 8, 8)
    with torch.no_grad():
        expected = module(x)
    torch.testing.assert_close(outputs(batch, values, 0), expected.t(), atol=1e-5, rtol=1e-5)
    inputs = values[batch.node_type == NODE_TYPES["input"]]
    torch.testing.assert_close(inputs, points.t())


def test_conv_chains_are_evaluated_on_probe_images() -> None:
    """A stride-2 CNN (the digits zoos' convolutions) and an MLP in one batch: each output
    neuron holds the network's logit on every probe image; graphs the conv pass cannot read
    (BatchNorm, residual) get zero rows."""
    from models.probes import conv_probe_supported

    ckpts = [checkpoint("cnn", seed=2), checkpoint("mlp", seed=2), checkpoint("cnn", seed=3,
             width=6), checkpoint("cnn_bn"), checkpoint("resnet")]
    points = torch.rand(9, 64, generator=torch.Generator().manual_seed(2))
    batch, values = run_probes(ckpts, points)
    assert conv_probe_supported(batch, 5).tolist() == [True, False, True, False, False]
    for g in (0, 1, 2):
        module = graphs.build_module(ckpts[g].architecture)
        module.load_state_dict(ckpts[g].tensors)
        with torch.no_grad():
            expected = module.eval()(points.view(9, 1, 8, 8))
        torch.testing.assert_close(outputs(batch, values, g), expected.t(), atol=1e-5,
                                   rtol=1e-5)
    assert not values[batch.batch >= 3].any()


def test_unsupported_graphs_get_zero_rows_and_do_not_disturb_others() -> None:
    points = torch.rand(5, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    siren = checkpoint("siren", seed=4)
    _, alone = run_probes([siren], points)
    mixed = [checkpoint("cnn"), siren, checkpoint("transformer"), checkpoint("resnet")]
    batch, values = run_probes(mixed, points)
    assert probe_supported(batch, 4).tolist() == [False, True, False, False]
    assert not values[batch.batch != 1].any()
    torch.testing.assert_close(values[batch.batch == 1], alone)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), family=st.sampled_from(["siren", "mlp", "cnn"]))
def test_probe_values_move_with_permuted_neurons(seed: int, family: str) -> None:
    """Permuting hidden neurons permutes their probe rows; the multiset per layer is kept."""
    ckpt = checkpoint(family, seed=seed % 50)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(seed))
    points = torch.rand(6, INPUT_DIMS[family], generator=torch.Generator().manual_seed(seed))
    batch, values = run_probes([ckpt, permuted], points)
    a, b = values[batch.batch == 0], values[batch.batch == 1]
    layer = batch.node_layer[batch.batch == 0]
    key = torch.randn(values.shape[1], generator=torch.Generator().manual_seed(1))
    for depth in layer.unique().tolist():
        rows = layer == depth  # rows sorted by a random projection (no ties but equal rows)
        ka = a[rows][torch.argsort(a[rows] @ key)]
        kb = b[rows][torch.argsort(b[rows] @ key)]
        torch.testing.assert_close(ka, kb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs(batch, values, 0), outputs(batch, values, 1),
                               atol=1e-5, rtol=1e-5)


def test_every_graph_activation_has_a_probe_function() -> None:
    from graphs import ACTIVATION_IDS
    from models.probes import _ACTIVATIONS

    assert set(_ACTIVATIONS) == set(ACTIVATION_IDS.values())
