"""Permutation symmetry: the neuron map, sampled permutations and their validation."""

from __future__ import annotations

import pytest
import torch
from _graph_models import FAMILIES, family
from hypothesis import given, settings
from hypothesis import strategies as st

import graphs
from graphs import PermutationError


def _outputs(ckpt: graphs.Checkpoint, x: torch.Tensor) -> torch.Tensor:
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors, strict=True)
    with torch.no_grad():
        return module(x)


@pytest.mark.parametrize("name", FAMILIES)
@settings(max_examples=20, deadline=None)
@given(size=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_random_permutation_preserves_function(name: str, size: int, seed: int) -> None:
    model, x = family(name, size, seed)
    ckpt = graphs.from_module(model, x)
    nmap = graphs.neuron_map(ckpt.architecture)
    perms = graphs.sample_permutations(nmap, torch.Generator().manual_seed(seed))
    permuted = graphs.apply_permutation(ckpt, perms)
    with torch.no_grad():
        expected = model(x)
    assert (_outputs(permuted, x) - expected).abs().max() <= 1e-5
    moved = any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    changed = any(not torch.equal(ckpt.tensors[k], permuted.tensors[k]) for k in ckpt.tensors)
    assert changed == moved


def test_cnn_neuron_map_axes() -> None:
    model, x = family("cnn_bn", 1, 0)
    nmap = graphs.neuron_map(graphs.describe(model, x))
    assert nmap.axes["0.weight"] == ("0", "input_1", None, None)
    assert nmap.axes["1.running_var"] == ("0",)
    assert nmap.axes["1.num_batches_tracked"] == ()
    assert nmap.axes["3.weight"] == ("3", "0", None, None)
    assert nmap.axes["8.weight"] == ("8", "3")
    assert nmap.groups["8"].kind == "output" and not nmap.groups["8"].permutable
    assert nmap.groups["input_1"].kind == "input"
    assert ("1.running_mean", 0) in nmap.tensor_axes_of("0")


def test_flatten_keeps_pixel_blocks_together() -> None:
    model, x = family("cnn", 0, 0)  # flatten of 3 channels × 2×2 pixels into the linear
    nmap = graphs.neuron_map(graphs.describe(model, x))
    assert nmap.axes["7.weight@unflatten"] == ("7", "3", None)
    assert nmap.views["7.weight@unflatten"].shape == (5, 3, 4)
    assert "7.weight" not in nmap.axes


def test_resnet_stream_is_one_group() -> None:
    model, x = family("resnet", 0, 0)
    nmap = graphs.neuron_map(graphs.describe(model, x))
    stream = nmap.axes["conv1.weight"][0]
    assert nmap.axes["layer1.0.bn2.weight"] == (stream,)
    assert nmap.axes["layer2.0.conv1.weight"][1] == stream
    down = nmap.axes["layer2.0.downsample.0.weight"][0]
    assert nmap.axes["layer2.0.bn2.bias"] == (down,)
    assert nmap.axes["fc.weight"][1] == down


def test_attention_groups_are_structured() -> None:
    model, x = family("transformer", 1, 0)  # 8 dims, 2 heads
    nmap = graphs.neuron_map(graphs.describe(model, x))
    qk, vo, heads = nmap.groups["attn:qk"], nmap.groups["attn:vo"], nmap.groups["attn:heads"]
    assert qk.blocks == vo.blocks == (2, 4) and qk.heads == vo.heads == "attn:heads"
    assert heads.size == 2 and heads.tensors == ()
    assert nmap.axes["attn.in_proj_weight#q"] == ("attn:qk", "embed")
    assert nmap.axes["attn.in_proj_weight#k"] == ("attn:qk", "embed")
    assert nmap.axes["attn.in_proj_weight#v"] == ("attn:vo", "embed")
    assert nmap.axes["attn.out_proj.weight"] == ("embed", "attn:vo")
    assert nmap.axes["ln1.weight"] == ("embed",)
    views = nmap.split(graphs.from_module(model, x).tensors)
    assert views["attn.in_proj_weight#k"].shape == (8, 8)
    joined = nmap.join(views)
    assert torch.equal(joined["attn.in_proj_weight"], model.attn.in_proj_weight)


def test_sampled_attention_permutations_respect_heads() -> None:
    model, x = family("transformer", 1, 0)
    nmap = graphs.neuron_map(graphs.describe(model, x))
    for seed in range(5):
        perms = graphs.sample_permutations(nmap, torch.Generator().manual_seed(seed))
        graphs.check_permutations(nmap, perms)
        assert set(perms) == {g.id for g in nmap.permutable_groups()}


def _transformer_ckpt() -> tuple[graphs.Checkpoint, torch.Tensor]:
    model, x = family("transformer", 1, 0)
    return graphs.from_module(model, x), x


def test_head_swap_preserves_function() -> None:
    ckpt, x = _transformer_ckpt()
    swap = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])
    perms = {"attn:qk": swap, "attn:vo": swap, "attn:heads": torch.tensor([1, 0])}
    permuted = graphs.apply_permutation(ckpt, perms)
    assert torch.allclose(_outputs(permuted, x), _outputs(ckpt, x), atol=1e-5)


@pytest.mark.parametrize(
    ("perms", "message"),
    [
        ({"attn:qk": torch.tensor([1, 0, 2, 3, 4, 5, 6, 7])}, None),  # within-head: fine
        ({"attn:qk": torch.tensor([4, 1, 2, 3, 0, 5, 6, 7])}, "mixes dims"),
        ({"attn:qk": torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])}, "head order"),
        ({"attn:heads": torch.tensor([1, 0])}, "head order"),
        ({"embed": torch.tensor([0, 1, 2])}, "shape"),
        ({"embed": torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])}, "not a permutation"),
        ({"head": torch.tensor([1, 0])}, "fixed output"),
        ({"nope": torch.tensor([0])}, "unknown neuron group"),
    ],
)
def test_permutation_validation(perms: dict[str, torch.Tensor], message: str | None) -> None:
    ckpt, x = _transformer_ckpt()
    if message is None:
        permuted = graphs.apply_permutation(ckpt, perms)
        assert torch.allclose(_outputs(permuted, x), _outputs(ckpt, x), atol=1e-5)
    else:
        with pytest.raises(PermutationError, match=message):
            graphs.apply_permutation(ckpt, perms)


def test_apply_permutation_convention() -> None:
    model, x = family("mlp", 1, 1)  # widths 6-4-5-4
    ckpt = graphs.from_module(model, x)
    p = torch.tensor([2, 0, 3, 1])
    out = graphs.apply_permutation(ckpt, {"0": p})
    assert torch.equal(out.tensors["0.weight"], ckpt.tensors["0.weight"][p])
    assert torch.equal(out.tensors["0.bias"], ckpt.tensors["0.bias"][p])
    assert torch.equal(out.tensors["2.weight"], ckpt.tensors["2.weight"][:, p])
    assert torch.equal(out.tensors["4.weight"], ckpt.tensors["4.weight"])
    assert list(out.tensors) == list(ckpt.tensors)
