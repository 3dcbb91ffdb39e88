"""An MLP that flattens an image input (the digits-mixed zoo's MLPs) is a first-class family."""

import torch
from torch import nn

import graphs


def _image_mlp() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 7), nn.ReLU(), nn.Linear(7, 10)).eval()
    return model, torch.randn(5, 1, 8, 8)


def test_flattened_image_input_is_one_fixed_group_of_all_pixels() -> None:
    model, x = _image_mlp()
    nmap = graphs.neuron_map(graphs.from_module(model, x[:1]).architecture)
    fixed = {g.size for g in nmap.groups.values() if g.kind == "input" and g.tensors}
    assert fixed == {64}
    assert [g.size for g in nmap.permutable_groups()] == [7]


def test_flattened_image_mlp_round_trips_and_keeps_its_function_under_permutation() -> None:
    model, x = _image_mlp()
    ckpt = graphs.from_module(model, x[:1])
    g = graphs.to_graph(ckpt)
    assert g.num_nodes == 64 + 7 + 10
    assert int((g.node_pos >= 0).sum()) == 64 + 10
    back = graphs.from_graph(g, ckpt)
    assert all(torch.equal(back.tensors[k], v) for k, v in ckpt.tensors.items())

    permuted = graphs.random_permutation(ckpt, torch.Generator().manual_seed(1))
    assert not torch.equal(permuted.tensors["1.weight"], ckpt.tensors["1.weight"])
    net = graphs.build_module(permuted.architecture).eval()
    net.load_state_dict(permuted.tensors)
    assert torch.allclose(net(x), model(x), atol=1e-5)
