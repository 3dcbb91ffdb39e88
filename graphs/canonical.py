"""Canonical form of a checkpoint under the scale and sign symmetries of its activations.

Permutations are not a network's only weight-space symmetry. A neuron followed by a
positively homogeneous activation (ReLU, leaky ReLU: σ(s·x) = s·σ(x) for s > 0) computes the
same function when its incoming weights and bias are divided by s and its outgoing weights
multiplied by s; a neuron followed by an odd activation (tanh, sine without phase:
σ(−x) = −σ(x)) computes the same function with both sides negated. ScaleGMN
(Kalogeropoulos et al., NeurIPS 2024) builds metanetworks invariant to these symmetries;
here we remove them instead, by choosing one representative per orbit:

* **scale**: every such neuron's incoming vector (its weight row and bias, or the affine
  weight and bias of the norm that produces it) gets unit Euclidean norm, the factor moving
  into the outgoing weights of the layers that read it;
* **sign**: every such neuron's incoming vector is negated where its first non-zero entry
  (bias first) is negative, and so are its outgoing weights.

Which neurons qualify is derived from the op graph and the neuron map, with no
per-architecture code: for a hidden neuron group, the *producer* is the last node with
per-neuron affine parameters (linear, conv, or a norm with an affine transform) whose output
lies in the group; everything reading that output must be either an op that commutes with
the symmetry (ReLU/leaky ReLU/max pooling for scale; tanh/sine for sign; average pooling,
dropout and flatten for both) staying in the group, or a linear/conv reading the group as its
input features. Groups joined by a residual ``add``, attention groups, GELU/SiLU/sigmoid and
norms downstream of the producer have no such symmetry and are left alone.

Groups are processed in topological order of their producers: a group's rescaling changes
the next group's incoming weights, which that group then normalizes. This makes the result
the same for every scaled or sign-flipped copy of a network (a canonical form), and it is
idempotent.

:func:`scale_invariant_input` is the metanetwork input built on this: the canonical
checkpoint, whose parameter graph is identical for all copies related by these symmetries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from graphs.architecture import Architecture
from graphs.io import Checkpoint
from graphs.neuron_map import NeuronMap, neuron_map

__all__ = ["CanonicalGroup", "canonical_groups", "canonicalize", "random_rescaling",
           "scale_invariant_input"]

Symmetry = Literal["scale", "sign"]

_AFFINE_PRODUCERS = ("linear", "conv1d", "conv2d")
_NORM_PRODUCERS = ("batchnorm1d", "batchnorm2d", "layernorm")
_CONSUMERS = ("linear", "conv1d", "conv2d")
# Which symmetry each op on the way from producer to consumers keeps: σ(s·x) = s·σ(x) for
# s > 0 ("scale"), σ(−x) = −σ(x) ("sign"). Linear ops keep both.
_KEEPS: dict[str, frozenset[str]] = {
    "relu": frozenset({"scale"}),
    "leaky_relu": frozenset({"scale"}),
    "max_pool1d": frozenset({"scale"}),
    "max_pool2d": frozenset({"scale"}),
    "adaptive_max_pool1d": frozenset({"scale"}),
    "adaptive_max_pool2d": frozenset({"scale"}),
    "tanh": frozenset({"sign"}),
    "sine": frozenset({"sign"}),
    "avg_pool1d": frozenset({"scale", "sign"}),
    "avg_pool2d": frozenset({"scale", "sign"}),
    "adaptive_avg_pool1d": frozenset({"scale", "sign"}),
    "adaptive_avg_pool2d": frozenset({"scale", "sign"}),
    "dropout": frozenset({"scale", "sign"}),
    "flatten": frozenset({"scale", "sign"}),
}


@dataclass(frozen=True)
class CanonicalGroup:
    """A neuron group with a scale or sign symmetry and where its neurons' weights live.

    ``incoming``: (view, axis) pairs of the producer's per-neuron parameters (axis 0);
    ``outgoing``: (view, axis) pairs of the consumers' weights that read the group.
    """

    group: str
    symmetries: frozenset[Symmetry]
    producer: str
    incoming: tuple[tuple[str, int], ...]
    outgoing: tuple[tuple[str, int], ...]


def _producer_params(arch: Architecture, node_name: str) -> list[str] | None:
    """The tensors holding a node's per-output-neuron affine parameters, or None."""
    node = arch.node(node_name)
    if node.op in _AFFINE_PRODUCERS:
        return [node.params[r] for r in ("weight", "bias") if r in node.params]
    if node.op in _NORM_PRODUCERS and "weight" in node.params:
        return [node.params[r] for r in ("weight", "bias") if r in node.params]
    return None


