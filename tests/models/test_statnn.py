"""The statistics baseline."""

import numpy as np
import pytest
import torch
from _nets import FAMILIES, checkpoint

import graphs
from models.metrics import kendall_tau_b
from models.statnn import STATS, StatNN, checkpoint_features


@pytest.mark.parametrize("family", FAMILIES)
def test_features_are_permutation_invariant(family: str) -> None:
    ckpt = checkpoint(family, seed=4)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(1))
    a, b = checkpoint_features(ckpt, 30), checkpoint_features(permuted, 30)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert a.shape == (30 * len(STATS) + 2,)


def test_learns_a_weight_scale_target() -> None:
    ckpts, targets = [], []
    for seed in range(120):
        c = checkpoint("mlp" if seed % 2 else "cnn", seed=seed)
        s = 0.5 + (seed % 10) / 10
        c.tensors = {k: v * s for k, v in c.tensors.items()}
        ckpts.append(c)
        targets.append(s / 2)
    model = StatNN("generalization", seed=0).fit(ckpts[:90], targets[:90])
    pred = model.predict(ckpts[90:])
    assert pred.min() >= 0 and pred.max() <= 1
    assert kendall_tau_b(pred, np.array(targets[90:])) > 0.8


def test_unfitted_and_bad_task() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        StatNN("ranking")
    with pytest.raises(RuntimeError, match="not fitted"):
        StatNN("classification").predict([checkpoint("mlp")])
