"""Tiny networks of every family the parameter graphs support, as checkpoints."""

from __future__ import annotations

import torch
from torch import nn

import graphs
from graphs import Checkpoint, Sine

FAMILIES = ("mlp", "cnn", "cnn_bn", "resnet", "siren", "transformer")


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.block = Block(c)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(torch.relu(self.bn(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class Encoder(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.embed, self.ln = nn.Linear(3, dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.fc1, self.fc2, self.head = nn.Linear(dim, 6), nn.Linear(6, dim), nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        h = self.ln(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return self.head(x + self.fc2(torch.relu(self.fc1(x))))


def _randomize(model: nn.Module, g: torch.Generator) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
    return model.eval()


def checkpoint(family: str, seed: int = 0, width: int = 4) -> Checkpoint:
    """A random network of ``family``; ``width`` scales its hidden sizes."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    w = width
    if family == "mlp":
        model: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(64, w + 2), nn.ReLU(),
                                         nn.Linear(w + 2, w), nn.Tanh(), nn.Linear(w, 10))
        x = torch.zeros(1, 1, 8, 8)
    elif family == "cnn":
        model = nn.Sequential(nn.Conv2d(1, w, 3, 2, 1), nn.ReLU(), nn.Conv2d(w, w + 1, 3, 2, 1),
                              nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(w + 1, 10))
        x = torch.zeros(1, 1, 8, 8)
    elif family == "cnn_bn":
        model = nn.Sequential(nn.Conv2d(1, w, 3, 2, 1), nn.BatchNorm2d(w), nn.GELU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w, 10))
        x = torch.zeros(1, 1, 8, 8)
    elif family == "resnet":
        model, x = ResNet(w), torch.zeros(1, 1, 8, 8)
    elif family == "siren":
        model = nn.Sequential(nn.Linear(2, 4 * w), Sine(15.0), nn.Linear(4 * w, 4 * w),
                              Sine(15.0), nn.Linear(4 * w, 1))
        with torch.no_grad():
            model[0].weight.mul_(15.0)  # large first-layer weights, as in SIREN fits
        x = torch.zeros(1, 2)
    elif family == "transformer":
        model, x = Encoder(2 * w), torch.zeros(1, 5, 3)
    else:
        raise KeyError(family)
    return graphs.from_module(_randomize(model, g), x)
