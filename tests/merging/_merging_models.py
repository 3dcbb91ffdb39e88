"""Reference networks and a tiny deterministic digits trainer (shared with bench/merge.py).

The models are built the way users build them (``nn.Sequential``, torchvision's ResNet
layout, a pre-LN encoder block) and turned into checkpoints with ``graphs.from_module``.
They are defined only here: tests/graphs/_graph_models.py imports them for its families,
and this module stays free of imports from other test folders because bench/merge.py
imports it with only tests/merging on ``sys.path``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import graphs


def mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def cnn(c1: int, c2: int, classes: int = 10, in_ch: int = 1) -> nn.Sequential:
    """Conv-pool-conv-pool-flatten-linear on 8×8 inputs (the flatten keeps 2×2 pixels)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(c2 * 4, classes),
    )


def cnn_bn(c1: int, c2: int, classes: int = 10, in_ch: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
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
    """torchvision's ResNet layout (BasicBlock); ResNet-18 is widths 64..512, blocks 2,2,2,2,
    stem 7, 3 input channels (the defaults)."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512),
                 blocks: tuple[int, ...] = (2, 2, 2, 2), classes: int = 1000,
                 stem_kernel: int = 7, in_ch: int = 3) -> None:
        super().__init__()
        big = stem_kernel == 7
        self.conv1 = nn.Conv2d(in_ch, widths[0], stem_kernel, 2 if big else 1, stem_kernel // 2,
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


def randomize_norms(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Non-trivial norm statistics and affine parameters, so permutations must move them."""
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
    """A randomly initialised model of a family and example inputs; ``size`` scales widths."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    s = size
    if name == "mlp":
        model, x = mlp([6, 5 + s, 4 + s, 3]), torch.randn(5, 6, generator=g)
    elif name == "cnn":
        model, x = cnn(3 + s, 4 + s, 5, 3), torch.randn(4, 3, 8, 8, generator=g)
    elif name == "cnn_bn":
        model, x = cnn_bn(3 + s, 4 + s, 5, 3), torch.randn(4, 3, 8, 8, generator=g)
    elif name == "resnet":
        model = ResNet((3 + s, 5 + s), (1 + s % 2, 1), classes=4, stem_kernel=3)
        x = torch.randn(2, 3, 8, 8, generator=g)
    elif name == "transformer":
        model = EncoderBlock(3, 8, (1, 2, 4)[s % 3], 6 + s, 2)
        x = torch.randn(2, 5, 3, generator=g)
    else:
        raise KeyError(name)
    return randomize_norms(model, g).eval(), x


def checkpoint(model: nn.Module, x: torch.Tensor) -> graphs.Checkpoint:
    return graphs.from_module(model.eval(), x)


# --- digits ------------------------------------------------------------------------------


Split = tuple[torch.Tensor, torch.Tensor]


def digits(flat: bool) -> tuple[Split, Split]:
    """sklearn's digits in [0, 1], a fixed 75/25 split: ((x_train, y_train), (x_test, y_test))."""
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)
    x = x.reshape(-1, 64) if flat else x[:, None]
    y = torch.tensor(d.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(0.75 * len(y))
    tr, te = order[:cut], order[cut:]
    return (x[tr], y[tr]), (x[te], y[te])


def train(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], seed: int,
          steps: int = 300, lr: float = 1e-2, batch: int = 64) -> nn.Module:
    """Adam on cross-entropy; the seed fixes the init and the minibatch order.

    Runs on one thread: these nets are tiny and the CPU cores are shared.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, data, seed, steps, lr, batch)
    finally:
        torch.set_num_threads(threads)


def _train(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], seed: int,
           steps: int, lr: float, batch: int) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    x, y = data
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(y), (batch,), generator=g)
        out = model(x[idx])
        if out.dim() > 2:  # sequence model: average the logits over positions
            out = out.flatten(1, -2).mean(1)
        loss = F.cross_entropy(out, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
