"""The block path (batches of one structure): same function as the edge-list path, found only
where it applies, and a training pass that keeps no per-edge message for backward."""

import pytest
import torch
from _nets import FAMILIES, checkpoint
from torch_geometric.data import Batch, Data

import models.layers as layers
from graphs import EDGE_TYPES
from models import GraphMetanet, MetanetConfig, NGConv
from models.data import graph_of
from models.layers import block_order, graph_layout
from models.metanet import layer_statistics
from models.probes import probe_activations


def same_structure(family: str, n: int = 3) -> Batch:
    return Batch.from_data_list([graph_of(checkpoint(family, seed=s)) for s in range(n)])


def model(probes: int = 0, aggregators: tuple[str, ...] = ("mean", "max", "min", "std"),
          hidden: int = 16) -> GraphMetanet:
    torch.manual_seed(0)
    cfg = MetanetConfig(task="classification", num_outputs=10, hidden=hidden, edge_hidden=8,
                        layers=2, fourier=4, layer_stats=True, probes=probes,
                        aggregators=aggregators)
    m = GraphMetanet(cfg)
    m.fit_normalization([graph_of(checkpoint(f)) for f in FAMILIES])
    return m


def test_layout_of_a_siren_batch_is_three_dense_blocks() -> None:
    batch = same_structure("siren")
    layout = graph_layout(batch)
    assert layout is not None and layout.num_graphs == 3
    assert all(not b.diagonal for b in layout.blocks)
    assert sum(b.size for b in layout.blocks) == layout.num_edges
    assert [b.dst_layer for b in layout.blocks] == list(range(1, len(layout.blocks) + 1))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_edge_is_in_exactly_one_block(family: str) -> None:
    layout = graph_layout(same_structure(family, 2))
    assert layout is not None
    covered = torch.zeros(layout.num_edges, dtype=torch.long)
    for b in layout.blocks:
        covered[b.e0:b.e0 + b.size] += 1
    assert bool((covered == 1).all())


def test_mixed_or_relabelled_batches_take_the_edge_list_path() -> None:
    mixed = Batch.from_data_list([graph_of(checkpoint("mlp")), graph_of(checkpoint("cnn"))])
    assert graph_layout(mixed) is None
    g = graph_of(checkpoint("mlp"))
    h = g.clone()
    perm = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(0))
    h.edge_index = perm[g.edge_index]  # same graph, other node labels
    assert graph_layout(Batch.from_data_list([g, h])) is None
    retyped = g.clone()  # same wiring, another edge type on one edge: not one structure
    retyped.edge_type = g.edge_type.clone()
    retyped.edge_type[0] = (int(g.edge_type[0]) + 1) % len(EDGE_TYPES)
    assert graph_layout(Batch.from_data_list([g, g.clone()])) is not None
    assert graph_layout(Batch.from_data_list([g, retyped])) is None


@pytest.mark.parametrize("family", FAMILIES)
def test_block_path_computes_the_edge_list_function(family: str) -> None:
    m = model(probes=8).eval()
    batch = same_structure(family)
    with torch.no_grad():
        m.use_layout = True
        blocks = m(batch)
        m.use_layout = False
        edges = m(batch)
    torch.testing.assert_close(blocks, edges, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["siren", "resnet", "transformer"])
@pytest.mark.parametrize("update_edges", [True, False])
def test_fused_layer_computes_the_block_layer(family: str, update_edges: bool) -> None:
    """``forward_fused`` (folded products, edges in block-major order) against the layer's
    unfused block path, nodes and edges; resnet and transformer have diagonal blocks."""
    batch = same_structure(family, 3)
    layout = graph_layout(batch)
    assert layout is not None
    torch.manual_seed(0)
    conv = NGConv(16, 8, ("sum", "mean", "max", "min", "std", "var"),
                  update_edges=update_edges).eval()
    with torch.no_grad():  # non-trivial norm affines and edge biases
        for p in conv.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    x = torch.randn(batch.num_nodes, 16)
    e = torch.randn(batch.num_edges, 8) * 2 + 0.5
    order = block_order(layout, e.device)
    assert sorted(order.tolist()) == list(range(batch.num_edges))
    with torch.no_grad():
        x_ref, e_ref = conv(x, batch.edge_index, e, None, layout)
        x_new, e_new = conv.forward_fused(x, e[order], layout)
    torch.testing.assert_close(x_new, x_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(e_new, e_ref[order], atol=1e-5, rtol=1e-5)


def test_dropout_in_training_mode_is_not_fused() -> None:
    conv = NGConv(8, 4, dropout=0.1)
    assert conv.eval().fusable() and not conv.train().fusable()
    assert NGConv(8, 4).train().fusable()
    assert not NGConv(8, 4, ("mean", "softmax")).eval().fusable()


def test_chunk_size_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    m = model(probes=8).eval()
    batch = same_structure("siren", 5)
    with torch.no_grad():
        whole = m(batch)
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 1)  # one graph per chunk
        one = m(batch)
    torch.testing.assert_close(whole, one, atol=1e-6, rtol=1e-5)


