"""Small reference networks of every supported family, built the way users build them."""

from __future__ import annotations

import torch
from torch import nn

from graphs import Sine


def mlp(widths: list[int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def cnn(c1: int, c2: int, classes: int = 5) -> nn.Sequential:
    """Conv-pool-conv-pool-flatten-linear on 8×8 inputs (the flatten keeps 2×2 pixels)."""
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(c2 * 4, classes),
    )


def cnn_bn(c1: int, c2: int, classes: int = 5) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c2, classes),
    )


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, same attribute names."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet layout (BasicBlock); ResNet-18 is widths 64..512, blocks 2,2,2,2."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512),
                 blocks: tuple[int, ...] = (2, 2, 2, 2), classes: int = 1000,
                 stem_kernel: int = 7) -> None:
        super().__init__()
        big = stem_kernel == 7
        self.conv1 = nn.Conv2d(3, widths[0], stem_kernel, 2 if big else 1, stem_kernel // 2,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if big else nn.Identity()
        inplanes = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            layer = []
            for j in range(n):
                layer.append(BasicBlock(inplanes, w, 2 if j == 0 and i > 0 else 1))
                inplanes = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.n_layers = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


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


class EncoderBlock(nn.Module):
    """A pre-LN transformer encoder block with a linear embedding and readout."""

    def __init__(self, d_in: int, dim: int, heads: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.embed = nn.Linear(d_in, dim)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.head = nn.Linear(dim, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.fc2(self.act(self.fc1(self.ln2(x))))
        return self.head(x)


def randomize_bn(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so permutations matter."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator))
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=generator))
            m.bias.data.copy_(torch.randn(n, generator=generator))
        if isinstance(m, nn.LayerNorm):
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=generator))
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=generator))
    return model


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
        model, x = cnn(2 + s, 3 + s), torch.randn(4, 3, 8, 8, generator=g)
    elif name == "cnn_bn":
        model, x = cnn_bn(2 + s, 3 + s), torch.randn(4, 3, 8, 8, generator=g)
    elif name == "resnet":
        model = ResNet((3 + s, 4 + s), (1 + s % 2, 1), classes=4, stem_kernel=3)
        x = torch.randn(2, 3, 8, 8, generator=g)
    elif name == "siren":
        widths = [2, *[8 + s] * (1 + seed % 3), 3]
        model, x = siren(widths), torch.rand(16, 2, generator=g) * 2 - 1
    elif name == "transformer":
        model = EncoderBlock(3, 8, (1, 2, 4)[s % 3], 6 + s, 2)
        x = torch.randn(2, 5, 3, generator=g)
    else:
        raise KeyError(name)
    return randomize_bn(model, g).eval(), x


FAMILIES = ("mlp", "cnn", "cnn_bn", "resnet", "siren", "transformer")
