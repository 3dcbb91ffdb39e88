"""Small reference networks of every supported family, built the way users build them.

The MLP, CNNs, ResNet and encoder block are the merging tests' (``_merging_models``, put on
``sys.path`` by this folder's conftest), so both suites test the very same networks; only
SIREN, which merging does not use, is defined here.
"""

from __future__ import annotations

import torch
from _merging_models import EncoderBlock, ResNet, cnn, cnn_bn, mlp, randomize_norms
from _merging_models import family as merging_family
from torch import nn

from graphs import Sine

# the shared builders are re-exported: the tests here import every family from this module
__all__ = [
    "FAMILIES", "EncoderBlock", "ResNet", "SineLayer", "cnn", "cnn_bn", "family", "mlp",
    "randomize_norms", "siren",
]


class SineLayer(nn.Module):
    """The SIREN reference code's layer: ``sin(w0 * linear(x))`` with ``.linear`` and its
    initialisation (first layer U(-1/n, 1/n), later ones U(-√(6/n)/w0, √(6/n)/w0))."""

    def __init__(self, fan_in: int, fan_out: int, w0: float = 30.0, first: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(fan_in, fan_out)
        bound = 1 / fan_in if first else (6 / fan_in) ** 0.5 / w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
        self.act = Sine(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


def siren(widths: list[int], w0: float = 30.0) -> nn.Module:
    layers: list[nn.Module] = [SineLayer(widths[i], widths[i + 1], w0, first=i == 0)
                               for i in range(len(widths) - 2)]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return _Siren(nn.Sequential(*layers))


class _Siren(nn.Module):
    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def family(name: str, size: int, seed: int) -> tuple[nn.Module, torch.Tensor]:
    """A model of a family and a batch of example inputs; ``size`` scales the widths."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    s = size
    if name == "mlp":
        depth = 1 + seed % 3  # hidden layers
        widths = [6, *[3 + (s + i) % 4 for i in range(depth)], 4]
        model, x = mlp(widths), torch.randn(5, 6, generator=g)
    elif name == "cnn":
        model, x = cnn(2 + s, 3 + s, classes=5, in_ch=3), torch.randn(4, 3, 8, 8, generator=g)
    elif name == "cnn_bn":
        model, x = cnn_bn(2 + s, 3 + s, classes=5, in_ch=3), torch.randn(4, 3, 8, 8, generator=g)
    elif name == "resnet":
        model = ResNet((3 + s, 4 + s), (1 + s % 2, 1), classes=4, stem_kernel=3)
        x = torch.randn(2, 3, 8, 8, generator=g)
    elif name == "siren":
        widths = [2, *[8 + s] * (1 + seed % 3), 3]
        model, x = siren(widths), torch.rand(16, 2, generator=g) * 2 - 1
    elif name == "transformer":  # built exactly as the merging tests build it
        return merging_family(name, size, seed)
    else:
        raise KeyError(name)
    return randomize_norms(model, g).eval(), x


FAMILIES = ("mlp", "cnn", "cnn_bn", "resnet", "siren", "transformer")
