"""Learned queries (MNTD readout): the fast chain pass equals the general probe pass, the
features are invariant to hidden-neuron permutations, and the query images learn."""

import pytest
import torch
from _nets import checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch

import graphs
from models import MetanetConfig
from models.data import graph_of
from models.metanet import GraphMetanet
from models.probes import probe_activations
from models.queries import QueryReadout, chain_activations, digit_images, output_logits


def batch_of(ckpts: list[graphs.Checkpoint]) -> Batch:
    return Batch.from_data_list([graph_of(c) for c in ckpts])


def test_chain_pass_matches_the_general_probe_pass_and_the_module() -> None:
    """Mixed conv chains (two structures, one repeated) and MLPs in one batch: the output
    neurons hold each network's logits on the images, as the module computes them."""
    ckpts = [checkpoint("cnn", seed=1), checkpoint("mlp", seed=2),
             checkpoint("cnn", seed=3, width=6), checkpoint("cnn", seed=4)]
    batch = batch_of(ckpts)
    images = torch.rand(5, 64, generator=torch.Generator().manual_seed(0))
    fast = chain_activations(batch, len(ckpts), images)
    assert fast is not None
    general = probe_activations(batch, len(ckpts), images)
    a, present = output_logits(batch, len(ckpts), fast, 10)
    b, _ = output_logits(batch, len(ckpts), general, 10)
    assert present.all()
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for i, c in enumerate(ckpts):
        module = graphs.build_module(c.architecture)
        module.load_state_dict(c.tensors)
        with torch.no_grad():
            expected = module.eval()(images.view(5, 1, 8, 8))
        torch.testing.assert_close(a[i], expected.t(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["cnn_bn", "resnet", "siren"])
def test_chain_pass_declines_what_is_not_a_plain_chain_on_images(family: str) -> None:
    batch = batch_of([checkpoint("cnn"), checkpoint(family)])
    assert chain_activations(batch, 2, torch.rand(3, 64)) is None


def test_unreadable_graphs_get_zero_query_features() -> None:
    readout = QueryReadout(4, 8, 10, 8)
    batch = batch_of([checkpoint("cnn"), checkpoint("resnet"), checkpoint("transformer")])
    out = readout(batch, 3)
    assert out[0].abs().sum() > 0 and not out[1:].any() and torch.isfinite(out).all()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), family=st.sampled_from(["cnn", "mlp"]),
       by_class=st.booleans())
def test_query_features_are_invariant_to_hidden_permutations(seed: int, family: str,
                                                             by_class: bool) -> None:
    ckpt = checkpoint(family, seed=seed % 50, width=3 + seed % 4)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    readout = QueryReadout(6, 8, 10, 8, by_class=by_class)
    with torch.no_grad():
        a = readout(batch_of([ckpt]), 1)
        b = readout(batch_of([permuted]), 1)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_queries_start_as_digits_and_learn() -> None:
    cfg = MetanetConfig(task="classification", num_outputs=2, hidden=8, edge_hidden=4,
                        layers=1, fourier=2, queries=4)
    model = GraphMetanet(cfg)
    graph_list = [graph_of(checkpoint("cnn", seed=s)) for s in range(3)]
    model.fit_normalization(graph_list)
    images = model.query_readout.images()
    assert ((images >= 0) & (images <= 1)).all()
    # each query starts as one sklearn digit (clamped to [0.02, 0.98] to stay invertible)
    digits = digit_images(2000).clamp(0.02, 0.98)  # all 1,797
    assert all(bool(((digits - q).abs().max(1).values < 1e-4).any()) for q in images)
    out = model(Batch.from_data_list(graph_list))
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 0])).backward()
    grad = model.query_readout.query_logits.grad
    assert grad is not None and grad.abs().sum() > 0


def test_configs_without_queries_keep_their_state_dict() -> None:
    """Cards written before the option (no ``queries`` key) rebuild the same module."""
    cfg = MetanetConfig(task="classification", num_outputs=2, hidden=8, edge_hidden=4,
                        layers=1, fourier=2)
    keys = set(GraphMetanet(cfg).state_dict())
    assert not any(k.startswith("query_readout") for k in keys)
    d = cfg.to_dict()
    del d["queries"], d["query_side"]
    assert set(GraphMetanet(MetanetConfig.from_dict(d)).state_dict()) == keys


def test_class_readout_tells_which_class_answered() -> None:
    """Swapping two output neurons (the network now calls a 3 what it called a 5) leaves the
    class-symmetric features as they were and changes the class-by-class ones."""
    ckpt = checkpoint("cnn", seed=7)
    swapped = graphs.Checkpoint(dict(ckpt.tensors), ckpt.architecture)
    last = [k for k in ckpt.tensors if k.endswith("weight")][-1]
    for key in (last, last.replace("weight", "bias")):
        t = ckpt.tensors[key].clone()
        t[[3, 5]] = t[[5, 3]]
        swapped.tensors[key] = t
    feats = {}
    for by_class in (False, True):
        torch.manual_seed(0)
        readout = QueryReadout(6, 8, 10, 8, by_class=by_class)
        readout.init_images(digit_images(6, train_only=True))
        with torch.no_grad():
            feats[by_class] = (readout(batch_of([ckpt]), 1), readout(batch_of([swapped]), 1))
    torch.testing.assert_close(*feats[False], atol=1e-5, rtol=1e-5)
    assert (feats[True][0] - feats[True][1]).abs().max() > 1e-3


def test_train_only_queries_never_start_from_a_test_digit() -> None:
    """``train_only`` reproduces the zoos' fixed digits split (models may not import zoo)."""
    from zoo.data import digits_split

    split = digits_split()
    train = digit_images(5000, train_only=True)
    assert len(train) == len(split.x_train)
    key = {tuple(r.tolist()) for r in split.x_train.flatten(1)}
    assert all(tuple(r.tolist()) in key for r in train)
    test = {tuple(r.tolist()) for r in split.x_test.flatten(1)}
    assert not any(tuple(r.tolist()) in test for r in train)
