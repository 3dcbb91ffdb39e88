"""The scale-invariant metanetwork input (``MetanetConfig.scale_invariant``).

With the option, a network and a copy whose ReLU neurons were positively rescaled (and whose
tanh/sine neurons were sign-flipped) compute the same function and must get the same
prediction; without it they get different ones, which is what makes the property a test
of the option rather than of the metanetwork. Permutation invariance must survive, and the
flag must travel with a shipped card so prediction reads the form training read.
"""

import json
from pathlib import Path

import pytest
import torch
from _nets import FAMILIES, checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch

import graphs
from graphs.canonical import canonical_groups, random_rescaling
from models import GraphMetanet, MetanetConfig
from models.data import graph_of, read_zoo, zoo_graphs
from models.registry import Metanetwork, load_from, save_metanetwork

# families of _nets with a scale (ReLU) or sign (tanh, sine) symmetry the canonical form fixes
SYMMETRIC = ("mlp", "cnn", "siren")


def tiny(scale_invariant: bool, layer_stats: bool = True) -> GraphMetanet:
    torch.manual_seed(0)
    cfg = MetanetConfig(task="generalization", hidden=16, edge_hidden=8, layers=2, fourier=4,
                        layer_stats=layer_stats, scale_invariant=scale_invariant)
    model = GraphMetanet(cfg)
    model.fit_normalization([graph_of(checkpoint(f), scale_invariant=scale_invariant)
                             for f in FAMILIES])
    return model.eval()


def outputs(model: GraphMetanet, ckpts: list[graphs.Checkpoint]) -> torch.Tensor:
    """The metanetwork's outputs, graphs built as a shipped metanetwork builds them."""
    net = Metanetwork({"name": "t", "task": "generalization"}, model)
    with torch.no_grad():
        return model(Batch.from_data_list([net.graph(c) for c in ckpts]))


@pytest.mark.parametrize("family", SYMMETRIC)
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_a_rescaled_copy_gets_the_same_output_only_with_the_option(family: str,
                                                                   seed: int) -> None:
    ckpt = checkpoint(family, seed=seed % 97)
    assert canonical_groups(ckpt.architecture)  # the family has a symmetry to remove
    copy = random_rescaling(ckpt, torch.Generator().manual_seed(seed))
    invariant = outputs(tiny(True), [ckpt, copy])
    # float rounding of the two canonicalizations stays near 1e-7 (measured); an untrained
    # model's outputs on the plain graphs differ by 2e-4 or more: the bounds sit between
    torch.testing.assert_close(invariant[0], invariant[1], atol=2e-6, rtol=0)
    plain = outputs(tiny(False), [ckpt, copy])
    assert (plain[0] - plain[1]).abs().max() > 2e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_still_invariant_to_permutations_with_the_option(family: str) -> None:
    ckpt = checkpoint(family, seed=1)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(7))
    out = outputs(tiny(True), [ckpt, permuted])
    torch.testing.assert_close(out[0], out[1], atol=1e-4, rtol=0)


def test_permuted_and_rescaled_copy_gets_the_same_output() -> None:
    ckpt = checkpoint("cnn", seed=4)
    copy = graphs.random_permutation(
        random_rescaling(ckpt, torch.Generator().manual_seed(3)), torch.Generator().manual_seed(5))
    out = outputs(tiny(True), [ckpt, copy])
    torch.testing.assert_close(out[0], out[1], atol=1e-4, rtol=0)


def test_the_option_round_trips_through_a_card_and_old_cards_load_without_it(
        tmp_path: Path) -> None:
    model = tiny(True)
    card = {"name": "si", "task": "generalization", "domain": {},
            "conformal": {"half_width": 0.1, "coverage": 0.9}}
    save_metanetwork(model, card, tmp_path)
    loaded = load_from(tmp_path, "si", torch.device("cpu"))
    assert loaded.model.config.scale_invariant is True
    ckpt = checkpoint("mlp", seed=2)
    torch.testing.assert_close(loaded.graph(ckpt).edge_attr,
                               graph_of(ckpt, scale_invariant=True).edge_attr)

    stored = json.loads((tmp_path / "si.json").read_text())
    del stored["config"]["scale_invariant"]  # a card written before the option existed
    (tmp_path / "si.json").write_text(json.dumps(stored))
    old = load_from(tmp_path, "si", torch.device("cpu"))
    assert old.model.config.scale_invariant is False
    torch.testing.assert_close(old.graph(ckpt).edge_attr, graph_of(ckpt).edge_attr)


def test_zoo_graph_caches_of_the_two_kinds_are_kept_apart(tmp_path: Path) -> None:
    from test_pipeline import write_zoo

    zoo = read_zoo(write_zoo(tmp_path / "zoo", "generalization", n=6))
    plain = zoo_graphs(zoo)
    canon = zoo_graphs(zoo, scale_invariant=True)
    assert len(list(zoo.path.glob(".metanet-graphs-*.pt"))) == 2
    assert not torch.allclose(plain[0].edge_attr, canon[0].edge_attr)
    again = zoo_graphs(zoo, scale_invariant=True)  # read back from its own cache
    torch.testing.assert_close(again[0].edge_attr, canon[0].edge_attr)
    torch.testing.assert_close(zoo_graphs(zoo)[0].edge_attr, plain[0].edge_attr)
