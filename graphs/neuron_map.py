"""The neuron map: which permutation group every axis of every tensor belongs to.

Derived from the op graph alone, with no per-architecture code: each op's rule lives in its
module under :mod:`graphs.ops` (``Op.neurons``) and uses the helpers of ``_Builder``.

* every linear/conv output, and the attention output projection, starts a new **group**;
  elementwise ops, activations, dropout, pooling and norms pass their input's group through;
* an ``add`` ties the groups it joins into one (union-find): a ResNet stream or a
  transformer residual stream shares one permutation;
* groups reached by a network input or output are fixed (``permutable=False``);
* ``flatten`` after a conv turns C channels of H·W pixels into C·H·W features: we keep the
  channel group and view the next linear's weight as ``(out, C, H·W)`` (the view
  ``"<fc>.weight@unflatten"``), so the channel permutation moves whole pixel blocks. A
  flatten of an input (not permutable anyway) starts a new fixed group of size C·H·W.

**Values.** A value's feature axis is a list of segments ``(group, size)`` (:class:`Value`):
one segment, except after a channel ``cat`` (DenseNet), whose output is its inputs' groups
side by side; ``add``/``mul`` tie groups; ``permute`` moves the feature axis.

**Views.** A few tensors do not map axis-by-axis onto groups: the linear after a spatial
flatten (reshape above), packed attention projections (rows are Q, K, V stacked), a weight
reading a concatenated value (split per segment, ``"conv.weight#cat0"``...), a learned
parameter (rows × features, ``"cls_token@rows"``), a tied name (a whole view of the
stored tensor) and a grouped conv weight (its block-diagonal dense ``(out, in, *k)`` view
under its own name, plus one fixed-axes slice per group, ``"conv.weight#g0"``..., that the
parameter graph reads). ``NeuronMap.views`` names a slice-and-reshape of a tensor for each such
piece (``"attn.in_proj_weight#q"``, ``#k``, ``#v``); every other tensor is its own view under
its own name. ``axes`` is keyed by view name; :meth:`NeuronMap.split` turns
state-dict tensors into views and :meth:`NeuronMap.join` puts (edited) views back.

**Attention** (``num_heads`` H, ``head_dim`` d, E = H·d) has three groups:

* ``"<attn>:qk"``: size E, ``blocks=(H, d)``; the rows of Q and K (and their biases). Q·K
  is unchanged by one permutation of the dims *within* each head applied to both;
* ``"<attn>:vo"``: size E, ``blocks=(H, d)``; the rows of V and the columns of the output
  projection, again permutable within each head;
* ``"<attn>:heads"``: size H, no tensor axes; the order of the heads, shared by ``:qk`` and
  ``:vo`` (their ``heads`` field names it).

A grouped conv (G groups) uses the same structure: its input and output groups get blocks
``(G, in/G)`` and ``(G, out/G)`` sharing one ``"<conv>:groups"`` order group.

A valid permutation ``p`` of a structured group maps head block ``h`` onto one head's
block: ``p.view(H, d) // d`` is constant along each row, and that row constant (the head
permutation) must be the same for ``:qk``, ``:vo`` and ``:heads``. Merging can therefore
solve a per-head assignment (H×H cost from per-head-block sums of the best within-block
assignments) and then the within-head d×d assignments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from graphs.architecture import Architecture
from graphs.errors import ArchitectureError
from graphs.ops import OPS
from graphs.ops.base import Node, Value

__all__ = ["NeuronGroup", "NeuronMap", "Value", "View", "neuron_map"]

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
    """``tensor[start:stop]`` along ``axis``, reshaped to ``shape``: a piece of a state-dict
    tensor with its own axes (``start is None``: the whole tensor).

    ``groups > 1``: the whole weight of a grouped conv, ``(out, in/G, *k)``, seen as the
    block-diagonal dense ``(out, in, *k)`` it computes (zeros between groups), so that the
    input and output channel axes are plain group axes that permutations re-index.
    """

    name: str
    tensor: str
    start: int | None
    stop: int | None
    shape: tuple[int, ...]
    axis: int = 0
    groups: int = 1

    def take(self, t: torch.Tensor) -> torch.Tensor:
        if self.groups > 1:
            return self._expand(t)
        if self.start is not None:
            t = t.narrow(self.axis, self.start, self.stop - self.start)  # type: ignore[operator]
        return t.reshape(self.shape)

    def _blocks(self, t: torch.Tensor) -> torch.Tensor:
        g, (out, cin, *k) = self.groups, self.shape
        return t.reshape(g, out // g, g, cin // g, *k)

    def _expand(self, t: torch.Tensor) -> torch.Tensor:
        g, (out, cin, *k) = self.groups, self.shape
        dense = t.new_zeros(self.shape)
        idx = torch.arange(g)
        self._blocks(dense)[idx, :, idx] = t.reshape(g, out // g, cin // g, *k)
        return dense

    def pack(self, dense: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`take` for a grouped view: the diagonal blocks, stacked."""
        idx = torch.arange(self.groups)
        out, cin, *k = self.shape
        return self._blocks(dense)[idx, :, idx].reshape(out, cin // self.groups, *k)


class _Views(dict[str, torch.Tensor]):
    """What :meth:`NeuronMap.split` returns: remembers the tensors it handed out, so that
    :meth:`NeuronMap.join` can tell which view of a grouped weight the caller replaced."""

    def __init__(self, items: dict[str, torch.Tensor]) -> None:
        super().__init__(items)
        self.handed_out = dict(items)

    def replaced(self, name: str) -> bool:
        return self.get(name) is not self.handed_out.get(name)


@dataclass
class NeuronMap:
    """Groups, per-view axis groups, and the group of every op-graph value (feature axis)."""

    groups: dict[str, NeuronGroup]
    axes: dict[str, tuple[str | None, ...]]
    views: dict[str, View]
    value_groups: dict[str, str] = field(default_factory=dict)
    tensor_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)  # every value's segments

    def tensor_axes_of(self, group_id: str) -> list[tuple[str, int]]:
        """Every (view name, axis) a group's permutation re-indexes."""
        return list(self.groups[group_id].tensors)

    def permutable_groups(self) -> list[NeuronGroup]:
        return [g for g in self.groups.values() if g.permutable]

    def split(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """State-dict tensors -> views (most views are the tensors themselves)."""
        return _Views({name: view.take(tensors[view.tensor])
                       for name, view in self.views.items()})

    def join(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Views -> state-dict tensors (inverse of :meth:`split`).

        A tied tensor has several whole views that agree; the first one is taken. A grouped
        conv weight has its block-diagonal view (what permutations edit) and one slice per
        group (``#g<i>``, what the parameter graph edits): the slices are read back only
        when the caller replaced one of them and not the block-diagonal view.
        """
        pieces: dict[str, list[tuple[int, View]]] = {}
        for view in self.views.values():
            pieces.setdefault(view.tensor, []).append((view.start or 0, view))
        out = {}
        for tensor, parts in pieces.items():
            shape = self.tensor_shapes[tensor]
            whole = [v for _, v in parts if v.start is None]
            sliced = [v for _, v in parts if v.start is not None]
            if whole and whole[0].groups > 1:
                dense = whole[0]
                if not (isinstance(views, _Views) and not views.replaced(dense.name)
                        and any(views.replaced(v.name) for v in sliced)):
                    out[tensor] = dense.pack(views[dense.name])
                    continue
                whole = []
            if whole:
                out[tensor] = views[whole[0].name].reshape(shape)
                continue
            parts = sorted(((v.start or 0, v) for v in sliced), key=lambda part: part[0])
            axis = parts[0][1].axis
            flat = [views[v.name].reshape(*shape[:axis], -1, *shape[axis + 1:])
                    for _, v in parts]
            out[tensor] = torch.cat(flat, axis)
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


Axis = str | Value | None


class _Builder:
    """Runs each op's neuron-map rule; the helpers below are what the rules may use."""

    def __init__(self, arch: Architecture) -> None:
        self.arch = arch
        self.uf = _UnionFind()
        self.size: dict[str, int] = {}
        self.flags: dict[str, set[str]] = {}
        self.layers: dict[str, list[str]] = {}
        self.blocks: list[tuple[str, tuple[int, int], str]] = []
        self.values: dict[str, Value] = {}
        self.views: dict[str, View] = {}
        self.raw_axes: dict[str, tuple[str | None, ...]] = {}
        self.param_shapes = arch.all_param_shapes()

    # --- helpers for op rules -------------------------------------------------------------

    def group(self, gid: str, size: int, node: str, flag: str | None = None) -> str:
        """A new group (``flag``: ``"input"`` for a fixed one)."""
        self.uf.add(gid)
        self.size[gid] = size
        self.flags[gid] = {flag} if flag else set()
        self.layers[gid] = [node]
        return gid

    def value(self, group: str, axis: int, repeat: int = 1) -> Value:
        return Value(((group, self.size[group]),), repeat, axis)

    def tensor(self, name: str, axes: tuple[str | None, ...],
               shape: tuple[int, ...] | None = None, view: str | None = None,
               start: int | None = None, stop: int | None = None, axis: int = 0) -> None:
        """Map the axes of a tensor, or of a view (a slice along ``axis``) of it."""
        key = view or name
        if key in self.views:
            raise ArchitectureError(f"tensor view {key!r} is mapped twice")
        stored = self.arch.ties.get(name, name)  # a tied name is a view of the stored tensor
        self.views[key] = View(key, stored, start, stop, shape or self.param_shapes[name], axis)
        self.raw_axes[key] = axes

    def grouped(self, name: str, out: str, inp: str, groups: int) -> None:
        """Map a grouped conv weight ``(out, in/G, *k)``: its block-diagonal dense view
        (axes ``out``, ``inp``) under its own name, and one slice per group (``#g<i>``,
        fixed axes) that the parameter graph reads its edges from."""
        shape = self.param_shapes[name]
        o, c, kernel = shape[0], shape[1] * groups, tuple(shape[2:])
        if name in self.views:
            raise ArchitectureError(f"tensor view {name!r} is mapped twice")
        stored = self.arch.ties.get(name, name)
        self.views[name] = View(name, stored, None, None, (o, c, *kernel), 0, groups)
        self.raw_axes[name] = (out, inp, *(None,) * len(kernel))
        step = o // groups
        for i in range(groups):
            self.tensor(name, (None,) * len(shape), (step, *shape[1:]), f"{name}#g{i}",
                        i * step, (i + 1) * step)

    def map(self, name: str, axes: tuple[Axis, ...]) -> None:
        """Map a tensor whose axes are groups, ``None`` or values; an axis given a
        concatenated value is split into one view per segment (``name#cat<i>``)."""
        split = [i for i, a in enumerate(axes) if isinstance(a, Value) and len(a.segments) > 1]
        if len(split) > 1:
            raise ArchitectureError(f"tensor {name!r}: two concatenated axes")
        plain = tuple(a.group if isinstance(a, Value) else a for a in axes) if not split \
            else None
        if plain is not None:
            self.tensor(name, plain)
            return
        (i,) = split
        v = axes[i]
        assert isinstance(v, Value)
        shape, start = self.param_shapes[name], 0
        for j, (g, size) in enumerate(v.segments):
            piece = (*shape[:i], size, *shape[i + 1:])
            rest = tuple(g if k == i else (a.group if isinstance(a, Value) else a)
                         for k, a in enumerate(axes))
            self.tensor(name, rest, piece, f"{name}#cat{j}", start, start + size, i)
            start += size

    def union(self, node: Node, a: Value, b: Value) -> Value:
        """Tie two values' neurons together (residual add, gating product)."""
        if [s for _, s in a.segments] != [s for _, s in b.segments] or a.repeat != b.repeat:
            raise ArchitectureError(f"node {node.name!r}: joins values of different layouts")
        for (ga, _), (gb, _) in zip(a.segments, b.segments, strict=True):
            self.uf.union(ga, gb)
        return a

    def use(self, value: Value, node: str) -> None:
        """Record that ``node`` reads (or normalizes) the value's neurons."""
        for g, _ in value.segments:
            self.layers[g].append(node)

    def structure(self, group: str, blocks: tuple[int, int], heads: str) -> None:
        """Constrain a group to permute in blocks that follow the ``heads`` group."""
        self.blocks.append((group, blocks, heads))

    def feature_last(self, node: Node, v: Value) -> None:
        if v.axis != len(self.arch.shapes[node.inputs[0]]) - 1 or v.repeat > 1:
            raise ArchitectureError(f"node {node.name!r}: {node.op} over a non-feature axis "
                                    "(permute the features last first)")

    def channels(self, node: Node, v: Value) -> None:
        if v.axis != 0 or v.repeat > 1:
            raise ArchitectureError(f"node {node.name!r}: {node.op} needs channels on axis 1")

    def is_fixed_input(self, v: Value) -> bool:
        roots = {self.uf.find(g) for g, _ in v.segments}
        return any("input" in self.flags[g] for g in self.uf.parent if self.uf.find(g) in roots)

    # --- the walk -----------------------------------------------------------------------

    def build(self) -> NeuronMap:
        arch = self.arch
        consumers = arch.consumers()
        for spec in arch.inputs:
            channel_first = any(OPS[c.op].channel_first for c in consumers[spec.name])
            axis = 0 if channel_first or len(spec.shape) == 1 else len(spec.shape) - 1
            if not spec.shape or spec.shape[axis] is None:
                raise ArchitectureError(f"input {spec.name!r}: feature dim must be known")
            gid = self.group(spec.name, spec.shape[axis], spec.name, "input")  # type: ignore[arg-type]
            self.values[spec.name] = self.value(gid, axis)
        for node in arch.nodes:
            self.values[node.name] = OPS[node.op].neurons(
                self, node, [self.values[s] for s in node.inputs])
        for alias, target in arch.ties.items():
            for a, b in zip(self.raw_axes[alias], self.raw_axes[target], strict=True):
                if a is not None and b is not None:
                    self.uf.union(a, b)
        for out in arch.outputs:
            for g, _ in self.values[out].segments:
                self.flags[g].add("output")
        self.tie_blocks()
        return self.finish()

    def tie_blocks(self) -> None:
        """One group split into the same blocks by two ops (a grouped conv's output read
        by another grouped conv of as many groups) moves its blocks by both ops' block
        orders, so those orders are one; a group whose neurons are fixed fixes its order."""
        first: dict[str, tuple[tuple[int, int], str]] = {}
        for g, b, heads in self.blocks:
            root = self.uf.find(g)
            seen = first.setdefault(root, (b, heads))
            if seen[0] != b:
                raise ArchitectureError(
                    f"group {root!r} is split into blocks in two ways ({seen[0][0]}×"
                    f"{seen[0][1]} and {b[0]}×{b[1]}: grouped convolutions or attention "
                    "heads of different counts on one set of channels); not supported")
            self.uf.union(seen[1], heads)
        fixed = {self.uf.find(m) for m in self.uf.parent if self.flags[m] & {"input", "output"}}
        for g, _, heads in self.blocks:
            if self.uf.find(g) in fixed:
                self.flags[heads].add("input")

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
        blocks: dict[str, tuple[tuple[int, int], str]] = {}
        for g, b, heads in self.blocks:  # consistent after tie_blocks
            blocks.setdefault(uf.find(g), (b, uf.find(heads)))
        groups: dict[str, NeuronGroup] = {}
        for root, ms in members.items():
            flags = set().union(*(self.flags[m] for m in ms))
            sizes = {self.size[m] for m in ms}
            if len(sizes) != 1:
                raise ArchitectureError(f"group {root!r} joins layers of sizes {sorted(sizes)}")
            kind: GroupKind = "input" if "input" in flags else \
                "output" if "output" in flags else "hidden"
            layers = tuple(dict.fromkeys(x for m in ms for x in self.layers[m]))
            block, heads = blocks.get(root, (None, None)) if kind == "hidden" else (None, None)
            groups[root] = NeuronGroup(root, sizes.pop(), kind, kind == "hidden", layers,
                                       tuple(tensors_of[root]), block, heads)
        shapes = {n: s for n, s in self.param_shapes.items() if n not in self.arch.ties}
        values = {k: Value(tuple((uf.find(g), n) for g, n in v.segments), v.repeat, v.axis)
                  for k, v in self.values.items()}
        value_groups = {k: v.segments[0][0] for k, v in values.items()}
        return NeuronMap(groups, axes, self.views, value_groups, shapes, values)


def neuron_map(architecture: Architecture) -> NeuronMap:
    """The neuron map of an architecture (computed once per Architecture object)."""
    cached = architecture._cache.get("neuron_map")
    if cached is None:
        cached = architecture._cache["neuron_map"] = _Builder(architecture).build()
    return cached
