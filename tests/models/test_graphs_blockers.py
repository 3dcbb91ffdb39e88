"""graphs/ behaviour the metanetworks depend on (a regression test for a bug found here)."""

import torch
from torch import nn

import graphs


def test_mlp_that_flattens_an_image_input_has_a_parameter_graph() -> None:
    """The digits-mixed zoo's MLPs flatten a (1, 1, 8, 8) image before their first linear
    layer; without a graph for them no metanetwork can train on or answer for that zoo."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.ReLU(), nn.Linear(5, 10))
    ckpt = graphs.from_module(model, torch.zeros(1, 1, 8, 8))
    g = graphs.to_graph(ckpt)
    assert g.num_nodes == 64 + 5 + 10
    assert int((g.node_pos >= 0).sum()) == 64 + 10
