"""Linear interpolation between checkpoints, naive and aligned, and the loss barrier.

θ_λ = (1−λ)·θ_A + λ·θ_B for every float tensor, BatchNorm running statistics included
(integer counters are A's). On data ``(x, y)`` (classification) each θ_λ is rebuilt with
``graphs.build_module`` and scored by cross-entropy and accuracy. The barrier is
``max_λ L(θ_λ) − ((1−λ)L_A + λL_B)``; the accuracy barrier is
``max_λ ((1−λ)acc_A + λ·acc_B) − acc(θ_λ)``. The BatchNorm statistics of each θ_λ are
``"stale"`` (lerped), ``"reset"`` on the data, or ``"repair"`` (see :mod:`merging.batchnorm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from graphs import Checkpoint, OpGraphModule
from merging.activation_matching import activation_matching
from merging.assignment import best_device
from merging.batchnorm import has_batchnorm, layer_stats, repair, repair_targets, reset_bn
from merging.forward import batches, load_module
from merging.weight_matching import MatchResult, weight_matching

__all__ = ["BnMode", "InterpolationResult", "Path", "evaluate", "interpolate", "lerp_tensors",
           "merged_module"]

BnMode = Literal["stale", "reset", "repair"]


@dataclass
class Path:
    """Loss and accuracy along λ on one path (``None`` without data)."""

    lambdas: list[float]
    losses: list[float] | None
    accuracies: list[float] | None
    bn: BnMode
    distance: float  # ‖θ_A − θ_B‖ of the path's endpoints (B aligned or not)

    @property
    def barrier(self) -> float | None:
        if self.losses is None:
            return None
        la, lb = self.losses[0], self.losses[-1]
        return max(v - ((1 - t) * la + t * lb) for t, v in zip(self.lambdas, self.losses,
                                                                  strict=True))

    @property
    def accuracy_barrier(self) -> float | None:
        if self.accuracies is None:
            return None
        aa, ab = self.accuracies[0], self.accuracies[-1]
        return max((1 - t) * aa + t * ab - acc for t, acc in zip(self.lambdas, self.accuracies,
                                                                 strict=True))

    def at(self, lam: float) -> tuple[float | None, float | None]:
        """Loss and accuracy at the grid point closest to ``lam``."""
        i = min(range(len(self.lambdas)), key=lambda k: abs(self.lambdas[k] - lam))
        return (None if self.losses is None else self.losses[i],
                None if self.accuracies is None else self.accuracies[i])


@dataclass
class InterpolationResult:
    naive: Path
    aligned: Path | None
    match: MatchResult | None


def lerp_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], lam: float
                 ) -> dict[str, torch.Tensor]:
    """(1−λ)·a + λ·b for float tensors; others (BatchNorm counters) are a's. Equal entries
    stay as they are (an additive attention mask's -inf would otherwise become NaN)."""
    out = {}
    for k, v in a.items():
        if v.is_floating_point():
            w = b[k].to(v)
            out[k] = torch.where(v == w, v, torch.lerp(v, w, lam))
        else:
            out[k] = v.clone()
    return out


def _distance(a: Checkpoint, b: Checkpoint) -> float:
    return float(sum(((v.double() - b.tensors[k].double()) ** 2).sum()
                     for k, v in a.tensors.items() if v.is_floating_point()) ** 0.5)


@torch.no_grad()
def evaluate(module: OpGraphModule, data: tuple[torch.Tensor, torch.Tensor],
             batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a classifier on ``(x, y)``.

    Outputs with position axes (``(N, T, classes)``) are averaged over the positions.
    """
    x, y = data
    device = next(module.parameters()).device
    loss, correct = 0.0, 0
    for xb, yb in zip(batches(x, batch_size, device), batches(y, batch_size, device),
                      strict=True):
        out = module(xb)
        if out.dim() > 2:  # sequence models: logits averaged over positions
            out = out.flatten(1, -2).mean(1)
        loss += float(F.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(-1) == yb).sum())
    return loss / len(y), correct / len(y)


def merged_module(a: Checkpoint, b: Checkpoint, lam: float, bn: BnMode,
                  x: torch.Tensor | None, device: torch.device,
                  stats: tuple[dict, dict] | None = None) -> OpGraphModule:
    """The network at θ_λ between A and B (B already aligned), with BatchNorm handled."""
    module = load_module((a.architecture, lerp_tensors(a.tensors, b.tensors, lam)), device)
    if bn != "stale":
        if x is None:
            raise ValueError(f"bn={bn!r} needs data")
        if bn == "reset":
            reset_bn(module, x)
        else:
            if stats is None:
                stats = _endpoint_stats(a, b, x, device)
            repair(module, x, *stats, lam)
    return module


def _endpoint_stats(a: Checkpoint, b: Checkpoint, x: torch.Tensor, device: torch.device
                    ) -> tuple[dict, dict]:
    nodes = repair_targets(a.architecture)
    return (layer_stats(load_module(a, device), x, nodes),
            layer_stats(load_module(b, device), x, nodes))


def _path(a: Checkpoint, b: Checkpoint, lambdas: list[float],
          data: tuple[torch.Tensor, torch.Tensor] | None, bn: BnMode,
          device: torch.device) -> Path:
    if data is None:
        return Path(lambdas, None, None, "stale", _distance(a, b))
    stats = _endpoint_stats(a, b, data[0], device) if bn == "repair" else None
    losses, accs = [], []
    for lam in lambdas:
        # The endpoints are the networks as given; BatchNorm handling is for merges only.
        mode: BnMode = "stale" if lam in (0.0, 1.0) else bn
        module = merged_module(a, b, lam, mode, data[0], device, stats)
        loss, acc = evaluate(module, data)
        losses.append(loss)
        accs.append(acc)
    return Path(lambdas, losses, accs, bn, _distance(a, b))


def interpolate(a: Checkpoint, b: Checkpoint, lambdas: int | list[float] = 25,
                data: tuple[torch.Tensor, torch.Tensor] | None = None, *,
                match: MatchResult | Literal["weight", "activation"] | None = "weight",
                bn: BnMode | None = None,
                device: torch.device | str | None = None) -> InterpolationResult:
    """Loss/accuracy curves from A to B, naive and after aligning B to A.

    ``match`` is a precomputed :class:`MatchResult`, a method name, or ``None`` (naive path
    only). ``bn`` defaults to ``"reset"`` for BatchNorm networks when data is given, else
    ``"stale"``. Without data the paths carry only the endpoints' distance.
    """
    dev = torch.device(device) if device is not None else best_device()
    grid = ([i / (lambdas - 1) for i in range(lambdas)] if isinstance(lambdas, int)
            else [float(t) for t in lambdas])
    if bn is None:
        bn = "reset" if data is not None and has_batchnorm(a.architecture) else "stale"
    if bn != "stale" and data is None:
        raise ValueError(f"bn={bn!r} needs data")
    if match == "weight":
        match = weight_matching(a, b, device=dev)
    elif match == "activation":
        if data is None:
            raise ValueError("activation matching needs data")
        match = activation_matching(a, b, data, device=dev)
    naive = _path(a, b, grid, data, bn, dev)
    aligned = None if match is None else _path(*match.endpoints(a, b), grid, data, bn, dev)
    return InterpolationResult(naive, aligned, match)
