"""Modules the op graph knows by name that torch does not ship."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Cosine", "Sine"]


class Sine(nn.Module):
    """``sin(w0 * x)``: the SIREN activation (Sitzmann et al., 2020).

    SIREN uses ``w0 = 30`` (on the first layer, and by the reference code on every layer with
    weights scaled by ``1/w0``); :func:`graphs.describe` records whatever ``w0`` you set.
    """

    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


class Cosine(Sine):
    """``cos(w0 * x)``: the cosine counterpart of :class:`Sine`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cos(self.w0 * x)
