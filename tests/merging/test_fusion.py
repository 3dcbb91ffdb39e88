"""OT fusion (different widths) and CLAFusion (different depths) on small networks."""

import _merging_models as M
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import graphs
import merging
from merging.clafusion import check_chain


def _out(ckpt, x):
    module = graphs.build_module(ckpt.architecture)
    module.load_state_dict(ckpt.tensors)
    with torch.no_grad():
        return module(x)


def _assert_same_tensors(c1, c2, atol=1e-6, stats=True):
    assert c1.architecture == c2.architecture
    for name, t in c1.tensors.items():
        if not stats and ("running" in name or "num_batches" in name):
            continue  # BatchNorm statistics: reset on the data
        torch.testing.assert_close(c2.tensors[name], t, rtol=1e-5, atol=atol, msg=name)


def _widened(model: nn.Sequential) -> nn.Sequential:
    """Net2Net: every hidden neuron duplicated, its outgoing weights halved (same function)."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    layers: list[nn.Module] = []
    for i, lin in enumerate(linears):
        w, b = lin.weight.detach(), lin.bias.detach()
        if i > 0:
            w = torch.cat([w, w], 1) / 2
        if i < len(linears) - 1:
            w, b = torch.cat([w, w], 0), torch.cat([b, b])
        new = nn.Linear(w.shape[1], w.shape[0])
        new.weight.data.copy_(w)
        new.bias.data.copy_(b)
        layers.append(new)
        if i < len(linears) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# --- OT fusion ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", ("mlp", "cnn", "cnn_bn", "resnet"))
@pytest.mark.parametrize("mode", ("weights", "activations"))
@settings(max_examples=3, deadline=None)
@given(size=st.integers(0, 3), seed=st.integers(0, 10_000))
def test_exact_ot_recovers_planted_permutations(family, mode, size, seed):
    model, x = M.family(family, size, seed)
    a = M.checkpoint(model, x)
    q = graphs.sample_permutations(graphs.neuron_map(a.architecture),
                                   torch.Generator().manual_seed(seed))
    b = graphs.apply_permutation(a, q)
    data = torch.randn(64, *x.shape[1:], generator=torch.Generator().manual_seed(seed))
    result = merging.ot_fusion([a, b], mode=mode, data=data if mode == "activations" else None)
    for gid, p in q.items():  # the plan is the permutation matrix, scaled by 1/n
        n = len(p)
        expected = torch.zeros(n, n, dtype=torch.float64)
        expected[p, torch.arange(n)] = 1 / n
        torch.testing.assert_close(result.plans[1][gid], expected, msg=gid)
    _assert_same_tensors(a, result.aligned[1])
    _assert_same_tensors(a, result.checkpoint, stats=mode == "weights")


def test_sinkhorn_plans_are_soft_but_close_to_the_permutation():
    model, x = M.family("mlp", 3, 0)
    a = M.checkpoint(model, x)
    b = graphs.random_permutation(a, torch.Generator().manual_seed(1))
    result = merging.ot_fusion([a, b], solver="sinkhorn", reg=0.005)
    for plan in result.plans[1].values():
        n = plan.shape[0]
        torch.testing.assert_close(plan.sum(0), torch.full((n,), 1 / n, dtype=torch.float64))
        assert (plan > 0).all()  # entropic: every entry positive
    torch.testing.assert_close(_out(result.checkpoint, x), _out(a, x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("target", (0, 1))
def test_a_network_and_its_widened_copy_fuse_to_the_same_function(target):
    torch.manual_seed(0)
    narrow = M.mlp([6, 5, 4, 3])
    x = torch.randn(16, 6)
    a, b = M.checkpoint(narrow, x), M.checkpoint(_widened(narrow), x)
    torch.testing.assert_close(_out(b, x), _out(a, x))
    result = merging.ot_fusion([a, b], target=target)
    want = (a, b)[target]
    assert result.checkpoint.architecture == want.architecture
    assert {k: v.shape for k, v in result.checkpoint.tensors.items()} == \
        {k: v.shape for k, v in want.tensors.items()}
    for carried in result.aligned:  # both carried into the target's widths, function kept
        torch.testing.assert_close(_out(carried, x), _out(a, x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_out(result.checkpoint, x), _out(a, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"solver": "sinkhorn"}, {"masses": "importance"},
                                     {"fan_in": "average"}, {"mode": "activations"}])
def test_trained_networks_of_different_widths_fuse_into_a_working_network(options,
                                                                          digits_flat):
    train, test = digits_flat
    a = M.checkpoint(M.train(M.mlp([64, 32, 32, 10]), train, seed=1, steps=300), test[0][:2])
    b = M.checkpoint(M.train(M.mlp([64, 64, 48, 10]), train, seed=2, steps=300), test[0][:2])
    if options.get("mode") == "activations":
        options = {**options, "data": train}
    result = merging.ot_fusion([a, b], **options)
    assert result.checkpoint.architecture == a.architecture
    module = graphs.build_module(a.architecture)
    module.load_state_dict(result.checkpoint.tensors)
    _, acc = merging.evaluate(module, test)
    assert acc > 0.5  # ten classes: far above chance without any training
    tuned = result.finetune(train, merging.FinetuneRecipe(steps=100, lr=1e-3))
    module.load_state_dict(tuned.tensors)
    assert merging.evaluate(module, test)[1] > 0.85


def test_three_networks_fuse_with_weights(digits_flat):
    model, x = M.family("mlp", 2, 0)
    a = M.checkpoint(model, x)
    copies = [graphs.random_permutation(a, torch.Generator().manual_seed(s)) for s in (1, 2)]
    result = merging.fuse([a, *copies], method="ot", weights=[2, 1, 1])
    assert result.weights == [0.5, 0.25, 0.25]
    _assert_same_tensors(a, result.checkpoint)
    record = merging.lineage(result.checkpoint)
    assert record["method"] == "ot" and record["lam"] == [0.5, 0.25, 0.25]


def test_batchnorm_statistics_are_reset_with_data():
    model, x = M.family("cnn_bn", 1, 0)
    a = M.checkpoint(model, x)
    b = graphs.random_permutation(a, torch.Generator().manual_seed(0))
    assert merging.ot_fusion([a, b]).bn_stats == "stale"
    data = torch.randn(32, *x.shape[1:])
    assert merging.ot_fusion([a, b], data=data).bn_stats == "reset"


def test_ot_fusion_refuses_what_it_cannot_fuse():
    t = M.checkpoint(*M.family("transformer", 1, 0))
    with pytest.raises(merging.UnsupportedMergeError, match="attention"):
        merging.ot_fusion([t, t])
    shallow = M.checkpoint(M.mlp([6, 5, 3]), torch.randn(2, 6))
    deep = M.checkpoint(M.mlp([6, 5, 5, 3]), torch.randn(2, 6))
    with pytest.raises(merging.UnsupportedMergeError, match="clafusion"):
        merging.ot_fusion([shallow, deep])
    other_out = M.checkpoint(M.mlp([6, 5, 4]), torch.randn(2, 6))
    with pytest.raises(merging.UnsupportedMergeError):
        merging.ot_fusion([shallow, other_out])
    mlp, cnn = M.checkpoint(*M.family("mlp", 0, 0)), M.checkpoint(*M.family("cnn", 0, 0))
    with pytest.raises(merging.UnsupportedMergeError):
        merging.ot_fusion([mlp, cnn])
    with pytest.raises(merging.MergeInputError, match="data"):
        merging.ot_fusion([mlp, mlp], mode="activations")
    with pytest.raises(merging.MergeInputError):
        merging.ot_fusion([mlp])
    with pytest.raises(merging.MergeInputError):
        merging.ot_fusion([mlp, mlp], solver="hungarian")


# --- CLAFusion ----------------------------------------------------------------------------


def test_layer_alignment_is_the_cheapest_increasing_map():
    cost = np.array([[0.0, 5.0, 5.0, 5.0, 5.0],
                     [5.0, 5.0, 5.0, 0.0, 1.0]])
    assert merging.layer_alignment(cost) == [0, 3]
    cost = np.array([[9.0, 0.0, 5.0], [5.0, 0.0, 5.0]])  # the first layers always pair up
    assert merging.layer_alignment(cost) == [0, 1]
    rng = np.random.default_rng(0)
    for _ in range(20):  # against brute force
        c = rng.random((3, 6))
        from itertools import combinations
        best = min((c[0, 0] + c[1, i] + c[2, k], [0, i, k])
                   for i, k in combinations(range(1, 6), 2))
        assert merging.layer_alignment(c) == best[1]


def test_balanced_networks_keep_their_function():
    torch.manual_seed(0)
    shallow, deep = M.mlp([6, 7, 5, 3]), M.mlp([6, 8, 8, 9, 8, 3])
    x = torch.randn(32, 6) * 3  # negative inputs too: no identity layer may act on them
    a, b = M.checkpoint(shallow, x), M.checkpoint(deep, x)
    result = merging.clafusion([a, b], data=x)
    assert len(result.mappings[0]) == 2 and result.mappings[1] == [0, 1, 2, 3]
    torch.testing.assert_close(_out(result.balanced[0], x), _out(a, x))
    torch.testing.assert_close(_out(result.balanced[1], x), _out(b, x))
    fused = result.checkpoint
    widths = [fused.tensors[f"fc{i}.weight"].shape[0] for i in range(5)]
    # the target's own widths; its identity layers keep the width before them
    assert widths[0] == 7 and widths[-1] == 3 and set(widths[1:4]) <= {7, 5}
    assert torch.isfinite(_out(fused, x)).all()
    assert merging.lineage(fused) is None  # lineage is written by merging.fuse


def test_clafusion_of_a_3_and_a_5_layer_mlp_works(digits_flat):
    train, test = digits_flat
    a = M.checkpoint(M.train(M.mlp([64, 48, 48, 10]), train, seed=1, steps=300), test[0][:2])
    b = M.checkpoint(M.train(M.mlp([64, 64, 64, 64, 64, 10]), train, seed=2, steps=300),
                     test[0][:2])
    result = merging.fuse([a, b], method="clafusion", data=train)
    module = graphs.build_module(result.checkpoint.architecture)
    module.load_state_dict(result.checkpoint.tensors)
    assert merging.evaluate(module, test)[1] > 0.6
    tuned = result.fusion.finetune(train, merging.FinetuneRecipe(steps=150))
    module.load_state_dict(tuned.tensors)
    assert merging.evaluate(module, test)[1] > 0.85
    record = merging.lineage(result.checkpoint)
    assert record["method"] == "clafusion" and len(record["layer_mappings"]) == 2


def test_clafusion_refuses_what_it_cannot_balance():
    cnn = M.checkpoint(*M.family("cnn", 0, 0))
    with pytest.raises(merging.UnsupportedMergeError, match="MLP"):
        merging.clafusion([cnn, cnn])
    resnet = M.checkpoint(*M.family("resnet", 0, 0))
    with pytest.raises(merging.UnsupportedMergeError):
        check_chain(resnet.architecture)
    x = torch.randn(2, 4)
    tanh3 = M.checkpoint(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)), x)
    tanh4 = M.checkpoint(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(),
                                       nn.Linear(5, 2)), x)
    with pytest.raises(merging.UnsupportedMergeError, match="ReLU"):
        merging.clafusion([tanh3, tanh4])
    merging.clafusion([tanh4, tanh4])  # equal depths: any activation
    relu = M.checkpoint(M.mlp([4, 5, 2]), x)
    with pytest.raises(merging.UnsupportedMergeError, match="activation"):
        merging.clafusion([relu, tanh3])


@pytest.mark.parametrize("family", ("cnn", "cnn_bn", "resnet"))
@pytest.mark.parametrize("target", (0, 1))
def test_convolutional_networks_of_different_widths_fuse(family, target):
    (m1, x), (m2, _) = M.family(family, 0, 0), M.family(family, 2, 1)
    a, b = M.checkpoint(m1, x), M.checkpoint(m2, x)
    merging.check_method("ot", [a.architecture, b.architecture])
    result = merging.ot_fusion([a, b], target=target, data=torch.randn(16, *x.shape[1:]))
    want = (a, b)[target]
    assert result.checkpoint.architecture == want.architecture
    assert torch.isfinite(_out(result.checkpoint, x)).all()
    assert result.bn_stats == ("none" if family == "cnn" else "reset")
