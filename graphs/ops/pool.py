"""Pooling over spatial axes (max, average, adaptive; modules and functions): each channel
is pooled alone, so pooling keeps its input's neurons."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import fx, nn

from graphs.errors import UnsupportedOpError
from graphs.ops.base import Host, Node, Op, Shape, Step, Value, fail, ints, is_bool, pair
from graphs.ops.conv import spatial

if TYPE_CHECKING:
    from graphs.neuron_map import _Builder
    from graphs.trace import _Builder as TraceBuilder


def _out(size: int | None, k: int, s: int, p: int, d: int, ceil: bool) -> int | None:
    if size is None:
        return None
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:  # the last window may not start in the padding
        out -= 1
    return out


class Pool(Op):
    """``avg_pool{1,2}d`` / ``max_pool{1,2}d``."""

    family = "pooling"
    channel_first = True

    def __init__(self, kind: str, dims: int) -> None:
        self.kind, self.dims = kind, dims
        self.name = f"{kind}_pool{dims}d"  # type: ignore[misc]
        self.attrs = {"kernel_size": ints(dims, True), "stride": ints(dims, True),  # type: ignore[misc]
                      "padding": ints(dims), "ceil_mode": is_bool}
        self.optional = {"ceil_mode": False}  # type: ignore[misc]
        if kind == "max":
            self.attrs["dilation"] = ints(dims, True)
        else:
            self.attrs["count_include_pad"] = is_bool
            self.optional["count_include_pad"] = True
        cls = {("avg", 1): nn.AvgPool1d, ("avg", 2): nn.AvgPool2d, ("max", 1): nn.MaxPool1d,
               ("max", 2): nn.MaxPool2d}[kind, dims]
        self.modules = (cls,)  # type: ignore[misc]
        self.functions = (getattr(F, self.name),)  # type: ignore[misc]

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        s, a = spatial(node, shapes, self.dims), node.attrs
        d = a.get("dilation", [1] * self.dims)
        if any(2 * p > k for p, k in zip(a["padding"], a["kernel_size"], strict=True)):
            raise fail(node, "padding must be at most half the kernel size")
        out = tuple(_out(s[i + 1], a["kernel_size"][i], a["stride"][i], a["padding"][i], d[i],
                         a.get("ceil_mode", False)) for i in range(self.dims))
        if any(o is not None and o < 1 for o in out):
            raise fail(node, f"input {list(s)} is smaller than the pooling window")
        return (s[0], *out)

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        nb.channels(node, ins[0])
        return ins[0]

    def build(self, node: Node, host: Host) -> Step:
        fn, a = getattr(F, self.name), node.attrs
        kw: dict[str, Any] = {"kernel_size": a["kernel_size"], "stride": a["stride"],
                              "padding": a["padding"], "ceil_mode": a.get("ceil_mode", False)}
        if self.kind == "max":
            kw["dilation"] = a["dilation"]
        else:
            kw["count_include_pad"] = a.get("count_include_pad", True)
        return lambda x: fn(x, **kw)

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        dims = self.dims
        if isinstance(target, nn.Module):
            m = target
            get = lambda key, default=None: getattr(m, key, default)  # noqa: E731
        else:
            names = ["input", "kernel_size", "stride", "padding"] + (
                ["dilation", "ceil_mode", "return_indices"] if self.kind == "max"
                else ["ceil_mode", "count_include_pad", "divisor_override"])
            bound = dict(zip(names, fx_node.args, strict=False)) | dict(fx_node.kwargs)
            get = lambda key, default=None: bound.get(key, default)  # noqa: E731
        if get("return_indices", False) or get("divisor_override") is not None:
            raise UnsupportedOpError(f"{tb.where(fx_node)}: {self.name} with return_indices "
                                     "or divisor_override is not supported")
        k = get("kernel_size")
        stride = get("stride") or k
        attrs: dict[str, Any] = {"kernel_size": pair(k, dims), "stride": pair(stride, dims),
                                 "padding": pair(get("padding", 0) or 0, dims)}
        if get("ceil_mode", False):
            attrs["ceil_mode"] = True
        if self.kind == "max":
            attrs["dilation"] = pair(get("dilation", 1) or 1, dims)
        elif get("count_include_pad", True) is False:
            attrs["count_include_pad"] = False
        tb.emit(fx_node, self.name, tb.one(fx_node), attrs)


class AdaptivePool(Op):
    """``adaptive_{avg,max}_pool{1,2}d`` to a fixed output size."""

    family = "pooling"
    channel_first = True

    def __init__(self, kind: str, dims: int) -> None:
        self.kind, self.dims = kind, dims
        self.name = f"adaptive_{kind}_pool{dims}d"  # type: ignore[misc]
        self.attrs = {"output_size": ints(dims, True)}  # type: ignore[misc]
        cls = {("avg", 1): nn.AdaptiveAvgPool1d, ("avg", 2): nn.AdaptiveAvgPool2d,
               ("max", 1): nn.AdaptiveMaxPool1d, ("max", 2): nn.AdaptiveMaxPool2d}[kind, dims]
        self.modules = (cls,)  # type: ignore[misc]
        self.functions = (getattr(F, self.name),)  # type: ignore[misc]

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        s = spatial(node, shapes, self.dims)
        return (s[0], *node.attrs["output_size"])

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        nb.channels(node, ins[0])
        return ins[0]

    def build(self, node: Node, host: Host) -> Step:
        fn, size = getattr(F, self.name), tuple(node.attrs["output_size"])
        return lambda x: fn(x, size)

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        if isinstance(target, nn.Module):
            size, indices = target.output_size, getattr(target, "return_indices", False)
        else:
            size = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs["output_size"]
            indices = fx_node.kwargs.get("return_indices", False)
        size = pair(size, self.dims)
        if any(s is None for s in size) or indices:
            raise UnsupportedOpError(f"{tb.where(fx_node)}: adaptive pooling needs a full "
                                     "output size and no return_indices")
        tb.emit(fx_node, self.name, tb.one(fx_node), {"output_size": size})


POOL_OPS = (*(Pool(k, d) for k in ("avg", "max") for d in (1, 2)),
            *(AdaptivePool(k, d) for k in ("avg", "max") for d in (1, 2)))
