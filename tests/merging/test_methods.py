"""STE matching, canonical weight matching, and the method checks the service relies on."""

import _merging_models as M
import pytest
import torch

import graphs
import merging
from graphs.canonical import canonicalize, random_rescaling
from merging.forward import load_module
from merging.ste import _midpoint_loss


def test_ste_recovers_a_planted_permutation():
    model, x = M.family("mlp", 2, 0)
    a = M.checkpoint(model, x)
    q = graphs.sample_permutations(graphs.neuron_map(a.architecture),
                                   torch.Generator().manual_seed(0))
    b = graphs.apply_permutation(a, q)
    xs = torch.randn(256, *x.shape[1:])
    with torch.no_grad():
        ys = load_module(a, torch.device("cpu"))(xs).argmax(-1)
    result = merging.ste_matching(a, b, (xs, ys), epochs=1, steps_per_epoch=10)
    assert result.method == "ste" and len(result.history) == 1
    for gid, p in q.items():
        assert torch.equal(result.perms[gid], torch.argsort(p))


def _train_slice_loss(a, b, perms, train, seed=0, holdout=1024):
    order = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(seed))
    idx = order[:holdout]
    module = load_module(a, torch.device("cpu"))
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.train()
    pb = graphs.apply_permutation(b, perms).tensors
    return _midpoint_loss(module, a.tensors, pb, train[0][idx], train[1][idx])


def test_ste_midpoint_is_no_worse_than_weight_matching(mlp_pair, digits_flat):
    a, b = mlp_pair
    train, _ = digits_flat
    wm = merging.weight_matching(a, b)
    ste = merging.ste_matching(a, b, train, epochs=2, steps_per_epoch=20)
    assert _train_slice_loss(a, b, ste.perms, train) <= \
        _train_slice_loss(a, b, wm.perms, train) + 1e-9
    merged = merging.merge(a, b, method="ste", data=train, epochs=1, steps_per_epoch=5)
    assert merging.lineage(merged.checkpoint)["method"] == "ste"


def test_ste_handles_batchnorm(cnn_bn_pair, digits_img):
    a, b = cnn_bn_pair
    train, test = digits_img
    result = merging.ste_matching(a, b, train, epochs=1, steps_per_epoch=5)
    curve = merging.interpolate(a, b, [0.0, 0.5, 1.0], test, match=result)
    assert curve.aligned.accuracies[1] > 0.5


def test_canonical_weight_matching_sees_through_rescaling():
    model, x = M.family("cnn_bn", 2, 0)
    a = M.checkpoint(model, x)
    q = graphs.sample_permutations(graphs.neuron_map(a.architecture),
                                   torch.Generator().manual_seed(0))
    b = graphs.apply_permutation(random_rescaling(a, torch.Generator().manual_seed(1)), q)
    result = merging.weight_matching(a, b, canonical=True)
    assert result.canonical
    for gid, p in q.items():
        assert torch.equal(result.perms[gid], torch.argsort(p))
    a_end, b_end = result.endpoints(a, b)
    for name, t in canonicalize(a).tensors.items():
        torch.testing.assert_close(b_end.tensors[name], t, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a_end.tensors[name], t)
    merged = merging.merge(a, b, canonical=True, lam=0.5)
    assert merging.lineage(merged.checkpoint)["canonical"] is True
    torch.testing.assert_close(_out(merged.checkpoint, x), _out(a, x), rtol=1e-4, atol=1e-4)


def _out(ckpt, x):
    with torch.no_grad():
        return load_module(ckpt, torch.device("cpu"))(x)


def test_merge_with_fusion_methods(mlp_pair, digits_flat):
    a, b = mlp_pair
    train, test = digits_flat
    r = merging.merge(a, b, method="ot", lam=0.25, data=test, solver="sinkhorn")
    assert r.match is None and r.fusion is not None and r.fusion.weights == [0.75, 0.25]
    record = merging.lineage(r.checkpoint)
    assert record["method"] == "ot" and record["solver"] == "sinkhorn"
    r = merging.merge(a, b, method="clafusion", data=train)
    assert merging.lineage(r.checkpoint)["method"] == "clafusion"
    with pytest.raises(merging.MergeInputError):
        merging.merge(a, b, method="weight", solver="emd")


def test_check_method_accepts_and_refuses():
    mlp = M.checkpoint(*M.family("mlp", 1, 0)).architecture
    wider = M.checkpoint(*M.family("mlp", 3, 0)).architecture
    deeper = M.checkpoint(M.mlp([6, 5, 5, 5, 3]), torch.randn(2, 6)).architecture
    cnn = M.checkpoint(*M.family("cnn", 1, 0)).architecture
    cnn_wide = M.checkpoint(*M.family("cnn", 2, 0)).architecture
    attn = M.checkpoint(*M.family("transformer", 1, 0)).architecture
    ok = [("weight", [mlp, mlp], False), ("none", [cnn, cnn, cnn], False),
          ("activation", [cnn, cnn], True), ("ste", [mlp, mlp], True),
          ("ot", [mlp, wider], False), ("ot", [cnn, cnn_wide, cnn], False),
          ("clafusion", [mlp, deeper, wider], True), ("weight", [attn, attn], False)]
    for method, archs, data in ok:
        merging.check_method(method, archs, has_data=data)
    refused = [("weight", [mlp, wider], False, merging.UnsupportedMergeError),
               ("activation", [mlp, mlp], False, merging.MergeInputError),
               ("ste", [mlp, mlp, mlp], True, merging.UnsupportedMergeError),
               ("ot", [mlp, deeper], False, merging.UnsupportedMergeError),
               ("ot", [attn, attn], False, merging.UnsupportedMergeError),
               ("clafusion", [cnn, cnn_wide], False, merging.UnsupportedMergeError),
               ("magic", [mlp, mlp], False, merging.MergeInputError),
               ("weight", [mlp], False, merging.MergeInputError)]
    for method, archs, data, exc in refused:
        with pytest.raises(exc):
            merging.check_method(method, archs, has_data=data)
    assert issubclass(merging.UnsupportedMergeError, ValueError)
