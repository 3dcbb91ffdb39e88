"""The parameter graph: structure, exact inversion, permutation isomorphism, batching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _graph_models import FAMILIES, family, siren
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

import graphs
from graphs import EDGE_TYPES, NODE_TYPES, ArchitectureError


@pytest.mark.parametrize("name", FAMILIES)
def test_describe_save_load_graph_roundtrip_is_exact(name: str, tmp_path: Path) -> None:
    model, x = family(name, 2, 5)
    graphs.save(model, tmp_path / "m.safetensors", x)
    ckpt = graphs.load(tmp_path / "m.safetensors")
    graph = graphs.to_graph(ckpt)
    assert graph.edge_index.shape == (2, graph.edge_attr.shape[0])
    assert graph.x.shape == (graph.num_nodes, len(graphs.NODE_FEATURES))
    back = graphs.from_graph(graph, ckpt)
    assert list(back.tensors) == list(ckpt.tensors)
    for k, t in ckpt.tensors.items():
        assert back.tensors[k].dtype == t.dtype and torch.equal(back.tensors[k], t), k


def test_inr_graph_matches_neural_graphs_size() -> None:
    ckpt = graphs.from_module(siren([2, 32, 32, 1]), torch.rand(3, 2))
    graph = graphs.to_graph(ckpt)
    assert (graph.num_nodes, graph.edge_index.shape[1]) == (67, 1120)
    assert graph.node_pos.tolist()[:2] == [0, 1] and graph.node_pos.tolist()[-1] == 2
    assert (graph.node_pos[2:66] == -1).all()
    assert (graph.node_act[2:66] == graphs.ACTIVATION_IDS["sine"]).all()
    assert (graph.x[2:66, 5] == 30.0).all()
    assert graph.node_layer.unique().tolist() == [0, 1, 2, 3]


def test_conv_kernels_and_biases_land_where_documented() -> None:
    model, x = family("cnn_bn", 0, 0)  # conv 3->2, bn, conv 2->3 (stride 2), bn, fc 3->5
    ckpt = graphs.from_module(model, x)
    g = graphs.to_graph(ckpt)
    w = ckpt.tensors["0.weight"]  # (2, 3, 3, 3)
    conv = (g.edge_type == EDGE_TYPES["conv"]).nonzero().flatten()[:6]
    assert torch.equal(g.edge_attr[conv], w.reshape(6, 9))
    # edge (out o, in i) is the row-major entry o*3+i: from input node i to conv node 3+o
    assert g.edge_index[:, conv].tolist() == [[0, 1, 2] * 2, [3, 3, 3, 4, 4, 4]]
    assert torch.equal(g.x[3:5, 0], ckpt.tensors["0.bias"])
    bn = (g.node_type == NODE_TYPES["batchnorm"]).nonzero().flatten()[:2]
    assert torch.equal(g.x[bn, 3], ckpt.tensors["1.running_mean"])
    assert torch.equal(g.x[bn, 4], ckpt.tensors["1.running_var"])
    assert (g.edge_attr[g.edge_type == EDGE_TYPES["norm"]] == torch.eye(9)[0]).all()


def test_residual_adds_are_identity_edges() -> None:
    model, x = family("resnet", 0, 0)
    g = graphs.to_graph(graphs.from_module(model, x))
    residual = g.edge_type == EDGE_TYPES["residual"]
    adds = (g.node_type == NODE_TYPES["add"]).sum()
    assert residual.sum() == 2 * adds
    assert (g.edge_attr[residual, 0] == 1).all() and (g.edge_attr[residual, 1:] == 0).all()
    src, dst = g.edge_index[:, residual]
    assert (g.node_group[src] == g.node_group[dst]).all()


def test_flatten_linear_edges_carry_pixel_weights() -> None:
    model, x = family("cnn", 0, 0)  # 3 channels × 2×2 pixels -> 5 classes
    ckpt = graphs.from_module(model, x)
    g = graphs.to_graph(ckpt)
    flat = g.edge_type == EDGE_TYPES["flatten_linear"]
    assert flat.sum() == 5 * 3
    assert torch.equal(g.edge_attr[flat, :4], ckpt.tensors["7.weight"].reshape(15, 4))


def test_big_kernels_are_stored_exactly_and_resampled_in_edge_attr() -> None:
    """No kernel-size limit: the 5×5 kernels round-trip through ``edge_kernel``; the default
    9-wide ``edge_attr`` holds them area-resampled to 3×3 (same sum)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 5), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2))
    ckpt = graphs.from_module(model, torch.randn(1, 1, 5, 5))
    g = graphs.to_graph(ckpt)
    back = graphs.from_graph(g, ckpt)
    assert torch.equal(back.tensors["0.weight"], ckpt.tensors["0.weight"])
    conv = g.edge_type == EDGE_TYPES["conv"]
    w = ckpt.tensors["0.weight"].reshape(2, 25)
    torch.testing.assert_close(g.edge_attr[conv].sum(1), w.sum(1))
    wide = graphs.to_graph(ckpt, max_kernel=25)
    assert torch.equal(wide.edge_attr[conv], w)
    legacy = Data(x=g.x, edge_index=g.edge_index, edge_attr=g.edge_attr, num_nodes=g.num_nodes)
    with pytest.raises(ArchitectureError, match="needs the graph's edge_kernel"):
        graphs.from_graph(legacy, ckpt)


