"""Single ops in the forms code writes them: functional activations, constants, pooling of
every kind, reductions. Each must trace, rebuild exactly and keep its symmetry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import graphs


class Functional(nn.Module):
    """An MLP whose activations and constants are written as calls, not modules."""

    def __init__(self) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(6 if i == 0 else 7, 7) for i in range(9))
        self.out = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fcs
        x = F.relu(f[0](x)) * 2.0
        x = F.gelu(f[1](x), approximate="tanh") / 3
        x = -F.silu(f[2](x)) + 1
        x = 1 - torch.sigmoid(f[3](x))
        x = f[4](x).relu() - 0.5
        x = F.leaky_relu(f[5](x), 0.1)
        x = F.hardswish(f[6](x)) + F.mish(f[6](x))
        x = torch.cos(2.0 * f[7](x))
        x = F.dropout(torch.tanh(f[8](x)), p=0.3, training=self.training)
        return self.out(x)


class Pools(nn.Module):
    """Pooling of every kind between convs, and global reductions."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 5, 3, padding=1), nn.Conv2d(5, 6, 3), \
            nn.Conv2d(6, 4, 1)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.avg = nn.AvgPool2d(2, 1, 1, count_include_pad=False)
        self.c1d = nn.Conv1d(4, 4, 1)
        self.fc = nn.Linear(4 * 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avg(self.pool(F.relu6(self.c1(x))))
        x = F.max_pool2d(self.c2(x), 2, ceil_mode=True)
        y = self.c3(x)
        y = F.adaptive_max_pool2d(y, (2, 2)) + y.amax((2, 3), keepdim=True)
        y = F.avg_pool1d(self.c1d(torch.flatten(y, 2)), 2, 1)  # (B, C, 4) for a 1d conv
        return self.fc(torch.cat([y.mean(2), y.sum(2), y.amax(2)], 1))


class Channels(nn.Module):
    """Identity, dropout modules and hard activations as modules."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardsigmoid(), nn.Dropout2d(0.1),
                                 nn.Identity(), nn.Conv2d(4, 4, 3), nn.Mish(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


CASES = {
    "functional": (Functional, (4, 6)),
    "channels": (Channels, (2, 3, 8, 8)),
    "pools": (Pools, (2, 3, 8, 8)),
}


@pytest.mark.parametrize("name", CASES)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_op_styles_rebuild_and_keep_their_symmetry(name: str, seed: int) -> None:
    torch.manual_seed(seed)
    cls, shape = CASES[name]
    model, x = cls().eval(), torch.randn(*shape)
    ckpt = graphs.from_module(model, x)
    with torch.no_grad():
        expected = model(x)
    for c in (ckpt, graphs.random_permutation(ckpt, torch.Generator().manual_seed(seed))):
        module = graphs.build_module(c.architecture)
        module.load_state_dict(c.tensors)
        with torch.no_grad():
            torch.testing.assert_close(module(x), expected, atol=1e-5, rtol=1e-4)


def test_functional_forms_are_named_ops() -> None:
    x = torch.randn(4, 6)
    arch = graphs.describe(Functional().eval(), x)
    ops = [n.op for n in arch.nodes]
    # fcs[6] is called twice: the second call's tensors are tied to the first's
    assert arch.ties == {"fcs.6@2.weight": "fcs.6.weight", "fcs.6@2.bias": "fcs.6.bias"}
    assert {"relu", "gelu", "silu", "sigmoid", "leaky_relu", "hardswish", "mish", "tanh",
            "mul_scalar", "div_scalar", "neg", "add_scalar", "rsub_scalar", "dropout"} <= set(ops)
    assert ops.count("mul_scalar") == 1  # 2.0 * x was folded into cos(w0 x)
    assert ops.count("cosine") == 1

