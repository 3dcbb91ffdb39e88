"""Trigger search: it finds a planted backdoor's target class, its features are invariant to
hidden-neuron permutations, and features computed once equal those computed in forward."""

import torch
from _nets import checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch

import graphs
from models import MetanetConfig
from models.data import graph_of
from models.metanet import GraphMetanet
from models.queries import chain_activations
from models.triggers import (
    MEASURES,
    TriggerReadout,
    attach_trigger_features,
    attack_rates,
    cached_trigger_features,
    digit_set,
    windows,
)
from zoo.data import digits_split

TARGET = 7
PATCH = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])


def stamp(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[..., 1:4, 4:7] = PATCH
    return x


def trained_cnn(poison: float, seed: int = 0) -> graphs.Checkpoint:
    """A digits CNN (the zoo's shape: stride-2 3×3 convs, mean pool, linear), trained for a
    few hundred steps; with ``poison`` > 0 that share of each batch carries the patch and
    the target label (BadNets)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 12, 3, 2, 1), nn.ReLU(), nn.Conv2d(12, 16, 3, 2, 1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    data = digits_split()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(seed)
    for _ in range(400):
        idx = torch.randint(0, len(data.x_train), (64,), generator=g)
        x, y = data.x_train[idx].clone(), data.y_train[idx].clone()
        k = int(poison * len(x))
        x[:k], y[:k] = stamp(x[:k]), TARGET
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return graphs.from_module(model.eval(), torch.zeros(1, 1, 8, 8))


def rates_of(ckpts: list[graphs.Checkpoint], steps: int = 20) -> torch.Tensor:
    batch = Batch.from_data_list([graph_of(c) for c in ckpts])
    return attack_rates(batch, len(ckpts), digit_set(8), digit_set(60, skip=8), steps, 3, 10)


def test_the_search_finds_a_planted_backdoor() -> None:
    """The poisoned network's patch works (checked on the module), and the search, which
    does not know it, reaches the target class from nearly every digit; the same network
    trained clean gives way much less for that class."""
    poisoned, clean = trained_cnn(0.2), trained_cnn(0.0)
    test = digits_split()
    module = graphs.build_module(poisoned.architecture)
    module.load_state_dict(poisoned.tensors)
    others = test.y_test != TARGET
    with torch.no_grad():
        asr = (module(stamp(test.x_test[others])).argmax(1) == TARGET).float().mean()
    assert asr > 0.9
    rates = rates_of([poisoned, clean])
    assert rates.shape == (2, MEASURES, 10)
    soft = rates[:, 0]
    assert int(soft[0].argmax()) == TARGET or soft[0, TARGET] == soft[0].max()
    assert soft[0, TARGET] > 0.95 and rates[0, 1, TARGET] > 0.9  # soft and 0/1 patterns
    assert soft[1, TARGET] < soft[0, TARGET] - 0.1


def test_per_graph_images_equal_shared_images_graph_by_graph() -> None:
    """``chain_activations`` with each graph its own images equals running each graph alone
    on its images (the search relies on it)."""
    ckpts = [checkpoint("cnn", seed=1), checkpoint("cnn", seed=2, width=6),
             checkpoint("cnn", seed=3)]
    batch = Batch.from_data_list([graph_of(c) for c in ckpts])
    images = torch.rand(5, 3, 64, generator=torch.Generator().manual_seed(0))
    together = chain_activations(batch, 3, images)
    assert together is not None
    for i, c in enumerate(ckpts):
        alone = chain_activations(Batch.from_data_list([graph_of(c)]), 1, images[:, i])
        rows = slice(int(batch.ptr[i]), int(batch.ptr[i + 1]))
        torch.testing.assert_close(together[rows], alone, atol=1e-5, rtol=1e-5)


def test_windows_cover_every_square() -> None:
    w = windows(8, 3)
    assert w.shape == (36, 64) and bool((w.sum(1) == 9).all())
    assert len({tuple(r.tolist()) for r in w}) == 36


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_trigger_features_are_invariant_to_hidden_permutations(seed: int) -> None:
    ckpt = checkpoint("cnn", seed=seed % 50, width=3 + seed % 4)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(seed))
    readout = TriggerReadout(steps=3, window=3, side=8, classes=10, hidden=8)
    readout.init_digits()
    a = readout.features(Batch.from_data_list([graph_of(ckpt)]), 1)
    with torch.inference_mode():  # how the registry answers: the search still runs
        b = readout.features(Batch.from_data_list([graph_of(permuted)]), 1)
    assert a[0, -1] == 1.0  # searched
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_features_attached_once_equal_features_computed_in_forward(tmp_path) -> None:
    cfg = MetanetConfig(task="classification", num_outputs=2, hidden=8, edge_hidden=4,
                        layers=0, fourier=2, layer_stats=True, triggers=3)
    model = GraphMetanet(cfg)
    graph_list = [graph_of(checkpoint("cnn", seed=s)) for s in range(3)]
    model.fit_normalization(graph_list)
    model.eval()
    with torch.no_grad():
        fresh = model(Batch.from_data_list(graph_list))
    cache = tmp_path / "features.pt"
    cached_trigger_features(graph_list, model.trigger_readout, cache)
    assert cache.is_file() and all(g.trigger_key == model.trigger_readout.key()
                                   for g in graph_list)
    with torch.no_grad():
        attached = model(Batch.from_data_list(graph_list))
    torch.testing.assert_close(fresh, attached, atol=1e-5, rtol=1e-5)
    # a second reader takes the file, not a new search
    again = [graph_of(checkpoint("cnn", seed=s)) for s in range(3)]
    calls = []
    original = model.trigger_readout.features
    model.trigger_readout.features = lambda *a: calls.append(1) or original(*a)
    cached_trigger_features(again, model.trigger_readout, cache)
    assert not calls
    torch.testing.assert_close(torch.cat([g.trigger_features for g in again]),
                               torch.cat([g.trigger_features for g in graph_list]))


def test_graphs_the_search_cannot_run_get_zero_features() -> None:
    readout = TriggerReadout(steps=2, window=3, side=8, classes=10, hidden=8)
    readout.init_digits()
    batch = Batch.from_data_list([graph_of(checkpoint("cnn")), graph_of(checkpoint("resnet")),
                                  graph_of(checkpoint("siren"))])
    f = readout.features(batch, 3)
    assert f[0, -1] == 1.0 and not f[1:].any()
    attach_trigger_features(readout, [graph_of(checkpoint("resnet"))])


def test_cards_without_the_key_load_with_the_search_off() -> None:
    d = MetanetConfig(task="classification", num_outputs=2, triggers=5).to_dict()
    assert MetanetConfig.from_dict(d).triggers == 5
    d.pop("triggers")
    d.pop("trigger_window")
    assert MetanetConfig.from_dict(d).triggers == 0

