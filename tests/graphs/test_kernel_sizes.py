"""Kernels sized per layer: ``edge_kernel`` holds every kernel exactly (1 value for a 1×1 or
linear edge, 49 for a 7×7 stem's), ``edge_attr`` is a fixed-width view of them (padded when
a kernel fits, area-resampled when not), and nothing limits the kernel size."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch, Data

import graphs
from graphs import EDGE_TYPES, ArchitectureError
from models import GraphMetanet, MetanetConfig
from models.data import graph_of


class StemNet(nn.Module):
    """torchvision's stem (7×7 stride 2, BN, ReLU, 3×3/2 max pool), one Bottleneck with a
    1×1 downsample, a 5×5 conv, global pooling and a linear readout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.reduce = nn.Conv2d(8, 4, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.mid = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(4)
        self.expand = nn.Conv2d(4, 16, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(16)
        self.down = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.wide = nn.Conv2d(16, 8, 5, padding=2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        h = torch.relu(self.bn2(self.reduce(x)))
        h = torch.relu(self.bn3(self.mid(h)))
        x = torch.relu(self.bn4(self.expand(h)) + self.down(x))
        x = torch.relu(self.wide(x))
        return self.fc(x.mean((-2, -1)))


X = torch.randn(2, 3, 16, 16)


def stem_net(seed: int = 0) -> tuple[nn.Module, graphs.Checkpoint]:
    torch.manual_seed(seed)
    model = StemNet().eval()
    for m in model.modules():  # non-trivial BN statistics, so norms are not identities
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return model, graphs.from_module(model, X)


def one_by_one_net() -> graphs.Checkpoint:
    """1×1 convs and linear layers only: every weight is a 1-entry kernel."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 1),
        nn.ReLU(),
        nn.Conv2d(64, 32, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    return graphs.from_module(model, torch.randn(1, 3, 4, 4))


def _exact(back: graphs.Checkpoint, ckpt: graphs.Checkpoint) -> None:
    assert list(back.tensors) == list(ckpt.tensors)
    for k, t in ckpt.tensors.items():
        assert back.tensors[k].dtype == t.dtype and torch.equal(back.tensors[k], t), k


@pytest.mark.parametrize("max_kernel", [1, 4, 9, 25, 49])
def test_round_trip_is_exact_for_5x5_and_7x7_kernels_at_any_width(max_kernel: int) -> None:
    _, ckpt = stem_net()
    _exact(graphs.from_graph(graphs.to_graph(ckpt, max_kernel=max_kernel), ckpt), ckpt)


def test_round_trip_of_a_float64_checkpoint_is_exact() -> None:
    _, ckpt = stem_net()
    wide = graphs.Checkpoint(
        {k: t.double() if t.is_floating_point() else t for k, t in ckpt.tensors.items()},
        ckpt.architecture,
    )
    _exact(graphs.from_graph(graphs.to_graph(wide, dtype=torch.float64), wide), wide)


def test_edge_kernel_is_each_weight_in_edge_order() -> None:
    _, ckpt = stem_net()
    g = graphs.to_graph(ckpt)
    groups = graphs.kernels_by_shape(g)
    assert set(groups) == {(1, 1), (3, 3), (5, 5), (7, 7)}
    edges, kernels = groups[(7, 7)]
    assert torch.equal(kernels, ckpt.tensors["conv1.weight"].reshape(24, 7, 7))
    assert edges.tolist() == list(range(int(edges[0]), int(edges[0]) + 24))
    assert torch.equal(groups[(5, 5)][1], ckpt.tensors["wide.weight"].reshape(128, 5, 5))
    assert torch.equal(groups[(3, 3)][1], ckpt.tensors["mid.weight"].reshape(16, 3, 3))
    # every kernel once, identity edges (norm, residual) one 1 each
    identity = torch.isin(g.edge_type, torch.tensor([EDGE_TYPES["norm"], EDGE_TYPES["residual"]]))
    weights = sum(
        t.numel() for k, t in ckpt.tensors.items() if k.endswith("weight") and t.dim() > 1
    )
    assert g.edge_kernel.numel() == weights + int(identity.sum())
    assert (groups[(1, 1)][1][identity[groups[(1, 1)][0]]] == 1).all()


def test_a_1x1_heavy_graph_stores_one_value_per_edge() -> None:
    """The cause of the memory figure: per 1×1/linear edge one kernel value, and at
    ``max_kernel=1`` one feature; never a padded row."""
    ckpt = one_by_one_net()
    g = graphs.to_graph(ckpt, max_kernel=1)
    e = g.edge_index.shape[1]
    assert e == 3 * 32 + 32 * 64 + 64 * 32 + 32 * 10
    assert g.edge_kernel.shape == (e,) and g.edge_attr.shape == (e, 1)
    assert (g.edge_kernel_shape == 1).all()
    per_edge = {
        k: g[k].numel() * g[k].element_size() / e
        for k in ("edge_index", "edge_type", "edge_kernel_shape", "edge_kernel", "edge_attr")
    }
    assert per_edge == {
        "edge_index": 16,
        "edge_type": 8,
        "edge_kernel_shape": 8,
        "edge_kernel": 4,
        "edge_attr": 4,
    }
    # the mixed net: 1 value per 1×1 edge, 9 per 3×3, 25 per 5×5, 49 per stem edge
    _, stem = stem_net()
    h = graphs.to_graph(stem, max_kernel=1)
    counts = {s: len(edges) for s, (edges, _) in graphs.kernels_by_shape(h).items()}
    assert counts[(7, 7)] == 24 and counts[(5, 5)] == 128 and counts[(3, 3)] == 16
    assert h.edge_kernel.numel() == (
        counts[(1, 1)] + 9 * counts[(3, 3)] + 25 * counts[(5, 5)] + 49 * counts[(7, 7)]
    )


def test_edge_attr_pads_kernels_that_fit_and_resamples_larger_ones() -> None:
    _, ckpt = stem_net()
    g = graphs.to_graph(ckpt)  # the v1 width: 9
    groups = graphs.kernels_by_shape(g)
    edges, k3 = groups[(3, 3)]
    assert torch.equal(g.edge_attr[edges], k3.reshape(-1, 9))  # the v1 layout, unchanged
    edges, k1 = groups[(1, 1)]
    assert (
        torch.equal(g.edge_attr[edges, 0], k1.reshape(-1)) and (g.edge_attr[edges, 1:] == 0).all()
    )
    edges, k7 = groups[(7, 7)]
    # area resampling 7 -> 3 per side: cells of 7/3 input pixels, weights by overlap
    a = torch.tensor(
        [[1, 1, 1 / 3, 0, 0, 0, 0], [0, 0, 2 / 3, 1, 2 / 3, 0, 0], [0, 0, 0, 0, 1 / 3, 1, 1]]
    )
    torch.testing.assert_close(g.edge_attr[edges], (a @ k7 @ a.T).reshape(-1, 9))
    torch.testing.assert_close(g.edge_attr[edges].sum(1), k7.sum((1, 2)))
    edges, k5 = groups[(5, 5)]
    torch.testing.assert_close(g.edge_attr[edges].sum(1), k5.sum((1, 2)))
    wide = graphs.to_graph(ckpt, max_kernel=49)
    assert torch.equal(wide.edge_attr[groups[(7, 7)][0]], k7.reshape(-1, 49))
    one = graphs.to_graph(ckpt, max_kernel=1)  # the compact form: each kernel's sum
    torch.testing.assert_close(one.edge_attr[groups[(5, 5)][0], 0], k5.sum((1, 2)))


@pytest.mark.parametrize("width", [1, 2, 4, 9, 25, 49, 50])
def test_edge_features_derive_any_width_from_a_stored_graph(width: int) -> None:
    _, ckpt = stem_net()
    compact = graphs.to_graph(ckpt, max_kernel=1)
    torch.testing.assert_close(
        graphs.edge_features(compact, width),
        graphs.to_graph(ckpt, max_kernel=width).edge_attr,
        atol=1e-6,
        rtol=1e-6,
    )


def test_graphs_with_different_kernel_sizes_batch() -> None:
    _, stem = stem_net()
    a, b = graphs.to_graph(stem), graphs.to_graph(one_by_one_net())
    batch = Batch.from_data_list([a, b, a])
    assert batch.edge_kernel.numel() == 2 * a.edge_kernel.numel() + b.edge_kernel.numel()
    edges, kernels = graphs.kernels_by_shape(batch)[(7, 7)]
    assert len(edges) == 48
    assert torch.equal(kernels, torch.cat([graphs.kernels_by_shape(a)[(7, 7)][1]] * 2))
    torch.testing.assert_close(graphs.edge_features(batch), batch.edge_attr)


def test_a_graph_without_edge_kernel_inverts_only_what_its_width_holds() -> None:
    _, ckpt = stem_net()
    for width in (49, 9):
        g = graphs.to_graph(ckpt, max_kernel=width)
        legacy = Data(x=g.x, edge_index=g.edge_index, edge_attr=g.edge_attr, num_nodes=g.num_nodes)
        if width == 49:
            _exact(graphs.from_graph(legacy, ckpt), ckpt)
        else:
            with pytest.raises(ArchitectureError, match=r"conv1\.weight: its 7×7 kernels"):
                graphs.from_graph(legacy, ckpt)


def test_edited_graphs_write_their_weights_back() -> None:
    """Kernels that fit ``edge_attr`` are read from it (edit it, as before), the rest from
    ``edge_kernel``; without ``edge_attr``, everything from ``edge_kernel``."""
    _, ckpt = stem_net()
    g = graphs.to_graph(ckpt)  # width 9: the 7×7 and 5×5 kernels only in edge_kernel
    g.edge_attr = g.edge_attr * 2
    g.edge_kernel = g.edge_kernel * 3
    back = graphs.from_graph(g, ckpt)
    for name in ("mid.weight", "reduce.weight", "fc.weight"):
        assert torch.equal(back.tensors[name], ckpt.tensors[name] * 2), name
    for name in ("conv1.weight", "wide.weight"):
        assert torch.equal(back.tensors[name], ckpt.tensors[name] * 3), name
    del g.edge_attr
    back = graphs.from_graph(g, ckpt)
    for name in ("mid.weight", "conv1.weight", "fc.weight"):
        assert torch.equal(back.tensors[name], ckpt.tensors[name] * 3), name
    del g.edge_kernel
    with pytest.raises(ArchitectureError, match="neither edge_kernel nor edge_attr"):
        graphs.from_graph(g, ckpt)


def test_from_graph_rejects_kernels_of_another_size() -> None:
    _, ckpt = stem_net()
    g = graphs.to_graph(ckpt)
    g.edge_kernel = g.edge_kernel[:-1]
    with pytest.raises(ArchitectureError, match="kernel entries"):
        graphs.from_graph(g, ckpt)


def _edge_kernels(g: Data) -> list[tuple[float, ...]]:
    counts = (g.edge_kernel_shape[:, 0] * g.edge_kernel_shape[:, 1]).tolist()
    return [tuple(v) for v in map(torch.Tensor.tolist, g.edge_kernel.split(counts))]


def _signature(g: Data) -> tuple:
    """Permutation-invariant multisets: per node (type, features, incoming (edge type,
    kernel shape, kernel, source features)) and per edge."""
    kernels = _edge_kernels(g)
    shape = [tuple(s) for s in g.edge_kernel_shape.tolist()]
    src, dst = g.edge_index.tolist()
    types = g.edge_type.tolist()
    incoming: list[list[tuple]] = [[] for _ in range(g.num_nodes)]
    for i, (s, d) in enumerate(zip(src, dst, strict=True)):
        incoming[d].append((types[i], shape[i], kernels[i], *g.x[s].tolist()))
    nodes = sorted(
        (t, a, *row, tuple(sorted(inc)))
        for t, a, row, inc in zip(
            g.node_type.tolist(), g.node_act.tolist(), g.x.tolist(), incoming, strict=True
        )
    )
    edges = sorted(zip(types, shape, kernels, map(tuple, g.edge_attr.tolist()), strict=True))
    return tuple(nodes), tuple(edges)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), width=st.sampled_from([1, 9, 49]))
def test_a_permuted_7x7_stem_net_has_an_isomorphic_graph(seed: int, width: int) -> None:
    model, ckpt = stem_net(seed % 4)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(seed))
    assert any(not torch.equal(t, permuted.tensors[k]) for k, t in ckpt.tensors.items())
    g, h = graphs.to_graph(ckpt, max_kernel=width), graphs.to_graph(permuted, max_kernel=width)
    assert torch.equal(g.edge_index, h.edge_index)  # same layout, kernels moved
    assert torch.equal(g.edge_kernel_shape, h.edge_kernel_shape)
    assert _signature(g) == _signature(h)
    _exact(graphs.from_graph(h, permuted), permuted)
    rebuilt = graphs.build_module(permuted.architecture)
    rebuilt.load_state_dict(permuted.tensors)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(X), model(X), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("max_kernel", [9, 49])
def test_metanetwork_output_is_invariant_on_a_7x7_stem_net(max_kernel: int) -> None:
    """A metanetwork configured for 3×3 kernels reads the stem area-resampled to 3×3 (per
    edge, so permutations commute with it); one configured for 7×7 reads it as is."""
    torch.manual_seed(0)
    model = GraphMetanet(
        MetanetConfig(
            task="generalization",
            num_outputs=1,
            hidden=16,
            edge_hidden=8,
            layers=2,
            fourier=4,
            max_kernel=max_kernel,
            layer_stats=True,
        )
    )
    nets = [stem_net(s)[1] for s in range(3)]
    model.fit_normalization([graph_of(c, max_kernel) for c in nets])
    model.eval()
    ckpt = nets[0]
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(3))
    g, gp = graph_of(ckpt, max_kernel), graph_of(permuted, max_kernel)
    assert g.edge_attr.shape[1] == max_kernel and not torch.equal(g.edge_attr, gp.edge_attr)
    with torch.no_grad():
        out = model(Batch.from_data_list([g, gp, graph_of(nets[1], max_kernel)]))
    torch.testing.assert_close(out[0], out[1], atol=1e-4, rtol=0)
    assert (out[0] - out[2]).abs().max() > 1e-4  # other weights, another answer


def test_domain_check_flags_kernels_larger_than_training_saw() -> None:
    """A card records the largest kernel its training networks had; a card from before
    (no entry) saw at most its edge width. Larger kernels are flagged, not unbuildable."""
    from models.registry import domain_issues, domain_of

    _, stem = stem_net()
    small = one_by_one_net()
    domain = domain_of([small], [graph_of(small)])
    assert domain["max_kernel_entries"] == 1
    sizes = {"max_nodes": 10**6, "max_edges": 10**9, "max_depth": 1000}
    wide = {"ops": sorted(stem.architecture.summary()["op_counts"]), "io": []} | sizes

    def issues(domain: dict, width: int) -> list[str]:
        found = domain_issues(domain, stem, graph_of(stem, width))
        return [i for i in found if "kernel" in i]

    assert issues(wide | {"max_kernel_entries": 49}, 9) == []
    assert issues(wide | {"max_kernel_entries": 9}, 49) == [
        "7×7 kernels, training networks had at most 9 kernel entries"
    ]
    assert issues(wide, 9) == [  # an old card: its width
        "7×7 kernels, training networks had at most 9 kernel entries (read area-resampled to "
        "9 features)"
    ]
    assert issues(wide, 49) == []
