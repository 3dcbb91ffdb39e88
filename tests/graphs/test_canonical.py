"""Canonical form under scale (ReLU) and sign (tanh, sine) symmetries: property tests."""

import _merging_models as M
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import graphs
from graphs.canonical import canonical_groups, canonicalize, random_rescaling


def _odd(act: str, seed: int):
    torch.manual_seed(seed)
    a = nn.Tanh() if act == "tanh" else graphs.Sine(3.0)
    model = nn.Sequential(nn.Linear(3, 6), a, nn.Linear(6, 5), a, nn.Linear(5, 2))
    return model, torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))


def _leaky_cnn(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
                          nn.Conv2d(4, 5, 3), nn.LeakyReLU(0.1), nn.Flatten(),
                          nn.Linear(5 * 2 * 2, 3))
    return model, torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(seed))


def _make(family: str, size: int, seed: int):
    if family in ("tanh", "sine"):
        model, x = _odd(family, seed)
    elif family == "leaky_cnn":
        model, x = _leaky_cnn(seed)
    else:
        model, x = M.family(family, size, seed)
    return M.checkpoint(model, x), x


def _out(ckpt, x):
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors)
    with torch.no_grad():
        return module(x)


def _close(c1, c2):
    for name, t in c1.tensors.items():
        torch.testing.assert_close(c2.tensors[name], t, rtol=1e-4, atol=1e-5, msg=name)


FAMILIES = ("mlp", "cnn", "cnn_bn", "resnet", "transformer", "tanh", "sine", "leaky_cnn")


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=5, deadline=None)
@given(size=st.integers(0, 3), seed=st.integers(0, 10_000))
def test_canonical_form_keeps_the_function_and_is_idempotent(family, size, seed):
    c, x = _make(family, size, seed)
    canon = canonicalize(c)
    torch.testing.assert_close(_out(canon, x), _out(c, x), rtol=1e-4, atol=1e-5)
    _close(canon, canonicalize(canon))
    assert canon.architecture is c.architecture and canon.metadata == c.metadata


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=5, deadline=None)
@given(size=st.integers(0, 3), seed=st.integers(0, 10_000))
def test_rescaled_and_sign_flipped_copies_share_one_canonical_form(family, size, seed):
    c, x = _make(family, size, seed)
    copy = random_rescaling(c, torch.Generator().manual_seed(seed + 1))
    torch.testing.assert_close(_out(copy, x), _out(c, x), rtol=1e-4, atol=1e-5)
    if canonical_groups(c.architecture):
        # all-positive signs (2^-11 for the odd nets) draw a no-op copy: not a test of
        # anything; a rescaling that never moves anything makes hypothesis fail unsatisfied
        assume(any(not torch.allclose(copy.tensors[k], v) for k, v in c.tensors.items()))
    _close(canonicalize(c), canonicalize(copy))


@pytest.mark.parametrize("family", ("mlp", "cnn_bn", "tanh"))
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_canonical_form_commutes_with_permutations(family, seed):
    c, _ = _make(family, 1, seed)
    nmap = graphs.neuron_map(c.architecture)
    perms = graphs.sample_permutations(nmap, torch.Generator().manual_seed(seed))
    _close(graphs.apply_permutation(canonicalize(c), perms),
           canonicalize(graphs.apply_permutation(c, perms)))


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_scale_invariant_input_gives_one_parameter_graph_per_orbit(seed):
    c, _ = _make("cnn", 1, seed)
    copy = random_rescaling(c, torch.Generator().manual_seed(seed))
    g1 = graphs.to_graph(graphs.scale_invariant_input(c))
    g2 = graphs.to_graph(graphs.scale_invariant_input(copy))
    assert not torch.allclose(graphs.to_graph(c).edge_attr, graphs.to_graph(copy).edge_attr)
    torch.testing.assert_close(g1.x, g2.x, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g1.edge_attr, g2.edge_attr, rtol=1e-4, atol=1e-5)


def test_which_groups_have_which_symmetry():
    mlp, _ = _make("mlp", 1, 0)
    assert {c.group: set(c.symmetries) for c in canonical_groups(mlp.architecture)} == {
        "0": {"scale"}, "2": {"scale"}}
    tanh, _ = _make("tanh", 0, 0)
    assert all(c.symmetries == {"sign"} for c in canonical_groups(tanh.architecture))
    bn, _ = _make("cnn_bn", 1, 0)  # the BatchNorm's affine parameters carry the scale
    assert [c.producer for c in canonical_groups(bn.architecture)] == ["1", "4"]
    resnet, _ = _make("resnet", 1, 0)  # the residual stream (an add) has no scale symmetry
    assert all(".conv1" in c.group for c in canonical_groups(resnet.architecture))
    gelu, _ = _make("transformer", 1, 0)
    assert canonical_groups(gelu.architecture) == []


def test_canonical_neurons_have_unit_incoming_norm():
    c, _ = _make("mlp", 2, 3)
    canon = canonicalize(c)
    for name in ("0", "2"):
        w, b = canon.tensors[f"{name}.weight"], canon.tensors[f"{name}.bias"]
        norms = torch.cat([b[:, None], w], 1).norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))


def test_dead_neurons_are_left_alone():
    c, x = _make("mlp", 1, 0)
    c.tensors["0.weight"][0] = 0
    c.tensors["0.bias"][0] = 0
    canon = canonicalize(c)
    assert all(torch.isfinite(t).all() for t in canon.tensors.values())
    assert not canon.tensors["0.weight"][0].any() and canon.tensors["0.bias"][0] == 0
    torch.testing.assert_close(_out(canon, x), _out(c, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ("mlp", "cnn_bn", "tanh"))
def test_metanetwork_output_is_invariant_with_the_scale_invariant_input(family):
    """The acceptance check of the scale-invariant option: same prediction for a rescaled /
    sign-flipped copy when the metanetwork reads ``scale_invariant_input``."""
    from torch_geometric.data import Batch

    from models import GraphMetanet, MetanetConfig
    from models.data import graph_of

    c, _ = _make(family, 1, 0)
    copy = random_rescaling(c, torch.Generator().manual_seed(3), low=0.1, high=10.0)
    torch.manual_seed(0)
    model = GraphMetanet(MetanetConfig(hidden=16, edge_hidden=8, layers=2, fourier=4,
                                       layer_stats=True))
    model.fit_normalization([graph_of(x) for x in (c, copy, graphs.scale_invariant_input(c))])
    model.eval()
    with torch.no_grad():
        plain = model(Batch.from_data_list([graph_of(c), graph_of(copy)]))
        inv = model(Batch.from_data_list([graph_of(graphs.scale_invariant_input(c)),
                                          graph_of(graphs.scale_invariant_input(copy))]))
    assert not torch.allclose(plain[0], plain[1], atol=1e-4)
    torch.testing.assert_close(inv[0], inv[1], atol=1e-4, rtol=0)
