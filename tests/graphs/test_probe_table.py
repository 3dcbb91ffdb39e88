"""models.probes takes its activation table from the op registry: with ``node_fn`` a graph
is evaluated exactly, whatever the activation; the v1 ``node_act`` gives the nearest one."""

import torch
from torch import nn
from torch_geometric.data import Batch

import graphs
from models.probes import probe_activations


def test_probes_evaluate_every_registered_activation_exactly() -> None:
    torch.manual_seed(0)
    acts = [nn.ReLU6(), nn.Hardswish(), nn.Hardsigmoid(), nn.Mish(), graphs.Cosine(2.0),
            nn.LeakyReLU(0.2), graphs.Sine(3.0)]
    layers: list[nn.Module] = [nn.Linear(3, 5)]
    for act in acts:
        layers += [act, nn.Linear(5, 5)]
    model = nn.Sequential(*layers).eval()
    points = torch.rand(4, 3) * 2 - 1
    ckpt = graphs.from_module(model, points)
    batch = Batch.from_data_list([graphs.to_graph(ckpt)])
    values = probe_activations(batch, 1, points)
    out = (batch.node_pos >= 0) & (batch.node_type != graphs.NODE_TYPES["input"])
    with torch.no_grad():
        expected = model(points)
    torch.testing.assert_close(values[out][batch.node_pos[out].argsort()], expected.t(),
                               atol=1e-5, rtol=1e-5)
