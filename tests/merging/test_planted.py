"""Planted permutations: b = π(a) must be aligned back exactly, for every family."""

import _merging_models as M
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import graphs
import merging
from merging.weight_matching import matched_views

FAMILIES = ("mlp", "cnn", "cnn_bn", "resnet", "transformer")


def _planted(family: str, size: int, seed: int):
    model, x = M.family(family, size, seed)
    a = M.checkpoint(model, x)
    nmap = graphs.neuron_map(a.architecture)
    q = graphs.sample_permutations(nmap, torch.Generator().manual_seed(seed + 1000))
    return a, graphs.apply_permutation(a, q), q, x


def _assert_recovered(a, b, q, result):
    for gid, p in q.items():  # b[i] = a[q[i]], so the alignment is q's inverse
        assert torch.equal(result.perms[gid], torch.argsort(p)), gid
    aligned = result.apply(b)
    for name, t in a.tensors.items():
        assert torch.equal(aligned.tensors[name], t), name


def _outputs(ckpt, x):
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors)
    with torch.no_grad():
        return module(x)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=4, deadline=None)
@given(size=st.integers(0, 3), seed=st.integers(0, 10_000))
def test_weight_matching_recovers_planted_permutation(family, size, seed):
    a, b, q, x = _planted(family, size, seed)
    result = merging.weight_matching(a, b, seed=seed)
    _assert_recovered(a, b, q, result)
    assert result.sweeps <= 4
    assert result.objective_after >= result.objective_before
    views = graphs.neuron_map(a.architecture).split(a.tensors)
    best = sum(float((views[v].double() ** 2).sum()) for v in matched_views(a))
    assert result.objective_after == pytest.approx(best, rel=1e-6)  # <A, A>: the maximum
    torch.testing.assert_close(_outputs(result.apply(b), x), _outputs(b, x))


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=2, deadline=None)
@given(size=st.integers(0, 3), seed=st.integers(0, 10_000))
def test_activation_matching_recovers_planted_permutation(family, size, seed):
    a, b, q, x = _planted(family, size, seed)
    data = torch.randn(64, *x.shape[1:], generator=torch.Generator().manual_seed(seed))
    result = merging.activation_matching(a, b, data)
    _assert_recovered(a, b, q, result)
    torch.testing.assert_close(_outputs(result.apply(b), x), _outputs(b, x))


def test_attention_heads_move_as_blocks():
    """With 4 heads the head order itself must be recovered, shared by :qk, :vo and heads."""
    a, b, q, _ = _planted("transformer", 2, 3)
    nmap = graphs.neuron_map(a.architecture)
    assert nmap.groups["attn:heads"].size == 4
    result = merging.weight_matching(a, b)
    graphs.check_permutations(nmap, result.perms)
    assert torch.equal(result.perms["attn:heads"], torch.argsort(q["attn:heads"]))


def test_identical_networks_need_no_permutation():
    model, x = M.family("resnet", 1, 5)
    a = M.checkpoint(model, x)
    result = merging.weight_matching(a, a)
    assert result.sweeps == 1
    assert all(torch.equal(p, torch.arange(len(p))) for p in result.perms.values())


def test_mismatched_architectures_are_refused():
    a = M.checkpoint(*M.family("mlp", 0, 0))
    b = M.checkpoint(*M.family("mlp", 1, 0))
    with pytest.raises(ValueError, match="architecture"):
        merging.weight_matching(a, b)
