"""Straight-through estimator matching (Git Re-Basin, Ainsworth et al., ICLR 2023, Alg. 3).

Weight and activation matching optimize proxies; STE matching optimizes what a merge is for:
the loss of the midpoint ½(θ_A + π(θ_B)) on data. The permutation is discrete, so the method
keeps free weights θ̃ (initialized to θ_A) and, every step,

1. projects: π = weight matching of θ_B onto θ̃ (the LAP coordinate descent of
   :mod:`merging.weight_matching`, warm-started from the previous π);
2. evaluates the midpoint with the straight-through trick, θ_B' = θ̃ + sg(π(θ_B) − θ̃): the
   forward pass sees exactly ½(θ_A + π(θ_B)), the gradient flows into θ̃;
3. takes an Adam step on θ̃.

At the end each permutation visited at an epoch boundary, and the weight-matching one it
started from, is scored by the midpoint's loss on a held-in slice of the training data; the
best is returned, so STE never does worse than its weight-matching start on that slice.
BatchNorm layers use batch statistics in the midpoint (what a reset computes afterwards).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from graphs import Checkpoint, apply_permutation, check_permutations
from merging.assignment import best_device
from merging.errors import MergeInputError
from merging.forward import load_module
from merging.weight_matching import MatchResult, _check_pair, _Objective, weight_matching

__all__ = ["ste_matching"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _logits(module: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor
            ) -> torch.Tensor:
    out = functional_call(module, params, (x,))
    return out.flatten(1, -2).mean(1) if out.dim() > 2 else out


def _midpoint_loss(module: nn.Module, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                   x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        mid = {k: torch.lerp(v, b[k], 0.5) if v.is_floating_point() else v.clone()
               for k, v in a.items()}
        return float(F.cross_entropy(_logits(module, mid, x), y))


def ste_matching(a: Checkpoint, b: Checkpoint, data: tuple[torch.Tensor, torch.Tensor], *,
                 epochs: int = 3, steps_per_epoch: int = 60, lr: float = 1e-3,
                 batch_size: int = 128, seed: int = 0, holdout: int = 1024,
                 device: torch.device | str | None = None) -> MatchResult:
    """Align B to A by learning the midpoint's loss through the permutation.

    ``data`` is ``(x, y)`` training data of a classifier (cross-entropy). ``history`` holds
    the mean training loss of the straight-through midpoint per epoch.
    """
    start = time.perf_counter()
    nmap = _check_pair(a, b)
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise MergeInputError("STE matching needs labelled data (x, y)")
    x, y = data
    dev = torch.device(device) if device is not None else best_device()
    g = torch.Generator().manual_seed(seed)
    module = load_module(a, dev)
    for m in module.modules():  # midpoints use batch statistics, like a BatchNorm reset
        if isinstance(m, _BN):
            m.train()
    names = [k for k, _ in module.named_parameters()]
    ta = {k: v.to(dev) for k, v in a.tensors.items()}
    free = {k: ta[k].clone().float().requires_grad_(True) for k in names}
    opt = torch.optim.Adam(free.values(), lr=lr)

    def project(perms: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        current = {**a.tensors, **{k: v.detach().to("cpu", a.tensors[k].dtype)
                                   for k, v in free.items()}}
        target = Checkpoint(current, a.architecture, {})
        return weight_matching(target, b, init=perms, device=dev, seed=seed).perms

    perms = weight_matching(a, b, device=dev, seed=seed).perms
    candidates = [perms]
    history: list[float] = []
    for _ in range(epochs):
        total = 0.0
        for _ in range(steps_per_epoch):
            perms = project(perms)
            pb = {k: v.to(dev) for k, v in apply_permutation(b, perms).tensors.items()}
            params = {}
            for k, v in ta.items():
                if k in free:
                    straight = free[k] + (pb[k].to(free[k]) - free[k]).detach()
                    params[k] = 0.5 * (v + straight)
                else:  # BatchNorm buffers: unused with batch statistics, lerped for shape
                    params[k] = (torch.lerp(v, pb[k], 0.5) if v.is_floating_point()
                                 else v.clone())
            idx = torch.randint(len(y), (batch_size,), generator=g)
            loss = F.cross_entropy(_logits(module, params, x[idx].to(dev)), y[idx].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        history.append(total / steps_per_epoch)
        candidates.append(project(perms))
    # Score every distinct candidate on a fixed held-in slice and keep the best.
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:holdout]
    xs, ys = x[order].to(dev), y[order].to(dev)
    best, best_loss = candidates[0], float("inf")
    seen: list[dict[str, torch.Tensor]] = []
    for cand in candidates:
        if any(all(torch.equal(cand[k], s[k]) for k in cand) for s in seen):
            continue
        seen.append(cand)
        pb = {k: v.to(dev) for k, v in apply_permutation(b, cand).tensors.items()}
        loss = _midpoint_loss(module, ta, pb, xs, ys)
        if loss < best_loss:
            best, best_loss = cand, loss
    best = {k: v.cpu() for k, v in best.items()}
    check_permutations(nmap, best)
    obj = _Objective(nmap, a, b, torch.device("cpu"))
    return MatchResult(best, obj.value({}), obj.value(best), epochs * steps_per_epoch,
                       time.perf_counter() - start, "ste", history)
