"""Every shipped metanetwork: its card against a re-evaluation, and its invariance."""

import json
import math

import numpy as np
import pytest
import torch
from _nets import FAMILIES, checkpoint

import graphs
from models import OutOfDomainError, load_metanetwork
from models.registry import BUILTIN_DIR, available

BUILTINS = ("digits-inr-classifier", "digits-cnn-generalization",
            "digits-mixed-generalization", "digits-cnn-backdoor")


def samples(name: str) -> tuple[list[graphs.Checkpoint], list[dict]]:
    card = json.loads((BUILTIN_DIR / f"{name}.json").read_text())
    files = card["check"]["files"]
    return [graphs.load(BUILTIN_DIR / "samples" / name / f["file"]) for f in files], files


def test_every_builtin_is_shipped() -> None:
    assert set(BUILTINS) <= set(available())


@pytest.mark.parametrize("name", BUILTINS)
def test_card_matches_a_re_evaluation(name: str) -> None:
    net = load_metanetwork(name)
    card = net.card
    assert card["name"] == name and card["task"] in ("classification", "generalization")
    assert card["zoo"]["command"] and card["domain"]["ops"] and card["version"]
    ckpts, files = samples(name)
    preds = net.predict(ckpts)
    assert all(p.in_domain for p in preds)
    targets = np.array([f["target"] for f in files])
    n = len(files)
    if card["task"] == "classification":
        probs = np.array([[p.probabilities[k] for k in card["labels"]] for p in preds])
        np.testing.assert_allclose(probs, [f["prediction"] for f in files], atol=1e-4)
        acc = float(np.mean([card["labels"].index(p.label) for p in preds] == targets))
        expected = card["metrics"]["test"]["accuracy"]
    else:
        values = np.array([p.value for p in preds])
        np.testing.assert_allclose(values, [f["prediction"][0] for f in files], atol=1e-4)
        inside = [lo <= t <= hi for p, t in zip(preds, targets, strict=True)
                  for lo, hi in [p.interval]]
        acc = float(np.mean(inside))
        expected = card["conformal"]["test_coverage"]
    # The sample is a random draw from the test split: its rate must agree with the card's
    # test figure up to binomial noise (4 standard deviations, plus one sample).
    sd = math.sqrt(max(expected * (1 - expected), 0.01) / n)
    assert abs(acc - expected) <= 4 * sd + 1 / n


@pytest.mark.parametrize("name", BUILTINS)
def test_invariant_on_its_own_samples(name: str) -> None:
    net = load_metanetwork(name)
    ckpts, _ = samples(name)
    gen = torch.Generator().manual_seed(0)
    permuted = [graphs.random_permutation(c, gen) for c in ckpts[:6]]
    with torch.no_grad():
        a = net.model(_batch(net, ckpts[:6]))
        b = net.model(_batch(net, permuted))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("family", FAMILIES)
def test_invariant_on_every_family(name: str, family: str) -> None:
    """Out-of-domain answers (force=True) must still be invariant; a family whose graph the
    metanetwork cannot read is refused even when forced."""
    net = load_metanetwork(name)
    ckpt = checkpoint(family, seed=5)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(1))
    if net.graph(ckpt) is None:
        with pytest.raises(OutOfDomainError):
            net.predict([ckpt], force=True)
        return
    a, b = net.predict([ckpt, permuted], force=True)
    if net.task == "classification":
        assert a.probabilities is not None and b.probabilities is not None
        for k in a.probabilities:
            assert abs(a.probabilities[k] - b.probabilities[k]) <= 1e-4
    else:
        assert a.value is not None and b.value is not None
        assert abs(a.value - b.value) <= 1e-4


def _batch(net, ckpts):  # type: ignore[no-untyped-def]
    from torch_geometric.data import Batch

    return Batch.from_data_list([net.graph(c) for c in ckpts]).to(net.device)
