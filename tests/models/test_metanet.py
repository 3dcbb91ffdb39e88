"""The graph metanetwork: shapes, invariance to hidden-neuron permutations, batching."""

import pytest
import torch
from _nets import FAMILIES, checkpoint
from torch_geometric.data import Batch

import graphs
from models import GraphMetanet, MetanetConfig, NGConv
from models.data import graph_of


def tiny(task: str, layer_stats: bool = False, probes: int = 0) -> GraphMetanet:
    torch.manual_seed(0)
    cfg = MetanetConfig(task=task, num_outputs=10 if task == "classification" else 1,
                        hidden=16, edge_hidden=8, layers=2, fourier=4, layer_stats=layer_stats,
                        probes=probes)
    model = GraphMetanet(cfg)
    model.fit_normalization([graph_of(checkpoint(f)) for f in FAMILIES])
    return model.eval()


@pytest.mark.parametrize(("layer_stats", "probes"), [(False, 0), (True, 0), (False, 8)])
@pytest.mark.parametrize("task", ["classification", "generalization"])
@pytest.mark.parametrize("family", FAMILIES)
def test_invariant_to_hidden_permutations(family: str, task: str, layer_stats: bool,
                                          probes: int) -> None:
    model = tiny(task, layer_stats, probes)
    ckpt = checkpoint(family, seed=1)
    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(7))
    g, gp = graph_of(ckpt), graph_of(permuted)
    assert not torch.equal(g.edge_attr, gp.edge_attr)  # the permutation moved weights
    with torch.no_grad():
        out = model(Batch.from_data_list([g, gp]))
    assert out.shape == (2, model.config.num_outputs)
    torch.testing.assert_close(out[0], out[1], atol=1e-4, rtol=0)


def test_output_neuron_order_matters() -> None:
    """Output neurons keep their identity: swapping two class rows changes the readout."""
    model = tiny("generalization")
    ckpt = checkpoint("mlp", seed=2)
    swapped = graphs.Checkpoint(dict(ckpt.tensors), ckpt.architecture)
    last = [k for k in ckpt.tensors if k.endswith("weight")][-1]
    swapped.tensors[last] = ckpt.tensors[last][[1, 0, *range(2, 10)]] * torch.tensor(
        [3.0] + [1.0] * 9)[:, None]
    seen = []
    model.head.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        model(Batch.from_data_list([graph_of(ckpt), graph_of(swapped)]))
    h = model.config.hidden
    pooled, slots = seen[0][:, : 4 * h], seen[0][:, 4 * h :]
    assert (slots[0] - slots[1]).abs().max() > 1e-3
    assert (pooled[0] - pooled[1]).abs().max() > 0  # the weights did change


@pytest.mark.parametrize("layer_stats", [False, True])
def test_mixed_batch_equals_single_graphs(layer_stats: bool) -> None:
    model = tiny("classification", layer_stats)
    gs = [graph_of(checkpoint(f, seed=3)) for f in FAMILIES]
    with torch.no_grad():
        together = model(Batch.from_data_list(gs))
        alone = torch.cat([model(Batch.from_data_list([g])) for g in gs])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_conv_is_equivariant_to_node_relabelling() -> None:
    torch.manual_seed(0)
    conv = NGConv(8, 4).eval()
    x, e = torch.randn(6, 8), torch.randn(7, 4)
    edge_index = torch.tensor([[0, 0, 1, 2, 3, 4, 5], [3, 4, 3, 4, 5, 5, 0]])
    perm = torch.randperm(6)
    inv = torch.argsort(perm)  # node i becomes node inv[i]
    x2, e2 = conv(x, edge_index, e)
    x3, e3 = conv(x[perm], inv[edge_index], e)
    torch.testing.assert_close(x3, x2[perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(e3, e2, atol=1e-5, rtol=1e-5)
    assert repr(conv) == "NGConv(8, edge=4)"


def test_gradients_reach_every_parameter() -> None:
    model = tiny("classification", layer_stats=True).train()
    batch = Batch.from_data_list([graph_of(checkpoint(f)) for f in FAMILIES])
    model(batch).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_config_round_trip_and_validation() -> None:
    cfg = MetanetConfig(task="classification", num_outputs=3, aggregators=["mean", "max"])
    assert MetanetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown task"):
        MetanetConfig(task="segmentation")
    with pytest.raises(ValueError, match="exactly one output"):
        MetanetConfig(task="generalization", num_outputs=2)
    with pytest.raises(ValueError, match="unknown metanetwork config keys"):
        MetanetConfig.from_dict({"widht": 3})


def test_layer_statistics_match_the_weights() -> None:
    """The stats branch reads the same numbers as the checkpoint's own tensors."""
    from models.metanet import LAYER_STATS, layer_statistics

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    ckpt = graphs.from_module(net, torch.zeros(1, 4))
    stats = layer_statistics(Batch.from_data_list([graph_of(ckpt)]), 1, 16).view(16, LAYER_STATS)
    for layer, lin in ((1, net[0]), (2, net[2])):
        w, b = lin.weight.detach(), lin.bias.detach()
        mean, std, mean_abs, max_abs = stats[layer, :4]
        torch.testing.assert_close(mean, w.mean())
        torch.testing.assert_close(std, w.std(unbiased=False))
        torch.testing.assert_close(mean_abs, w.abs().mean())
        torch.testing.assert_close(max_abs, w.abs().max())
        torch.testing.assert_close(stats[layer, 4], b.mean())  # bias column
        torch.testing.assert_close(stats[layer, 9], b.std(unbiased=False))
        assert stats[layer, -1] == 1
    assert stats[3:, -1].sum() == 0  # no deeper layers


def test_probe_points_learn() -> None:
    """The probe points get gradients through the graph pass (they train with the model)."""
    model = tiny("classification", probes=8).train()
    batch = Batch.from_data_list([graph_of(checkpoint("siren", seed=s)) for s in range(3)])
    model(batch).sum().backward()
    assert model.probe_points.grad is not None and model.probe_points.grad.abs().sum() > 0
