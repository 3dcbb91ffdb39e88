"""Weight matching (Git Re-Basin): permute B's neurons to maximize Σ_tensors <A, π(B)>.

Coordinate descent over the neuron map's units (random order each sweep): for a group,
with every *other* axis of B already permuted by the current permutations, the objective is
linear in the group's permutation, so one ``linear_sum_assignment`` on
``C = Σ_(view, axis) A_axis-first @ B_axis-first^T`` solves it exactly. A sweep that does
not raise the objective ends the descent. The spec is the neuron map itself: views handle
packed attention weights and a linear after a spatial flatten.

Without ``init`` the descent starts from an *anchored pass*, not from the identity: units are
solved one at a time, the one whose weight mass is most determined first, each on the views
whose other axes are fixed (input/output) or already solved. From the identity, a group's
first cost mixes the signal of its anchored tensors with the noise of every tensor whose
other axis is still unaligned. A transformer's residual stream is anchored only through the
small embedding and readout (6.6% of its weight mass in the digits encoder block), so the
noise won: the descent settled in self-consistent but wrong stream permutations with
*higher* barriers than no alignment (bench/merge_transformer.py).
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
from merging.assignment import Unit, assignment_value, best_device, solve_unit, units
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

    def anchored(self, view: str, axis: int, known: set[str]) -> bool:
        """Whether every other axis of ``view`` is in a fixed or already solved group."""
        return all(i == axis or g is None or g in known
                   for i, g in enumerate(self.nmap.axes[view]))

    def cost(self, gid: str, perms: dict[str, torch.Tensor],
             known: set[str] | None = None) -> torch.Tensor:
        """The group's assignment cost; with ``known``, only the anchored views count."""
        n = self.nmap.groups[gid].size
        c = torch.zeros(n, n, device=self.device)
        for view, ax in self.nmap.groups[gid].tensors:
            if view in self.b and (known is None or self.anchored(view, ax, known)):
                c += self.a_flat[(view, ax)] @ _flat(self.permuted_b(view, perms, ax), ax).T
        return c

    def anchored_start(self, todo: list[Unit]) -> dict[str, torch.Tensor]:
        """Permutations from one greedy pass that only trusts anchored views.

        The next unit is the one with the largest anchored fraction of its weight mass
        (ties: neuron-map order); its cost uses only views whose other axes are fixed or
        solved, so it never matches against an unaligned axis.
        """
        nmap = self.nmap
        mass = {(v, ax): float(self.a_flat[(v, ax)].square().sum())
                for g in nmap.groups.values() if g.permutable for v, ax in g.tensors
                if v in self.b}
        known = {g.id for g in nmap.groups.values() if not g.permutable}

        def fraction(unit: Unit) -> float:
            pairs = [p for g in unit.groups for p in nmap.groups[g].tensors if p in mass]
            total = sum(mass[p] for p in pairs)
            done = sum(mass[p] for p in pairs if self.anchored(*p, known))
            return done / total if total > 0 else 0.0

        perms: dict[str, torch.Tensor] = {}
        left = list(todo)
        while left:
            unit = max(left, key=fraction)
            left.remove(unit)
            costs = {g: self.cost(g, perms, known).to("cpu", torch.float64) for g in unit.groups}
            new = solve_unit(nmap, unit, costs)
            perms.update({k: v.to(self.device) for k, v in new.items()})
            known.update(new)
        return perms

    def value(self, perms: dict[str, torch.Tensor]) -> float:
        return float(sum(torch.vdot(self.a[v].reshape(-1).double(),
                                    self.permuted_b(v, perms).reshape(-1).double())
                         for v in self.a))


def weight_matching(a: Checkpoint, b: Checkpoint, *, max_sweeps: int = 100, seed: int = 0,
                    init: dict[str, torch.Tensor] | None = None, canonical: bool = False,
                    device: torch.device | str | None = None) -> MatchResult:
    """Align B to A by weight matching.

    ``init`` starts the descent from given permutations (groups it leaves out: identity);
    without it the descent starts from the anchored pass (see the module docstring).
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
    if init is not None:
        check_permutations(nmap, init)
        perms.update({k: v.clone() for k, v in init.items()})
    perms = {k: v.to(dev) for k, v in perms.items()}
    before = obj.value({})
    if init is None:
        start_perms = obj.anchored_start(todo)
        if obj.value(start_perms) >= before:  # never start below the identity
            perms.update(start_perms)
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