def output_first(graph: Data) -> Data:
    """The same network with its last node numbered first: one structure still, but the
    nodes no longer come layer by layer."""
    n = graph.num_nodes
    order = torch.cat([torch.tensor([n - 1]), torch.arange(n - 1)])  # new -> old
    new_id = torch.empty_like(order)
    new_id[order] = torch.arange(n)
    out = graph.clone()
    for key in ("x", "node_type", "node_act", "node_layer", "node_pos"):
        out[key] = graph[key][order]
    out.edge_index = new_id[graph.edge_index]
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("relabel", [False, True])
def test_probe_blocks_match_the_edge_list_probes(family: str, relabel: bool) -> None:
    graphs = [graph_of(checkpoint(family, seed=s)) for s in range(4)]
    batch = Batch.from_data_list([output_first(g) for g in graphs] if relabel else graphs)
    layout = graph_layout(batch)
    assert layout is not None
    layer = batch.node_layer[:layout.num_nodes]
    layer_by_layer = bool((layer[1:] >= layer[:-1]).all())
    assert layer_by_layer is not relabel  # the two ways of _probe_blocks
    points = torch.rand(5, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    dense = probe_activations(batch, 4, points, layout)
    sparse = probe_activations(batch, 4, points)
    torch.testing.assert_close(dense, sparse, atol=1e-5, rtol=1e-5)
    if family in ("mlp", "siren"):
        assert dense.abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_statistics_of_one_structure_match_the_edge_list_ones(family: str) -> None:
    batch = same_structure(family, 3)
    layout = graph_layout(batch)
    assert layout is not None
    torch.testing.assert_close(layer_statistics(batch, 3, 16, layout),
                               layer_statistics(batch, 3, 16), atol=1e-6, rtol=1e-5)
    shallow = layer_statistics(batch, 3, 2, layout)  # deeper layers share the last slot
    torch.testing.assert_close(shallow, layer_statistics(batch, 3, 2), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", ["siren", "resnet", "transformer"])
@pytest.mark.parametrize("aggregators", [("mean", "max", "std"),
                                         ("sum", "min", "var", "max", "mean")])
def test_recomputing_backward_gives_autograds_gradients(family: str,
                                                        aggregators: tuple[str, ...]) -> None:
    """``_LayerMessages`` (hand-written backward) against autograd through the messages,
    in float64; the resnet and transformer graphs have diagonal (identity) blocks."""
    batch = same_structure(family, 2)
    layout = graph_layout(batch)
    assert layout is not None
    torch.manual_seed(0)
    conv = NGConv(8, 6, aggregators).double().train()
    x = torch.randn(batch.num_nodes, 8, dtype=torch.double, requires_grad=True)
    e = torch.randn(batch.num_edges, 6, dtype=torch.double, requires_grad=True)
    weights = torch.rand(batch.num_nodes, 8, dtype=torch.double)
    grads = {}
    for recompute in (True, False):
        conv.checkpoint_messages = recompute
        x2, e2 = conv(x, batch.edge_index, e, None, layout)
        loss = (x2 * weights).sum() + e2.sin().sum()
        grads[recompute] = torch.autograd.grad(loss, [x, e, *conv.parameters()])
    for a, b in zip(grads[True], grads[False], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def saved_float_sizes(m: GraphMetanet, batch: Batch) -> list[int]:
    """Sizes of the floating tensors autograd keeps for backward in one training forward."""
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point():
            sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m.train()(batch)
    return sizes


def test_training_keeps_no_per_edge_message_for_backward() -> None:
    """No tensor of a block's messages (block edges x hidden floats) is saved: messages and
    FiLM parameters are recomputed in backward. Without recomputation they are kept (the
    test sees them)."""
    m = model(hidden=64)  # wider than anything per-edge but messages (edge width 8)
    batch = same_structure("siren", 4)  # 1,120 edges to 67 nodes
    layout = graph_layout(batch)
    assert layout is not None
    per_edge_messages = max(b.size for b in layout.blocks) * 4 * m.config.hidden
    assert max(saved_float_sizes(m, batch)) < per_edge_messages
    m.set_checkpointing(False)
    assert max(saved_float_sizes(m, batch)) >= per_edge_messages


def test_training_autocast_is_cuda_only() -> None:
    """Mixed precision only on a GPU: the CPU training pass stays float32."""
    import warnings
    from contextlib import nullcontext

    from models.train import autocast

    assert isinstance(autocast(torch.device("cpu")), nullcontext)
    with warnings.catch_warnings():  # "CUDA is not available" where it is not
        warnings.simplefilter("ignore")
        assert isinstance(autocast(torch.device("cuda")), torch.autocast)


@pytest.mark.parametrize("recompute", [True, False])
def test_block_path_runs_under_bfloat16_autocast(recompute: bool) -> None:
    """The CUDA training and --device cuda bench run under autocast; CPU autocast stands in
    (mixed bfloat16/float32 operands reach the block path the same way)."""
    m = model(probes=8)
    m.set_checkpointing(recompute)
    batch = same_structure("siren", 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.train()(batch)
    out.float().sum().backward()
    assert all(p.grad is not None for p in m.convs.parameters())
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(m.eval()(batch)).all()


def test_large_inference_batches_run_in_sub_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above INFERENCE_GRAPHS graphs an inference pass runs in sub-batches (bounded
    memory); the outputs are those of one pass, in order."""
    import models.metanet as metanet

    m = model(probes=8).eval()
    batch = same_structure("siren", 5)
    with torch.no_grad():
        whole = m(batch)
        monkeypatch.setattr(metanet, "INFERENCE_GRAPHS", 2)
        seen: list[int] = []
        m.head.register_forward_hook(lambda mod, inp, out: seen.append(out.shape[0]))
        parts = m(batch)
    assert seen == [2, 2, 1]
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=1e-5)


def test_slice_graphs_is_the_collated_subset() -> None:
    graphs = [graph_of(checkpoint("siren", seed=s)) for s in range(5)]
    for i, g in enumerate(graphs):
        g.y = torch.tensor([i])
    batch = Batch.from_data_list(graphs)
    layout = graph_layout(batch)
    assert layout is not None
    part = layers.slice_graphs(batch, layout, 1, 4)
    want = Batch.from_data_list(graphs[1:4])
    assert part.num_graphs == 3 and part.num_nodes == want.num_nodes
    for key, value in want.items():
        torch.testing.assert_close(part[key], value)


def test_threaded_sub_batches_give_the_single_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference on several CPU threads runs sub-batches of one structure side by side
    (same outputs, in order); a mixed batch only above INFERENCE_GRAPHS, re-collated."""
    import models.metanet as metanet

    m = model(probes=8).eval()
    batch = same_structure("siren", 9)
    monkeypatch.setattr(metanet, "THREAD_GRAPHS", 2)  # 9 graphs -> pieces of 4, 4, 1
    threads = torch.get_num_threads()
    with torch.no_grad():
        torch.set_num_threads(1)
        whole = m(batch)
        torch.set_num_threads(2)
        try:
            split = m(batch)
        finally:
            torch.set_num_threads(threads)
    torch.testing.assert_close(split, whole, atol=1e-6, rtol=1e-5)
    mixed = Batch.from_data_list([graph_of(checkpoint(f)) for f in ("siren", "mlp", "siren")]
                                 * 2)
    monkeypatch.setattr(metanet, "INFERENCE_GRAPHS", 4)  # 6 mixed graphs: re-collated pieces
    with torch.no_grad():
        torch.set_num_threads(1)
        whole = m(mixed)
        torch.set_num_threads(2)
        try:
            split = m(mixed)
        finally:
            torch.set_num_threads(threads)
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=1e-5)