def test_from_graph_rejects_a_graph_of_another_architecture() -> None:
    a, xa = family("mlp", 0, 0)
    b, xb = family("mlp", 1, 0)
    graph = graphs.to_graph(graphs.from_module(a, xa))
    with pytest.raises(ArchitectureError, match="template architecture needs"):
        graphs.from_graph(graph, graphs.from_module(b, xb))


def test_graphs_of_different_architectures_batch() -> None:
    data = [graphs.to_graph(graphs.from_module(*family(name, 1, 0))) for name in FAMILIES]
    batch = Batch.from_data_list(data)
    assert batch.num_graphs == len(FAMILIES)
    assert batch.edge_index.max() < batch.num_nodes
    loader = DataLoader(data, batch_size=3)
    assert sum(b.num_graphs for b in loader) == len(FAMILIES)


def _signature(g: Data) -> tuple:
    """Permutation-invariant multisets: per node (type, degrees, features, incoming edge
    features and the bias at their source) and per edge."""
    n = g.num_nodes
    deg_in = torch.bincount(g.edge_index[1], minlength=n)
    deg_out = torch.bincount(g.edge_index[0], minlength=n)
    src, dst = g.edge_index
    incoming: list[list[tuple[float, ...]]] = [[] for _ in range(n)]
    for s, d, e in zip(src.tolist(), dst.tolist(), g.edge_attr.tolist(), strict=True):
        incoming[d].append((*e, *g.x[s].tolist()))
    nodes = sorted(
        (int(t), int(a), int(di), int(do), int(grp), int(pos), *map(float, row), tuple(sorted(inc)))
        for t, a, di, do, grp, pos, row, inc in zip(
            g.node_type,
            g.node_act,
            deg_in,
            deg_out,
            g.node_group,
            g.node_pos,
            g.x,
            incoming,
            strict=True,
        )
    )
    edges = sorted(
        (int(t), int(g.node_type[s]), int(g.node_type[d]), *map(float, e))
        for t, s, d, e in zip(g.edge_type, src, dst, g.edge_attr, strict=True)
    )
    return tuple(nodes), tuple(edges)


@pytest.mark.parametrize("name", FAMILIES)
@settings(max_examples=10, deadline=None)
@given(size=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_permuted_checkpoint_has_an_isomorphic_graph(name: str, size: int, seed: int) -> None:
    model, x = family(name, size, seed)
    ckpt = graphs.from_module(model, x)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(seed + 1))
    g, h = graphs.to_graph(ckpt), graphs.to_graph(permuted)
    assert torch.equal(g.edge_index, h.edge_index)  # same layout, weights moved
    assert _signature(g) == _signature(h)
    back = graphs.from_graph(h, ckpt)
    assert all(torch.equal(back.tensors[k], permuted.tensors[k]) for k in ckpt.tensors)
