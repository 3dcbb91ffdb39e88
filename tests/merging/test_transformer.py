"""Weight matching on trained transformers: the residual stream must be aligned first.

A pre-LN encoder block's residual stream touches seven weight matrices, but only the
embedding and the readout tie it to fixed axes. Starting the descent from the identity let
the five unaligned matrices decide the stream's permutation, and the trained digits pair
ended with a higher barrier than no alignment at all (bench/merge_transformer.py).
"""

import _merging_models as M
import pytest
import torch

import graphs
import merging


@pytest.fixture(scope="module")
def transformer_pair(digits_img):
    train, test = digits_img
    rows = (train[0].reshape(-1, 8, 8), train[1])
    test_rows = (test[0].reshape(-1, 8, 8), test[1])
    torch.manual_seed(0)
    a, b = (M.checkpoint(M.train(M.EncoderBlock(8, 32, 4, 64, 10), rows, seed=s, steps=300,
                                 lr=3e-3), test_rows[0][:2]) for s in (1, 2))
    return a, b, test_rows


def test_anchored_start_beats_the_identity_start(transformer_pair):
    a, b, _ = transformer_pair
    nmap = graphs.neuron_map(a.architecture)
    identity = {g.id: torch.arange(g.size) for g in nmap.permutable_groups()}
    default = merging.weight_matching(a, b)
    from_identity = merging.weight_matching(a, b, init=identity)
    assert default.objective_after > from_identity.objective_after + 1.0


def test_weight_matching_lowers_the_transformer_barrier(transformer_pair):
    a, b, test = transformer_pair
    r = merging.interpolate(a, b, 11, test, match="weight")
    assert r.aligned.barrier < 0.8 * r.naive.barrier
    x = test[0][:16]
    module_b = merging.forward.load_module(b, torch.device("cpu"))
    module_pb = merging.forward.load_module(r.match.apply(b), torch.device("cpu"))
    with torch.no_grad():  # the alignment is a symmetry: π(B) computes B's function
        torch.testing.assert_close(module_pb(x), module_b(x), atol=1e-4, rtol=1e-4)