def _symmetry_of(arch: Architecture, nmap: NeuronMap, gid: str, producer: str
                 ) -> tuple[frozenset[str], list[str]] | None:
    """Symmetries kept from ``producer``'s output to its consumers, and those consumers."""
    consumers = arch.consumers()
    keeps = frozenset({"scale", "sign"})
    readers: list[str] = []
    frontier = [producer]
    seen = {producer}
    while frontier:
        value = frontier.pop()
        for node in consumers[value]:
            if node.name in seen:
                continue
            seen.add(node.name)
            if nmap.value_groups.get(node.name) == gid:
                if node.op not in _KEEPS:
                    return None  # a norm, add, attention or non-homogeneous activation
                keeps = keeps & _KEEPS[node.op]
                frontier.append(node.name)
            elif node.op in _CONSUMERS:
                readers.append(node.name)
            else:
                return None
    return keeps, readers


def canonical_groups(architecture: Architecture, *, scale: bool = True, sign: bool = True
                     ) -> list[CanonicalGroup]:
    """The groups :func:`canonicalize` normalizes, in topological order of their producers."""
    nmap = neuron_map(architecture)
    order = {n.name: i for i, n in enumerate(architecture.nodes)}
    out: list[CanonicalGroup] = []
    for g in nmap.groups.values():
        if not g.permutable or g.blocks is not None or g.heads is not None:
            continue
        producers = [name for name in g.layers if name in order
                     and nmap.value_groups.get(name) == g.id
                     and _producer_params(architecture, name) is not None]
        if not producers:
            continue
        producer = max(producers, key=order.__getitem__)
        found = _symmetry_of(architecture, nmap, g.id, producer)
        if found is None:
            continue
        keeps, readers = found
        wanted = {s for s, on in (("scale", scale), ("sign", sign)) if on}
        symmetries = frozenset(keeps & wanted)
        if not symmetries or not readers:
            continue
        own = set(_producer_params(architecture, producer) or [])
        reader_weights = {architecture.node(r).params["weight"] for r in readers}
        incoming, outgoing = [], []
        for view, axis in sorted(g.tensors, key=lambda t: not t[0].endswith("bias")):
            tensor = nmap.views[view].tensor
            if tensor in own and axis == 0:
                incoming.append((view, axis))
            elif tensor in reader_weights and axis == 1:
                outgoing.append((view, axis))
        if len(outgoing) != len(readers):
            continue  # a reader whose weight does not index the group on its input axis
        out.append(CanonicalGroup(g.id, symmetries, producer, tuple(incoming), tuple(outgoing)))
    out.sort(key=lambda c: order[c.producer])
    return out


def _shape_along(t: torch.Tensor, axis: int, factor: torch.Tensor) -> torch.Tensor:
    shape = [1] * t.dim()
    shape[axis] = -1
    return factor.reshape(shape).to(t)


def _incoming_matrix(views: dict[str, torch.Tensor], incoming: tuple[tuple[str, int], ...]
                     ) -> torch.Tensor:
    """(neurons, everything feeding them) in float64, in ``incoming`` order (bias first)."""
    return torch.cat([views[v].movedim(a, 0).reshape(views[v].shape[a], -1).double()
                      for v, a in incoming], 1)


def _first_nonzero_sign(m: torch.Tensor) -> torch.Tensor:
    nonzero = m != 0
    first = torch.where(nonzero.any(1), nonzero.double().argmax(1), 0)
    s = torch.sign(m[torch.arange(m.shape[0]), first])
    return torch.where(s == 0, torch.ones_like(s), s)


