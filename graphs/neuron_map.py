"""The neuron map: which permutation group every axis of every tensor belongs to.

Derived from the op graph alone, with no per-architecture code:

* every linear/conv output, and the attention output projection, starts a new **group**;
  elementwise ops, activations, dropout, pooling and norms pass their input's group through;
* an ``add`` ties the groups it joins into one (union-find): a ResNet stream or a
  transformer residual stream shares one permutation;
* groups reached by a network input or output are fixed (``permutable=False``);
* ``flatten`` after a conv turns C channels of H·W pixels into C·H·W features: we keep the
  channel group and view the next linear's weight as ``(out, C, H·W)`` (the view
  ``"<fc>.weight@unflatten"``), so the channel permutation moves whole pixel blocks. A
  flatten of an input (not permutable anyway) starts a new fixed group of size C·H·W.

**Views.** A few tensors do not map axis-by-axis onto groups: the linear after a spatial
flatten (reshape above) and ``nn.MultiheadAttention``'s packed ``in_proj_weight``/``bias``
(rows are Q, K, V stacked). ``NeuronMap.views`` names a slice-and-reshape of a tensor for
each such piece (``"attn.in_proj_weight#q"``, ``#k``, ``#v``); every other tensor is its own
view under its own name. ``axes`` is keyed by view name; :meth:`NeuronMap.split` turns
state-dict tensors into views and :meth:`NeuronMap.join` puts (edited) views back.

**Attention** (``num_heads`` H, ``head_dim`` d, E = H·d) has three groups:

* ``"<attn>:qk"``: size E, ``blocks=(H, d)``; the rows of Q and K (and their biases). Q·K
  is unchanged by one permutation of the dims *within* each head applied to both;
* ``"<attn>:vo"``: size E, ``blocks=(H, d)``; the rows of V and the columns of the output
  projection, again permutable within each head;
* ``"<attn>:heads"``: size H, no tensor axes; the order of the heads, shared by ``:qk`` and
  ``:vo`` (their ``heads`` field names it).

A valid permutation ``p`` of a structured group maps head block ``h`` onto one head's
block: ``p.view(H, d) // d`` is constant along each row, and that row constant (the head
permutation) must be the same for ``:qk``, ``:vo`` and ``:heads``. Merging can therefore
solve a per-head assignment (H×H cost from per-head-block sums of the best within-block
assignments) and then the within-head d×d assignments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from graphs.architecture import ACTIVATIONS, Architecture, Node
from graphs.errors import ArchitectureError

__all__ = ["NeuronGroup", "NeuronMap", "View", "neuron_map"]

GroupKind = Literal["input", "hidden", "output"]


@dataclass(frozen=True)
class NeuronGroup:
    """Neurons sharing one permutation.

    ``tensors`` lists the (view, axis) pairs it indexes; ``layers`` the op-graph nodes that
    produce or normalize it. ``blocks=(num_heads, head_dim)`` and ``heads`` (the shared
    heads group id) are set for attention's structured groups only.
    """

    id: str
    size: int
    kind: GroupKind
    permutable: bool
    layers: tuple[str, ...]
    tensors: tuple[tuple[str, int], ...]
    blocks: tuple[int, int] | None = None
    heads: str | None = None


@dataclass(frozen=True)
class View:
    """``tensor[start:stop].reshape(shape)``: a piece of a state-dict tensor with own axes."""

    name: str
    tensor: str
    start: int | None
    stop: int | None
    shape: tuple[int, ...]

    def take(self, t: torch.Tensor) -> torch.Tensor:
        if self.start is not None:
            t = t[self.start:self.stop]
        return t.reshape(self.shape)


@dataclass
class NeuronMap:
    """Groups, per-view axis groups, and the group of every op-graph value (feature axis)."""

    groups: dict[str, NeuronGroup]
    axes: dict[str, tuple[str | None, ...]]
    views: dict[str, View]
    value_groups: dict[str, str] = field(default_factory=dict)
    tensor_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def tensor_axes_of(self, group_id: str) -> list[tuple[str, int]]:
        """Every (view name, axis) a group's permutation re-indexes."""
        return list(self.groups[group_id].tensors)

    def permutable_groups(self) -> list[NeuronGroup]:
        return [g for g in self.groups.values() if g.permutable]

    def split(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """State-dict tensors -> views (most views are the tensors themselves)."""
        return {name: view.take(tensors[view.tensor]) for name, view in self.views.items()}

    def join(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Views -> state-dict tensors (inverse of :meth:`split`)."""
        pieces: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for name, view in self.views.items():
            pieces.setdefault(view.tensor, []).append((view.start or 0, views[name]))
        out = {}
        for tensor, parts in pieces.items():
            shape = self.tensor_shapes[tensor]
            parts.sort(key=lambda part: part[0])
            flat = [t.reshape(-1, *shape[1:]) for _, t in parts]
            out[tensor] = torch.cat(flat, 0) if len(flat) > 1 else flat[0].reshape(shape)
        return out


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.order: dict[str, int] = {}

    def add(self, x: str) -> None:
        if x in self.parent:
            raise ArchitectureError(f"neuron group id {x!r} is used twice")
        self.parent[x] = x
        self.order[x] = len(self.order)

    def find(self, x: str) -> str:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the earlier-created group names the union
            if self.order[rb] < self.order[ra]:
                ra, rb = rb, ra
            self.parent[rb] = ra


@dataclass
class _Value:
    group: str
    repeat: int  # >1 after a spatial flatten: each group neuron owns `repeat` features
    axis: int  # the feature axis in the per-sample shape


class _Builder:
    def __init__(self, arch: Architecture) -> None:
        self.arch = arch
        self.uf = _UnionFind()
        self.size: dict[str, int] = {}
        self.flags: dict[str, set[str]] = {}
        self.layers: dict[str, list[str]] = {}
        self.blocks: dict[str, tuple[tuple[int, int], str]] = {}
        self.values: dict[str, _Value] = {}
        self.views: dict[str, View] = {}
        self.raw_axes: dict[str, tuple[str | None, ...]] = {}

    def group(self, gid: str, size: int, node: str, flag: str | None = None) -> str:
        self.uf.add(gid)
        self.size[gid] = size
        self.flags[gid] = {flag} if flag else set()
        self.layers[gid] = [node]
        return gid

    def tensor(self, name: str, axes: tuple[str | None, ...], shape: tuple[int, ...] | None = None,
               view: str | None = None, start: int | None = None,
               stop: int | None = None) -> None:
        key = view or name
        self.views[key] = View(key, name, start, stop,
                               shape or self.arch_shape(name))
        self.raw_axes[key] = axes

    def arch_shape(self, name: str) -> tuple[int, ...]:
        return self.param_shapes[name]

    def build(self) -> NeuronMap:
        arch = self.arch
        self.param_shapes = arch.param_shapes()
        consumers = arch.consumers()
        for spec in arch.inputs:
            channel_first = any(c.op.startswith(("conv", "batchnorm", "avg_pool", "max_pool",
                                                 "adaptive")) for c in consumers[spec.name])
            axis = 0 if channel_first or len(spec.shape) == 1 else len(spec.shape) - 1
            if not spec.shape or spec.shape[axis] is None:
                raise ArchitectureError(f"input {spec.name!r}: feature dim must be known")
            gid = self.group(spec.name, spec.shape[axis], spec.name, "input")  # type: ignore[arg-type]
            self.values[spec.name] = _Value(gid, 1, axis)
        for node in arch.nodes:
            self.visit(node)
        for out in arch.outputs:
            self.flags[self.values[out].group].add("output")
        return self.finish()

    def visit(self, node: Node) -> None:
        op, a, p = node.op, node.attrs, node.params
        shape = self.arch.shapes
        ins = [self.values[s] for s in node.inputs]
        v = ins[0]
        last = len(shape[node.inputs[0]]) - 1
        if op == "linear":
            if v.axis != last:
                raise ArchitectureError(f"node {node.name!r}: linear over a non-feature axis")
            g = self.group(node.name, a["out_features"], node.name)
            if v.repeat > 1:
                w = p["weight"]
                self.tensor(w, (g, v.group, None),
                            (a["out_features"], a["in_features"] // v.repeat, v.repeat),
                            view=f"{w}@unflatten")
            else:
                self.tensor(p["weight"], (g, v.group))
            if "bias" in p:
                self.tensor(p["bias"], (g,))
            self.layers[v.group].append(node.name)
            self.values[node.name] = _Value(g, 1, len(shape[node.name]) - 1)
        elif op in ("conv1d", "conv2d"):
            self.require_channels(node, v)
            g = self.group(node.name, a["out_channels"], node.name)
            self.tensor(p["weight"], (g, v.group, *[None] * len(a["kernel_size"])))
            if "bias" in p:
                self.tensor(p["bias"], (g,))
            self.layers[v.group].append(node.name)
            self.values[node.name] = _Value(g, 1, 0)
        elif op in ("batchnorm1d", "batchnorm2d", "layernorm"):
            if op == "layernorm" and (v.axis != last or v.repeat > 1):
                raise ArchitectureError(f"node {node.name!r}: layernorm over a non-feature axis")
            if op != "layernorm":
                self.require_channels(node, v)
            for role, name in p.items():
                self.tensor(name, () if role == "num_batches_tracked" else (v.group,))
            self.layers[v.group].append(node.name)
            self.values[node.name] = v
        elif op in ("dropout", *ACTIVATIONS):
            self.values[node.name] = v
        elif "pool" in op:
            self.require_channels(node, v)
            self.values[node.name] = v
        elif op == "add":
            w = ins[1]
            if (v.repeat, v.axis) != (w.repeat, w.axis):
                raise ArchitectureError(f"node {node.name!r}: adds differently laid-out values")
            self.uf.union(v.group, w.group)
            self.values[node.name] = v
        elif op == "flatten":
            self.flatten(node, v)
        elif op == "self_attention":
            self.attention(node, v, last)
        else:  # pragma: no cover - Architecture validation rejects unknown ops
            raise ArchitectureError(f"node {node.name!r}: op {op} has no neuron map rule")

    def require_channels(self, node: Node, v: _Value) -> None:
        if v.axis != 0 or v.repeat > 1:
            raise ArchitectureError(f"node {node.name!r}: {node.op} needs channels on axis 1")

    def flatten(self, node: Node, v: _Value) -> None:
        s = self.arch.shapes[node.inputs[0]]
        if len(s) == 1:
            self.values[node.name] = v
            return
        fixed_input = any("input" in self.flags[g] for g in self.uf.parent
                          if self.uf.find(g) == self.uf.find(v.group))
        if fixed_input:  # an image flattened into an MLP: any layout, one fixed feature group
            g = self.group(node.name, math.prod(s), node.name, "input")  # type: ignore[arg-type]
            self.values[node.name] = _Value(g, 1, 0)
            return
        if v.axis != 0 or v.repeat > 1:
            raise ArchitectureError(f"node {node.name!r}: flatten of a non channel-first value")
        r = math.prod(s[1:])  # type: ignore[arg-type]
        self.values[node.name] = v if r == 1 else _Value(v.group, r, 0)

    def attention(self, node: Node, v: _Value, last: int) -> None:
        if v.axis != last or v.repeat > 1:
            raise ArchitectureError(f"node {node.name!r}: attention over a non-feature axis")
        e, h = node.attrs["embed_dim"], node.attrs["num_heads"]
        n, p = node.name, node.params
        heads = self.group(f"{n}:heads", h, n)
        qk = self.group(f"{n}:qk", e, n)
        vo = self.group(f"{n}:vo", e, n)
        out = self.group(n, e, n)
        self.blocks[qk] = self.blocks[vo] = ((h, e // h), heads)
        for i, (part, g) in enumerate((("q", qk), ("k", qk), ("v", vo))):
            w = p["in_proj_weight"]
            self.tensor(w, (g, v.group), (e, e), f"{w}#{part}", i * e, (i + 1) * e)
            if "in_proj_bias" in p:
                b = p["in_proj_bias"]
                self.tensor(b, (g,), (e,), f"{b}#{part}", i * e, (i + 1) * e)
        self.tensor(p["out_proj.weight"], (out, vo))
        if "out_proj.bias" in p:
            self.tensor(p["out_proj.bias"], (out,))
        self.layers[v.group].append(n)
        self.values[n] = _Value(out, 1, last)

    def finish(self) -> NeuronMap:
        uf = self.uf
        members: dict[str, list[str]] = {}
        for g in uf.parent:
            members.setdefault(uf.find(g), []).append(g)
        axes = {k: tuple(None if g is None else uf.find(g) for g in ax)
                for k, ax in self.raw_axes.items()}
        tensors_of: dict[str, list[tuple[str, int]]] = {r: [] for r in members}
        for key, ax in axes.items():
            for i, g in enumerate(ax):
                if g is not None:
                    tensors_of[g].append((key, i))
        groups: dict[str, NeuronGroup] = {}
        for root, ms in members.items():
            flags = set().union(*(self.flags[m] for m in ms))
            sizes = {self.size[m] for m in ms}
            if len(sizes) != 1:
                raise ArchitectureError(f"group {root!r} joins layers of sizes {sorted(sizes)}")
            kind: GroupKind = "input" if "input" in flags else \
                "output" if "output" in flags else "hidden"
            layers = tuple(dict.fromkeys(x for m in ms for x in self.layers[m]))
            blocks, heads = self.blocks.get(root, (None, None))
            groups[root] = NeuronGroup(root, sizes.pop(), kind, kind == "hidden", layers,
                                       tuple(tensors_of[root]), blocks, heads)
        return NeuronMap(groups, axes, self.views,
                         {k: uf.find(v.group) for k, v in self.values.items()},
                         dict(self.param_shapes))


def neuron_map(architecture: Architecture) -> NeuronMap:
    """The neuron map of an architecture (computed once per Architecture object)."""
    cached = architecture._cache.get("neuron_map")
    if cached is None:
        cached = architecture._cache["neuron_map"] = _Builder(architecture).build()
    return cached
