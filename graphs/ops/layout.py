"""Ops that move, select, reduce or join axes without weights: ``flatten``, ``permute``,
``take``, ``mean``, ``cat``. They carry the feature axis' neurons to wherever it ends up.

``flatten`` after a conv turns C channels of H·W pixels into C·H·W features; the channel
group is kept and the next linear sees ``repeat = H·W`` features per neuron. ``cat`` along
the feature axis concatenates the input groups (the value is a list of segments); along
any other axis (tokens) it ties its inputs' groups like ``add``.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import fx, nn

from graphs.errors import UnsupportedOpError
from graphs.ops.base import (
    Check,
    Host,
    Node,
    Op,
    Shape,
    Step,
    Value,
    fail,
    int_list,
    is_bool,
    is_int,
)

if TYPE_CHECKING:
    from graphs.neuron_map import _Builder
    from graphs.parameter_graph import _LayoutBuilder
    from graphs.trace import _Builder as TraceBuilder


def _sample_dim(tb: TraceBuilder, fx_node: fx.Node, dim: int, rank: int) -> int:
    """A batched-tensor dim as a per-sample axis (the batch axis may not be touched)."""
    d = dim + rank if dim < 0 else dim
    if d <= 0 or d >= rank:
        raise UnsupportedOpError(f"{tb.where(fx_node)}: {fx_node.target} over the batch axis "
                                 f"(dim {dim}) is not supported")
    return d - 1


class Flatten(Op):
    """Merge the per-sample axes from ``start_dim`` on into one (``torch.flatten(x, 1 +
    start_dim)``); the default 0 is the classic flatten to (batch, features)."""

    name = "flatten"
    attrs: ClassVar[dict[str, Check]] = {"start_dim": is_int}
    optional: ClassVar[dict[str, Any]] = {"start_dim": 0}
    modules = (nn.Flatten,)
    functions = (torch.flatten,)
    methods = ("flatten", "view", "reshape")

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        (s,), start = shapes, node.attrs.get("start_dim", 0)
        if start >= max(len(s), 1):
            raise fail(node, f"start_dim {start} of a {len(s)}-axis value")
        if any(d is None for d in s[start:]):
            raise fail(node, f"flattens a value of unknown size {list(s)}: give the input shape")
        return (*s[:start], math.prod(s[start:]))  # type: ignore[arg-type]

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        (v,), s = ins, nb.arch.shapes[node.inputs[0]]
        start = node.attrs.get("start_dim", 0)
        if start > 0:  # merges axes after the features (pixels): the features stay put
            if v.axis >= start:
                raise fail(node, "flatten merging the feature axis with others")
            return v
        if len(s) == 1:
            return v
        if nb.is_fixed_input(v):  # an image flattened into an MLP: one fixed feature group
            return nb.value(nb.group(node.name, math.prod(s), node.name, "input"), 0)  # type: ignore[arg-type]
        r = math.prod(s[1:])  # type: ignore[arg-type]
        if v.axis != 0 or v.repeat > 1 or (len(v.segments) > 1 and r > 1):
            raise fail(node, "flatten of a non channel-first value (or of concatenated "
                             "channels with pixels: pool them first)")
        return v if r == 1 else Value(v.segments, r, 0)

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        if node.name not in gb.nmap.groups:  # a flatten of an input is resolved on use
            gb.passthrough(node)

    def build(self, node: Node, host: Host) -> Step:
        start = node.attrs.get("start_dim", 0) + 1
        return lambda x: torch.flatten(x, start)

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        src, out = tb.shape(fx_node.args[0]), tb.shape(fx_node)
        if src == out:
            tb.alias(fx_node, fx_node.args[0])
            return
        k = len(out) - 1  # out = src[:k] + (prod(src[k:]),) for a flatten from axis k
        ok = 1 <= k < len(src) - 1 or (k == len(src) - 1 and k >= 1)
        ok = ok and out[:k] == src[:k] and out[k] == math.prod(src[k:])
        if isinstance(target, nn.Flatten):
            ok = ok and target.end_dim in (-1, len(src) - 1)
        elif target not in ("view", "reshape"):
            end = fx_node.args[2] if len(fx_node.args) > 2 else fx_node.kwargs.get("end_dim", -1)
            ok = ok and end in (-1, len(src) - 1)
        if not ok:
            raise UnsupportedOpError(
                f"{tb.where(fx_node)}: {getattr(target, '__name__', target)} to shape "
                f"{list(out)}: only flattening trailing axes is supported outside attention "
                "(permute axes or use nn.Flatten())")
        attrs = {"start_dim": k - 1} if k > 1 else {}
        tb.emit(fx_node, self.name, tb.one(fx_node), attrs)


class Permute(Op):
    """A reordering of the per-sample axes (channels-last blocks, ConvNeXt)."""

    name = "permute"
    attrs: ClassVar[dict[str, Check]] = {"dims": int_list}
    functions = (torch.permute, torch.transpose, torch.swapaxes)
    methods = ("permute", "transpose", "swapaxes")

    def check(self, node: Node) -> None:
        if sorted(node.attrs["dims"]) != list(range(len(node.attrs["dims"]))):
            raise fail(node, f"dims {node.attrs['dims']} is not a permutation")

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        (s,), dims = shapes, node.attrs["dims"]
        if len(dims) != len(s):
            raise fail(node, f"permutes {len(dims)} axes of a {len(s)}-axis value")
        return tuple(s[d] for d in dims)

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        (v,) = ins
        if v.repeat > 1:
            raise fail(node, "permute of a flattened value")
        return v.moved(node.attrs["dims"].index(v.axis))

    def build(self, node: Node, host: Host) -> Step:
        dims = (0, *(d + 1 for d in node.attrs["dims"]))
        return lambda x: x.permute(dims)

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        rank = len(tb.shape(fx_node.args[0]))
        rest = [a for a in fx_node.args[1:]]
        if name_of(target) in ("transpose", "swapaxes"):
            a, b = (_sample_dim(tb, fx_node, int(d), rank) for d in rest[:2])
            dims = list(range(rank - 1))
            dims[a], dims[b] = dims[b], dims[a]
        else:
            order = rest[0] if len(rest) == 1 and isinstance(rest[0], list | tuple) else rest
            order = list(order or fx_node.kwargs.get("dims", ()))
            order = [d + rank if d < 0 else d for d in order]
            if not order or order[0] != 0:
                raise UnsupportedOpError(f"{tb.where(fx_node)}: permute moving the batch axis")
            dims = [d - 1 for d in order[1:]]
        if dims == list(range(rank - 1)):
            tb.alias(fx_node, fx_node.args[0])
        else:
            tb.emit(fx_node, self.name, tb.one(fx_node), {"dims": dims})


def name_of(target: Any) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


class Take(Op):
    """``x[:, i]`` or ``x[:, [i, ...]]`` along a non-feature axis (class token, last token)."""

    name = "take"
    attrs: ClassVar[dict[str, Check]] = {
        "axis": is_int, "index": lambda v: is_int(v) or (int_list(v) and bool(v))}
    functions = (operator.getitem,)

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        (s,), a = shapes, node.attrs
        if a["axis"] >= len(s):
            raise fail(node, f"axis {a['axis']} of a {len(s)}-axis value")
        size, idx = s[a["axis"]], a["index"]
        if size is not None and any(i >= size for i in (idx if isinstance(idx, list)
                                                        else [idx])):
            raise fail(node, f"index {idx} is out of range for size {size}")
        if isinstance(idx, list):
            return (*s[:a["axis"]], len(idx), *s[a["axis"] + 1:])
        return (*s[:a["axis"]], *s[a["axis"] + 1:])

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        (v,), a = ins, node.attrs
        if a["axis"] == v.axis or v.repeat > 1:
            raise fail(node, "indexing the feature axis is not supported")
        drop = not isinstance(a["index"], list) and a["axis"] < v.axis
        return v.moved(v.axis - 1) if drop else v

    def build(self, node: Node, host: Host) -> Step:
        key = (slice(None),) * (node.attrs["axis"] + 1) + (node.attrs["index"],)
        return lambda x: x[key]

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        x, key = fx_node.args
        rank = len(tb.shape(x))
        key = key if isinstance(key, tuple) else (key,)
        picked = [(i, k) for i, k in enumerate(key) if k != slice(None) and k is not Ellipsis]
        ok = len(picked) == 1 and picked[0][0] > 0 and Ellipsis not in key[:picked[0][0]]
        if ok:
            axis, k = picked[0]
            size = tb.shape(x)[axis]
            if isinstance(k, int):
                index: Any = k + size if k < 0 else k
            elif isinstance(k, list) and all(isinstance(i, int) for i in k):
                index = [i + size if i < 0 else i for i in k]
            else:
                ok = False
        if not ok or rank < 2:
            raise UnsupportedOpError(f"{tb.where(fx_node)}: indexing {key!r}: only x[:, i] or "
                                     "x[:, [i, ...]] along one non-batch axis is supported")
        tb.emit(fx_node, self.name, tb.one(fx_node), {"axis": axis - 1, "index": index})


class Reduce(Op):
    """A mean/max/sum over non-feature axes (global pooling written ``x.mean((2, 3))``,
    ``x.amax((2, 3))``); each neuron is reduced alone."""

    attrs: ClassVar[dict[str, Check]] = {"dims": int_list, "keepdim": is_bool}

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]
        self.fn = getattr(torch, name)
        self.functions = (self.fn,)  # type: ignore[misc]
        self.methods = (name,)  # type: ignore[misc]

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        (s,), dims = shapes, node.attrs["dims"]
        if not dims or any(d < 0 or d >= len(s) for d in dims) or len(set(dims)) < len(dims):
            raise fail(node, f"invalid dims {dims} for a {len(s)}-axis value")
        if node.attrs["keepdim"]:
            return tuple(1 if i in dims else d for i, d in enumerate(s))
        return tuple(d for i, d in enumerate(s) if i not in dims)

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        (v,), dims = ins, node.attrs["dims"]
        if v.axis in dims or v.repeat > 1:
            raise fail(node, "a mean over the feature axis mixes neurons")
        if node.attrs["keepdim"]:
            return v
        return v.moved(v.axis - sum(d < v.axis for d in dims))

    def build(self, node: Node, host: Host) -> Step:
        dims, keep, fn = tuple(d + 1 for d in node.attrs["dims"]), node.attrs["keepdim"], self.fn
        return lambda x: fn(x, dims, keepdim=keep)

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        rank = len(tb.shape(fx_node.args[0]))
        dim = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs.get("dim")
        if dim is None or fx_node.kwargs.get("dtype") is not None:
            raise UnsupportedOpError(f"{tb.where(fx_node)}: {self.name} needs explicit dims "
                                     "(and no dtype)")
        dims = [dim] if isinstance(dim, int) else list(dim)
        keep = bool(fx_node.args[2] if len(fx_node.args) > 2 else
                    fx_node.kwargs.get("keepdim", False))
        tb.emit(fx_node, self.name, tb.one(fx_node), {
            "dims": sorted(_sample_dim(tb, fx_node, d, rank) for d in dims), "keepdim": keep})


class Cat(Op):
    name = "cat"
    n_inputs = None
    attrs: ClassVar[dict[str, Check]] = {"dim": is_int}
    functions = (torch.cat, torch.concat, torch.concatenate)

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        d = node.attrs["dim"]
        rank = {len(s) for s in shapes}
        if len(rank) != 1 or d >= rank.pop():
            raise fail(node, f"concatenates shapes {[list(s) for s in shapes]} on axis {d}")
        rest = {tuple(x for i, x in enumerate(s) if i != d) for s in shapes}
        if len(rest) != 1:
            raise fail(node, f"concatenates shapes {[list(s) for s in shapes]} on axis {d}")
        sizes = [s[d] for s in shapes]
        total = None if any(x is None for x in sizes) else sum(sizes)  # type: ignore[arg-type]
        return (*shapes[0][:d], total, *shapes[0][d + 1:])

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        if any(v.axis != ins[0].axis or v.repeat > 1 for v in ins):
            raise fail(node, "concatenates values with different feature axes")
        if node.attrs["dim"] == ins[0].axis:  # channels: the groups side by side
            return Value(tuple(s for v in ins for s in v.segments), 1, ins[0].axis)
        out = ins[0]
        for v in ins[1:]:  # tokens: every input's neurons must move alike
            out = nb.union(node, out, v)
        return out

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        srcs = [gb.resolve(v) for v in node.inputs]
        feature = node.attrs["dim"] == gb.nmap.values[node.inputs[0]].axis
        size = sum(gb.out.sets[s].size for s in srcs) if feature else gb.out.sets[srcs[0]].size
        s = gb.new_set(size, "add", node.name, srcs)
        offset = 0
        for src in srcs:
            gb.diagonal(src, s, "residual", None, dst_offset=offset)
            offset += gb.out.sets[src].size if feature else 0
        gb.produce(node.name, s)

    def build(self, node: Node, host: Host) -> Step:
        d = node.attrs["dim"] + 1

        def cat(*xs: torch.Tensor) -> torch.Tensor:
            batch = max(x.shape[0] for x in xs)  # a learned token has batch size 1
            return torch.cat([x.expand(batch, *x.shape[1:]) for x in xs], d)

        return cat

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        xs = fx_node.args[0]
        dim = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs.get("dim", 0)
        if not isinstance(xs, list | tuple) or not xs:
            raise UnsupportedOpError(f"{tb.where(fx_node)}: cat of {xs!r}")
        rank = len(tb.shape(xs[0]))
        d = _sample_dim(tb, fx_node, int(dim), rank)
        tb.emit(fx_node, self.name, [tb.src(x, fx_node) for x in xs], {"dim": d})


class Expand(Op):
    """``t.expand(B, -1, -1)`` of a learned token to the batch: per sample, nothing."""

    name = "expand"  # trace rule only
    methods = ("expand", "expand_as")

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        src, out = tb.shape(fx_node.args[0]), tb.shape(fx_node)
        if len(src) != len(out) or tuple(src[1:]) != tuple(out[1:]):
            raise UnsupportedOpError(f"{tb.where(fx_node)}: expand other than along the batch")
        tb.alias(fx_node, fx_node.args[0])