def _rescale(checkpoint: Checkpoint, factors: dict[str, torch.Tensor],
             groups: list[CanonicalGroup]) -> Checkpoint:
    """Divide each group's incoming and multiply its outgoing weights by its factors."""
    arch = checkpoint.architecture
    nmap = neuron_map(arch)
    views = nmap.split(checkpoint.tensors)
    changed: set[str] = set()
    for c in groups:
        factor = factors[c.group]
        for v, a in c.incoming:
            views[v] = (views[v].double() / _shape_along(views[v], a, factor).double()
                        ).to(views[v].dtype)
            changed.add(v)
        for v, a in c.outgoing:
            views[v] = (views[v].double() * _shape_along(views[v], a, factor).double()
                        ).to(views[v].dtype)
            changed.add(v)
    tensors = nmap.join(views)
    touched = {nmap.views[v].tensor for v in changed}
    ordered = {name: (tensors[name] if name in touched else t)
               for name, t in checkpoint.tensors.items()}
    return Checkpoint(ordered, arch, dict(checkpoint.metadata))


def random_rescaling(checkpoint: Checkpoint, generator: torch.Generator | None = None,
                     low: float = 0.25, high: float = 4.0) -> Checkpoint:
    """A copy with every canonical group's neurons randomly rescaled / sign-flipped.

    Scale groups get log-uniform factors in [low, high]; sign groups random signs (groups
    with both get both). The function is unchanged: for tests and data augmentation.
    """
    groups = canonical_groups(checkpoint.architecture)
    nmap = neuron_map(checkpoint.architecture)
    factors = {}
    for c in groups:
        n = nmap.groups[c.group].size
        f = torch.ones(n, dtype=torch.float64)
        if "scale" in c.symmetries:
            u = torch.rand(n, generator=generator, dtype=torch.float64)
            f = torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        if "sign" in c.symmetries:
            f = f * (torch.randint(0, 2, (n,), generator=generator) * 2 - 1).double()
        factors[c.group] = f
    return _rescale(checkpoint, factors, groups)


def canonicalize(checkpoint: Checkpoint, *, scale: bool = True, sign: bool = True
                 ) -> Checkpoint:
    """The canonical representative of ``checkpoint`` under scale and sign symmetries.

    Same architecture, same function (float rounding aside), same metadata. Neurons with an
    all-zero incoming vector (dead) keep their weights. ``scale``/``sign`` turn either
    symmetry off; a purely linear path (no activation) counts as a scale symmetry.
    """
    arch = checkpoint.architecture
    nmap = neuron_map(arch)
    out = checkpoint
    # One group at a time, in producer order: a group's factors are read off its incoming
    # weights *after* the groups before it moved their scales into them.
    for c in canonical_groups(arch, scale=scale, sign=sign):
        m = _incoming_matrix(nmap.split(out.tensors), c.incoming)
        factor = torch.ones(m.shape[0], dtype=torch.float64)
        if "scale" in c.symmetries:
            norm = m.norm(dim=1)
            factor = torch.where(norm > 0, norm, factor)
        if "sign" in c.symmetries:
            factor = factor * _first_nonzero_sign(m)
        out = _rescale(out, {c.group: factor}, [c])
    return out if out is not checkpoint else Checkpoint(
        dict(checkpoint.tensors), arch, dict(checkpoint.metadata))


def scale_invariant_input(checkpoint: Checkpoint) -> Checkpoint:
    """The metanetwork input that is invariant to scale and sign symmetries.

    ``graphs.to_graph(scale_invariant_input(ckpt))`` is the same parameter graph for every
    copy of ``ckpt`` related by positive neuron scalings (ReLU, leaky ReLU) and sign flips
    (tanh, sine); combined with a permutation-equivariant metanetwork the prediction is
    invariant to all three symmetries.
    """
    return canonicalize(checkpoint, scale=True, sign=True)
