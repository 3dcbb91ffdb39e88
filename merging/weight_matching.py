"""Weight matching (Git Re-Basin): permute B's neurons to maximize Σ_tensors <A, π(B)>.

Coordinate descent over the neuron map's units (random order each sweep): for a group,
with every *other* axis of B already permuted by the current permutations, the objective is
linear in the group's permutation, so one ``linear_sum_assignment`` on
``C = Σ_(view, axis) A_axis-first @ B_axis-first^T`` solves it exactly. A sweep that does
not raise the objective ends the descent. The spec is the neuron map itself: views handle
packed attention weights and a linear after a spatial flatten.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import torch

from graphs import (
    Checkpoint,
    NeuronMap,
    apply_permutation,
    canonicalize,
    check_permutations,
    neuron_map,
)
from merging.assignment import assignment_value, best_device, solve_unit, units
from merging.errors import UnsupportedMergeError

__all__ = ["STAT_ROLES", "MatchResult", "matched_views", "weight_matching"]

# BatchNorm statistics are not weights: they are recomputed (or repaired) after a merge.
STAT_ROLES = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class MatchResult:
    """Permutations that align B to A (``perms[g]``: new neuron i of B is old ``p[i]``)."""

    perms: dict[str, torch.Tensor]
    objective_before: float
    objective_after: float
    sweeps: int
    seconds: float
    method: str
    history: list[float] = field(default_factory=list)  # objective after each sweep
    # The permutations align the canonical forms (graphs.canonicalize) of A and B.
    canonical: bool = False

    def apply(self, b: Checkpoint) -> Checkpoint:
        """B with its neurons reordered to line up with A (same function as B).

        For a match of canonical forms, B is canonicalized first (still B's function).
        """
        return apply_permutation(canonicalize(b) if self.canonical else b, self.perms)

    def endpoints(self, a: Checkpoint, b: Checkpoint) -> tuple[Checkpoint, Checkpoint]:
        """The two networks to interpolate between: A and aligned B (canonical if matched so).
        """
        return (canonicalize(a) if self.canonical else a), self.apply(b)


def _check_pair(a: Checkpoint, b: Checkpoint) -> NeuronMap:
    if a.architecture != b.architecture:
        raise UnsupportedMergeError(
            "checkpoints to align by permutation must share one architecture (networks of "
            "different widths: method 'ot'; of different depths: method 'clafusion')")
    return neuron_map(a.architecture)


def matched_views(checkpoint: Checkpoint) -> list[str]:
    """Views the weight objective sums over: float weights, not BatchNorm statistics."""
    arch = checkpoint.architecture
    stats = {name for n in arch.nodes for role, name in n.params.items() if role in STAT_ROLES}
    nmap = neuron_map(arch)
    return [v for v, view in nmap.views.items()
            if view.tensor not in stats and checkpoint.tensors[view.tensor].is_floating_point()
            and any(g is not None for g in nmap.axes[v])]


def _flat(t: torch.Tensor, axis: int) -> torch.Tensor:
    return t.movedim(axis, 0).reshape(t.shape[axis], -1)


class _Objective:
    """A's views (axis-first, cached) and B's views on one device."""

    def __init__(self, nmap: NeuronMap, a: Checkpoint, b: Checkpoint,
                 device: torch.device) -> None:
        self.nmap = nmap
        names = matched_views(a)
        va, vb = nmap.split(a.tensors), nmap.split(b.tensors)
        self.a = {v: va[v].to(device, torch.float32) for v in names}
        self.b = {v: vb[v].to(device, torch.float32) for v in names}
        self.a_flat = {(v, ax): _flat(self.a[v], ax) for v in names
                       for ax, g in enumerate(nmap.axes[v]) if g is not None}
        self.device = device

    def permuted_b(self, view: str, perms: dict[str, torch.Tensor],
                   skip: int | None = None) -> torch.Tensor:
        t = self.b[view]
        for ax, g in enumerate(self.nmap.axes[view]):
            if ax != skip and g is not None and g in perms:
                t = t.index_select(ax, perms[g])
        return t

    def cost(self, gid: str, perms: dict[str, torch.Tensor]) -> torch.Tensor:
        n = self.nmap.groups[gid].size
        c = torch.zeros(n, n, device=self.device)
        for view, ax in self.nmap.groups[gid].tensors:
            if view in self.b:
                c += self.a_flat[(view, ax)] @ _flat(self.permuted_b(view, perms, ax), ax).T
        return c

    def value(self, perms: dict[str, torch.Tensor]) -> float:
        return float(sum(torch.vdot(self.a[v].reshape(-1).double(),
                                    self.permuted_b(v, perms).reshape(-1).double())
                         for v in self.a))


def weight_matching(a: Checkpoint, b: Checkpoint, *, max_sweeps: int = 100, seed: int = 0,
                    init: dict[str, torch.Tensor] | None = None, canonical: bool = False,
                    device: torch.device | str | None = None) -> MatchResult:
    """Align B to A by weight matching; ``init`` starts from given permutations.

    ``canonical=True`` matches the canonical forms of A and B (``graphs.canonicalize``:
    ReLU neurons' scales moved out of their incoming weights, odd activations' signs fixed),
    so neurons that differ only by a scale or sign compare equal; the result then aligns
    (and :meth:`MatchResult.endpoints` interpolates) the canonical forms.
    """
    start = time.perf_counter()
    nmap = _check_pair(a, b)
    if canonical:
        a, b = canonicalize(a), canonicalize(b)
    dev = torch.device(device) if device is not None else best_device()
    obj = _Objective(nmap, a, b, dev)
    todo = units(nmap)
    perms = {g.id: torch.arange(g.size) for g in nmap.permutable_groups()}
    if init:
        check_permutations(nmap, init)
        perms.update({k: v.clone() for k, v in init.items()})
    perms = {k: v.to(dev) for k, v in perms.items()}
    before = obj.value({})
    history = [obj.value(perms)]
    rng = random.Random(seed)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):  # noqa: B007 - the count is reported
        rng.shuffle(todo)
        progress = False
        gain = 0.0
        for unit in todo:
            costs = {gid: obj.cost(gid, perms).to("cpu", torch.float64) for gid in unit.groups}
            new = solve_unit(nmap, unit, costs)
            old_value = sum(assignment_value(costs[g], perms[g].cpu()) for g in unit.groups)
            new_value = sum(assignment_value(costs[g], new[g]) for g in unit.groups)
            if new_value > old_value + 1e-10 * max(1.0, abs(old_value)):
                progress = True
                gain += new_value - old_value
                perms.update({k: v.to(dev) for k, v in new.items()})
        history.append(history[-1] + gain)  # exact unless a view has one group on two axes
        if not progress:
            break
    result = {k: v.cpu() for k, v in perms.items()}
    check_permutations(nmap, result)
    after = obj.value(perms)
    return MatchResult(result, before, after, sweeps, time.perf_counter() - start,
                       "weight", history, canonical)
