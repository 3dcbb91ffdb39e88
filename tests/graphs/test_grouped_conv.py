"""Grouped convolutions (ResNeXt ``groups=32``, ``groups=2`` with 8 -> 16 channels): the
symmetry the neuron map derives from the op's rule, and the block-sparse parameter graph.
The family tests (round trips, function kept, planted permutation, metanetwork) run them
through ``test_families.py`` (``resnext``, ``grouped_conv``)."""

from __future__ import annotations

import pytest
import torch
from _families import build
from torch import nn

import graphs
import merging


def _ckpt(model: nn.Module, x: torch.Tensor) -> graphs.Checkpoint:
    return graphs.from_module(model.eval(), x)


def _run(ckpt: graphs.Checkpoint, x: torch.Tensor) -> torch.Tensor:
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors, strict=True)
    with torch.no_grad():
        return module(x)


def test_blocks_of_input_and_output_share_one_order() -> None:
    model, x = build("grouped_conv", 0)
    nmap = graphs.neuron_map(_ckpt(model, x).architecture)
    stem, out1, out2 = (nmap.axes[w][0] for w in ("stem.weight", "conv1.weight", "conv2.weight"))
    assert nmap.axes["conv1.weight"] == (out1, stem, None, None)  # block-diagonal view
    assert nmap.groups[stem].blocks == (2, 4) and nmap.groups[out1].blocks == (2, 8)
    order = nmap.groups[out1].heads
    # conv2 reads conv1's 2 blocks with 2 groups of its own: one block order for all three
    assert nmap.groups[stem].heads == order == nmap.groups[out2].heads
    assert nmap.groups[order].size == 2 and nmap.groups[order].permutable


def test_a_permutation_that_breaks_blocks_is_refused() -> None:
    model, x = build("grouped_conv", 0)
    nmap = graphs.neuron_map(_ckpt(model, x).architecture)
    stem = nmap.axes["stem.weight"][0]
    mixed = torch.tensor([0, 4, 2, 3, 1, 5, 6, 7])  # channel 1 and 4 are in other blocks
    with pytest.raises(graphs.PermutationError, match="mixes"):
        graphs.check_permutations(nmap, {stem: mixed})


def test_each_output_channel_reads_only_its_groups_inputs() -> None:
    model, x = build("grouped_conv", 0)
    ckpt = _ckpt(model, x)
    g = graphs.to_graph(ckpt)
    nmap = graphs.neuron_map(ckpt.architecture)
    stem, out1 = nmap.axes["conv1.weight"][1], nmap.axes["conv1.weight"][0]
    ids = {gid: i for i, gid in enumerate(g.group_ids)}
    conv_edges = (g.node_group[g.edge_index[0]] == ids[stem]) & (
        g.node_group[g.edge_index[1]] == ids[out1]
    )
    src, dst = g.edge_index[:, conv_edges]
    assert src.numel() == 16 * 4  # out × in/groups, not out × in
    src_base = g.node_group.tolist().index(ids[stem])
    dst_base = g.node_group.tolist().index(ids[out1])
    assert torch.equal((src - src_base) // 4, (dst - dst_base) // 8)  # block i -> block i
    # the edge kernels are the weight's, in row-major order
    w = ckpt.tensors["conv1.weight"].reshape(16 * 4, 9)
    torch.testing.assert_close(g.edge_attr[conv_edges], w, atol=0, rtol=0)


def test_from_graph_writes_edited_grouped_weights_back() -> None:
    model, x = build("resnext", 0)
    ckpt = _ckpt(model, x)
    g = graphs.to_graph(ckpt)
    g.edge_attr = g.edge_attr * 2
    back = graphs.from_graph(g, ckpt)
    for name in ("layer1.0.conv2.weight", "layer1.1.conv1.weight"):
        torch.testing.assert_close(back.tensors[name], ckpt.tensors[name] * 2)


def test_grouped_conv_on_the_input_keeps_its_block_order() -> None:
    """The input channels are fixed, so the block order is fixed; channels of the output
    blocks still permute within their block."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.Conv2d(8, 6, 1), nn.Flatten(), nn.LazyLinear(3)
    )
    x = torch.randn(2, 4, 5, 5)
    model(x)
    ckpt = _ckpt(model, x)
    nmap = graphs.neuron_map(ckpt.architecture)
    out = nmap.axes["0.weight"][0]
    assert not nmap.groups[nmap.groups[out].heads].permutable
    for seed in range(3):
        p = graphs.sample_permutations(nmap, torch.Generator().manual_seed(seed))
        assert torch.equal(p[out].view(2, 4) // 4, torch.tensor([[0] * 4, [1] * 4]))
        permuted = graphs.apply_permutation(ckpt, p)
        torch.testing.assert_close(_run(permuted, x), model(x).detach(), atol=1e-5, rtol=1e-4)


def test_two_block_counts_on_one_channel_set_are_refused() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1, groups=2), nn.Conv2d(8, 8, 1, groups=4)
    )
    with pytest.raises(graphs.ArchitectureError, match="split into blocks in two ways"):
        graphs.describe(model, torch.randn(1, 3, 4, 4))


def test_ot_fusion_refuses_block_structured_neurons() -> None:
    """A transport plan would mix channels of different blocks (the fused weight would lose
    its off-block mass): OT fusion says so and names the method that fits."""
    model, x = build("resnext", 0)
    arch = _ckpt(model, x).architecture
    with pytest.raises(merging.UnsupportedMergeError, match=r"block-structured.*'weight'"):
        merging.check_method("ot", [arch, arch], has_data=False)
