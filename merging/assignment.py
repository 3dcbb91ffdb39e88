"""Linear assignment over the neuron map's permutable groups, head structure included.

A *unit* is what one coordinate-descent step solves: a plain permutable group, or an
attention ``heads`` group together with the structured groups (``:qk``, ``:vo``) that share
its head order. Both weight and activation matching reduce to "given a cost matrix per group,
pick the best permutation per unit", so they share :func:`solve_unit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from graphs import NeuronMap

__all__ = ["Unit", "assignment_value", "best_device", "solve_unit", "units"]


def best_device() -> torch.device:
    """CUDA when present: cost matrices are matrix products of whole layers."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Unit:
    """``groups`` share one solve; ``heads`` is set for an attention unit."""

    groups: tuple[str, ...]
    heads: str | None = None


def units(nmap: NeuronMap) -> list[Unit]:
    """Every independently solvable piece of the permutation spec, in neuron-map order."""
    structured: dict[str, list[str]] = {}
    for g in nmap.groups.values():
        if g.blocks is not None and g.heads is not None and g.permutable:
            structured.setdefault(g.heads, []).append(g.id)
    out: list[Unit] = []
    for g in nmap.groups.values():
        if g.blocks is not None or not (g.permutable or g.id in structured):
            continue  # a fixed block order still leaves its groups' within-block orders
        if g.id in structured:
            out.append(Unit(tuple(structured[g.id]), heads=g.id))
        else:
            out.append(Unit((g.id,)))
    return out


def _lsa(cost: np.ndarray) -> np.ndarray:
    """``p`` with ``p[i]`` the B neuron matched to A neuron ``i`` (maximizing)."""
    rows, cols = linear_sum_assignment(cost, maximize=True)
    p = np.empty(cost.shape[0], dtype=np.int64)
    p[rows] = cols
    return p


def assignment_value(cost: torch.Tensor, p: torch.Tensor) -> float:
    """Σ_i cost[i, p[i]] in float64: the objective a permutation earns on a cost matrix."""
    c = cost.detach().to("cpu", torch.float64)
    return float(c[torch.arange(c.shape[0]), p].sum())


def solve_unit(nmap: NeuronMap, unit: Unit, costs: dict[str, torch.Tensor]
               ) -> dict[str, torch.Tensor]:
    """Best permutations for one unit given an (A × B) cost matrix per group of the unit.

    For attention: every (head of A, head of B) pair gets the sum over the unit's groups of
    the best within-head d×d assignment value; the heads are assigned on that H×H score and
    each group keeps the within-head assignment of the chosen pair, so ``:qk``, ``:vo`` and
    ``heads`` agree on one head order (as :func:`graphs.check_permutations` requires).
    """
    if unit.heads is None:
        (gid,) = unit.groups
        cost = costs[gid].detach().to("cpu", torch.float64).numpy()
        return {gid: torch.from_numpy(_lsa(cost))}
    h = nmap.groups[unit.heads].size
    free = nmap.groups[unit.heads].permutable  # a fixed block order: diagonal pairs only
    dims = {gid: nmap.groups[gid].blocks[1] for gid in unit.groups}  # type: ignore[index]
    blocks = {gid: costs[gid].detach().to("cpu", torch.float64).reshape(h, d, h, d)
              .permute(0, 2, 1, 3).numpy() for gid, d in dims.items()}
    score = np.zeros((h, h))
    within: dict[str, np.ndarray] = {gid: np.zeros((h, h, d), dtype=np.int64)
                                     for gid, d in dims.items()}
    for gid, c in blocks.items():
        for i in range(h):
            for j in range(h) if free else (i,):
                p = _lsa(c[i, j])
                within[gid][i, j] = p
                score[i, j] += c[i, j][np.arange(dims[gid]), p].sum()
    head = _lsa(score) if free else np.arange(h)
    out = {unit.heads: torch.from_numpy(head)} if free else {}
    for gid, d in dims.items():
        w = within[gid][np.arange(h), head]  # (h, d): within-block perm of the chosen pair
        out[gid] = torch.from_numpy(head[:, None] * d + w).reshape(-1)
    return out
