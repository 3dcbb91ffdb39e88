"""The concrete networks a zoo is made of: plain nn.Modules traceable by torch.fx.

Every layer is a named attribute (conv1, bn1, fc2, head ...) so state-dict names are short
and stable, and every nonlinearity is a module (never a functional call) so training can swap
it for a per-model choice (see zoo/train.py). Only ops graphs.describe() supports are used.
"""

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}
ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


class ConvNet(nn.Module):
    """conv3x3(stride 2) [→ BatchNorm] → act, repeated; global average pool; dropout; linear head.

    Stride 2 everywhere takes the 8×8 digits to 4×4, 2×2, 1×1: cheap enough to train
    thousands, and the first layer still sees every pixel.
    """

    def __init__(
        self,
        widths: list[int],
        activation: str,
        batchnorm: bool = False,
        dropout: float = 0.0,
        in_channels: int = 1,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.depth = len(widths)
        self.batchnorm = batchnorm
        prev = in_channels
        for i, w in enumerate(widths, start=1):
            # No conv bias before BatchNorm: it cancels out, its gradient is float noise that
            # Adam would amplify into arbitrary drift.
            conv = nn.Conv2d(prev, w, 3, stride=2, padding=1, bias=not batchnorm)
            self.add_module(f"conv{i}", conv)
            if batchnorm:
                self.add_module(f"bn{i}", nn.BatchNorm2d(w))
            self.add_module(f"act{i}", make_activation(activation))
            prev = w
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.depth + 1):
            x = getattr(self, f"conv{i}")(x)
            if self.batchnorm:
                x = getattr(self, f"bn{i}")(x)
            x = getattr(self, f"act{i}")(x)
        return self.head(self.dropout(self.flatten(self.pool(x))))


class MLP(nn.Module):
    """flatten → (linear → act) × depth → dropout → linear head."""

    def __init__(
        self,
        widths: list[int],
        activation: str,
        dropout: float = 0.0,
        in_features: int = 64,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.depth = len(widths)
        self.flatten = nn.Flatten()
        prev = in_features
        for i, w in enumerate(widths, start=1):
            self.add_module(f"fc{i}", nn.Linear(prev, w))
            self.add_module(f"act{i}", make_activation(activation))
            prev = w
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for i in range(1, self.depth + 1):
            x = getattr(self, f"act{i}")(getattr(self, f"fc{i}")(x))
        return self.head(self.dropout(x))


class ResNet(nn.Module):
    """Stem conv(stride 2)+BN+act, then residual blocks (conv-BN-act-conv-BN, + identity, act).

    One width throughout, so every block's identity shortcut joins one channel group.
    """

    def __init__(
        self,
        width: int,
        blocks: int,
        activation: str,
        dropout: float = 0.0,
        in_channels: int = 1,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.stem = nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.stem_act = make_activation(activation)
        for i in range(1, blocks + 1):
            self.add_module(f"block{i}_conv1", nn.Conv2d(width, width, 3, padding=1, bias=False))
            self.add_module(f"block{i}_bn1", nn.BatchNorm2d(width))
            self.add_module(f"block{i}_act1", make_activation(activation))
            self.add_module(f"block{i}_conv2", nn.Conv2d(width, width, 3, padding=1, bias=False))
            self.add_module(f"block{i}_bn2", nn.BatchNorm2d(width))
            self.add_module(f"block{i}_act2", make_activation(activation))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem(x)))
        for i in range(1, self.blocks + 1):
            h = getattr(self, f"block{i}_act1")(
                getattr(self, f"block{i}_bn1")(getattr(self, f"block{i}_conv1")(x))
            )
            h = getattr(self, f"block{i}_bn2")(getattr(self, f"block{i}_conv2")(h))
            x = getattr(self, f"block{i}_act2")(x + h)
        return self.head(self.dropout(self.flatten(self.pool(x))))


class Siren(nn.Module):
    """SIREN INR: (row, col) in [-1, 1]^2 → intensity; linear → sin(w0·) layers."""

    def __init__(self, hidden: int = 32, layers: int = 2, w0: float = 30.0) -> None:
        super().__init__()
        from graphs import Sine  # the op graph recognises graphs.Sine, so INRs describe themselves

        self.layers = layers
        prev = 2
        for i in range(1, layers + 1):
            self.add_module(f"fc{i}", nn.Linear(prev, hidden))
            self.add_module(f"sine{i}", Sine(w0))
            prev = hidden
        self.head = nn.Linear(prev, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.layers + 1):
            x = getattr(self, f"sine{i}")(getattr(self, f"fc{i}")(x))
        return self.head(x)
