"""Interpolation curves and barriers on digits networks trained from different seeds."""

import _merging_models as M
import pytest
import torch

import graphs
import merging
from merging.batchnorm import layer_stats, repair_targets
from merging.forward import load_module
from merging.interpolation import Path, merged_module


def test_barrier_definitions():
    path = Path([0.0, 0.5, 1.0], [1.0, 3.0, 2.0], [0.9, 0.5, 0.7], "stale", 0.0)
    assert path.barrier == pytest.approx(3.0 - 1.5)
    assert path.accuracy_barrier == pytest.approx(0.8 - 0.5)
    assert path.at(0.4) == (3.0, 0.5)


def test_mlp_aligned_barrier_is_far_below_naive(mlp_pair, digits_flat):
    a, b = mlp_pair
    test = digits_flat[1]
    result = merging.interpolate(a, b, 9, test)
    naive, aligned = result.naive, result.aligned
    assert naive.lambdas[0] == 0.0 and naive.lambdas[-1] == 1.0 and len(naive.lambdas) == 9
    assert naive.losses[0] == pytest.approx(merging.evaluate(load_module(a, "cpu"), test)[0])
    assert aligned.losses[-1] == pytest.approx(naive.losses[-1], rel=1e-5)  # same function
    assert naive.barrier > 0.05
    assert aligned.barrier < 0.5 * naive.barrier
    assert aligned.accuracy_barrier <= naive.accuracy_barrier
    assert aligned.distance < naive.distance


def test_cnn_alignment_reduces_barrier(cnn_pair, digits_img):
    a, b = cnn_pair
    for method in ("weight", "activation"):
        result = merging.interpolate(a, b, 5, digits_img[1], match=method)
        assert result.aligned.barrier < 0.7 * result.naive.barrier, method


def test_cnn_bn_reset_restores_the_midpoint(cnn_bn_pair, digits_img):
    a, b = cnn_bn_pair
    test = digits_img[1]
    stale = merging.interpolate(a, b, [0.0, 0.5, 1.0], test, bn="stale")
    reset = merging.interpolate(a, b, [0.0, 0.5, 1.0], test, match=stale.match, bn="reset")
    assert reset.aligned.accuracies[1] > stale.aligned.accuracies[1]
    assert reset.aligned.barrier < stale.aligned.barrier
    assert reset.aligned.barrier < reset.naive.barrier


def test_without_data_only_distances():
    a = M.checkpoint(*M.family("mlp", 1, 0))
    b = M.checkpoint(*M.family("mlp", 1, 1))
    result = merging.interpolate(a, b)
    assert result.naive.losses is None and result.naive.barrier is None
    assert len(result.naive.lambdas) == 25
    assert result.aligned.distance <= result.naive.distance
    with pytest.raises(ValueError, match="needs data"):
        merging.interpolate(a, b, bn="reset")


def test_reset_bn_matches_the_data_statistics(cnn_bn_pair, digits_img):
    a, _ = cnn_bn_pair
    x = digits_img[1][0]
    module = load_module(a, "cpu")
    merging.reset_bn(module, x, batch_size=len(x))
    conv = module.get_submodule("0")
    with torch.no_grad():
        h = conv(x)
    bn = module.get_submodule("1")
    torch.testing.assert_close(bn.running_mean, h.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, h.var((0, 2, 3)), rtol=1e-3, atol=1e-5)
    assert not bn.training
    merging.reset_bn(module, x, batch_size=90)  # equal batches: a cumulative average, no EMA
    torch.testing.assert_close(bn.running_mean, h.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, h.var((0, 2, 3)), rtol=0.05, atol=1e-4)


def test_repair_sets_interpolated_statistics(mlp_pair, digits_flat):
    a, b = mlp_pair
    x = digits_flat[1][0]
    b = merging.weight_matching(a, b).apply(b)
    nodes = repair_targets(a.architecture)
    assert len(nodes) == 2  # the hidden linears; the readout's group is fixed
    sa = layer_stats(load_module(a, "cpu"), x, nodes)
    sb = layer_stats(load_module(b, "cpu"), x, nodes)
    module = merged_module(a, b, 0.3, "repair", x, torch.device("cpu"), (sa, sb))
    sm = layer_stats(module, x, nodes)
    for n in nodes:
        torch.testing.assert_close(sm[n][0], 0.7 * sa[n][0] + 0.3 * sb[n][0], atol=1e-4,
                                   rtol=1e-4)
        torch.testing.assert_close(sm[n][1], 0.7 * sa[n][1] + 0.3 * sb[n][1], atol=1e-4,
                                   rtol=1e-4)


def test_repair_leaves_batchnorm_networks_to_reset():
    model, _ = M.family("cnn_bn", 1, 0)
    arch = graphs.from_module(model, torch.randn(2, 3, 8, 8)).architecture
    assert repair_targets(arch) == []


def test_sequence_logits_are_averaged_over_positions():
    model, x = M.family("transformer", 0, 0)
    ckpt = M.checkpoint(model, x)
    y = torch.tensor([0, 1])
    loss, acc = merging.evaluate(load_module(ckpt, "cpu"), (x, y))
    with torch.no_grad():
        logits = model(x).mean(1)
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-5)
    assert acc == float((logits.argmax(-1) == y).float().mean())
