"""Symmetry transforms: permute neuron groups without changing the network's function.

Convention: ``perms[group_id]`` is a LongTensor ``p`` of the group's size and new neuron
``i`` is old neuron ``p[i]``: every axis mapped to the group is re-indexed with
``index_select(axis, p)``. Groups absent from ``perms`` stay identity. Attention's
structured groups must respect their head blocks (see :mod:`graphs.neuron_map`).
"""

from __future__ import annotations

import torch

from graphs.errors import GraphsError
from graphs.io import Checkpoint
from graphs.neuron_map import NeuronMap, neuron_map

__all__ = [
    "PermutationError",
    "apply_permutation",
    "check_permutations",
    "random_permutation",
    "sample_permutations",
]


class PermutationError(GraphsError):
    """A permutation does not fit its group (size, not a permutation, breaks head blocks)."""


def sample_permutations(nmap: NeuronMap, generator: torch.Generator | None = None
                        ) -> dict[str, torch.Tensor]:
    """A uniformly random permutation for every permutable group, head structure included."""
    perms: dict[str, torch.Tensor] = {}
    for g in nmap.groups.values():
        if g.permutable and g.blocks is None:
            perms[g.id] = torch.randperm(g.size, generator=generator)
    for g in nmap.groups.values():
        if g.blocks is not None and g.heads is not None:
            h, d = g.blocks
            head = perms.get(g.heads, torch.arange(h))  # fixed: only within blocks
            within = torch.stack([torch.randperm(d, generator=generator) for _ in range(h)])
            perms[g.id] = (head[:, None] * d + within).reshape(-1)
    return perms


def check_permutations(nmap: NeuronMap, perms: dict[str, torch.Tensor]) -> None:
    """Raise :class:`PermutationError` unless ``perms`` is a valid symmetry of ``nmap``."""
    for gid, p in perms.items():
        g = nmap.groups.get(gid)
        if g is None:
            raise PermutationError(f"unknown neuron group {gid!r}")
        if not isinstance(p, torch.Tensor) or p.dtype != torch.long or p.shape != (g.size,):
            raise PermutationError(f"group {gid!r}: expected a LongTensor of shape ({g.size},)")
        if not torch.equal(torch.sort(p).values, torch.arange(g.size)):
            raise PermutationError(f"group {gid!r}: not a permutation of 0..{g.size - 1}")
        if not g.permutable and not torch.equal(p, torch.arange(g.size)):
            raise PermutationError(f"group {gid!r} is a fixed {g.kind} group")
    heads: dict[str, torch.Tensor] = {}
    for g in nmap.groups.values():
        if g.blocks is None or g.heads is None:
            continue
        h, d = g.blocks
        p = perms.get(g.id, torch.arange(g.size)).view(h, d) // d
        if not torch.equal(p, p[:, :1].expand(h, d)):
            raise PermutationError(f"group {g.id!r}: permutation mixes dims of different heads")
        head = p[:, 0]
        expected = heads.setdefault(g.heads, perms.get(g.heads, torch.arange(h)))
        if not torch.equal(head, expected):
            raise PermutationError(f"group {g.id!r}: head order disagrees with {g.heads!r}")


def apply_permutation(checkpoint: Checkpoint, perms: dict[str, torch.Tensor]) -> Checkpoint:
    """A new checkpoint with every axis of every permuted group re-indexed."""
    nmap = neuron_map(checkpoint.architecture)
    check_permutations(nmap, perms)
    views = nmap.split(checkpoint.tensors)
    for name, axes in nmap.axes.items():
        t = views[name]
        for axis, gid in enumerate(axes):
            if gid is not None and gid in perms:
                t = t.index_select(axis, perms[gid])
        views[name] = t
    tensors = nmap.join(views)
    # Keep the state-dict order (and untouched tensors' identity) of the input.
    ordered = {name: tensors.get(name, t) for name, t in checkpoint.tensors.items()}
    return Checkpoint(ordered, checkpoint.architecture, dict(checkpoint.metadata))


def random_permutation(checkpoint: Checkpoint, generator: torch.Generator | None = None
                       ) -> Checkpoint:
    """The checkpoint with every permutable group randomly permuted (same function)."""
    nmap = neuron_map(checkpoint.architecture)
    return apply_permutation(checkpoint, sample_permutations(nmap, generator))
