"""``conv1d``/``conv2d``: ``nn.Conv1d``/``nn.Conv2d``, dense, depthwise or grouped.

A dense conv (``groups`` 1) starts a new channel group. A depthwise conv (``groups`` equal to
its input and output channels) filters each channel alone, so it keeps its input's group:
the channel permutation moves its filters with the channels.

A grouped conv (``G`` groups, ResNeXt's ``groups=32``) reads input block ``i`` (``in/G``
channels) only into output block ``i`` (``out/G`` channels). Its symmetries: channels
permute freely within each block, and the blocks permute as wholes, input and output blocks
moving together. The neuron map says exactly that: the input and output groups are
structured in ``G`` blocks whose order is one ``<conv>:groups`` group (like attention
heads), and the weight is seen as the block-diagonal dense ``(out, in, *k)`` it computes
(view ``groups=G``), so both channel axes are plain group axes. The parameter graph joins
each output channel only to its block's inputs (one dense block per group, ``#g<i>``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from torch import fx, nn

from graphs.errors import UnsupportedOpError
from graphs.ops.base import (
    Host,
    Node,
    Op,
    Shape,
    Step,
    Value,
    fail,
    ints,
    is_bool,
    is_pos,
    pair,
)

if TYPE_CHECKING:
    from graphs.neuron_map import _Builder
    from graphs.parameter_graph import _LayoutBuilder
    from graphs.trace import _Builder as TraceBuilder


def window(size: int | None, k: int, s: int, p: int, d: int = 1) -> int | None:
    return None if size is None else (size + 2 * p - d * (k - 1) - 1) // s + 1


def spatial(node: Node, shapes: list[Shape], dims: int) -> Shape:
    (s,) = shapes
    if len(s) != dims + 1:
        raise fail(node, f"expects a (channels, {dims} spatial dims) input, got {list(s)}")
    return s


class Conv(Op):
    family = "conv"
    channel_first = True
    optional: ClassVar[dict[str, Any]] = {"groups": 1}

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.name = f"conv{dims}d"  # type: ignore[misc]
        self.modules = (nn.Conv1d if dims == 1 else nn.Conv2d,)  # type: ignore[misc]
        self.attrs = {  # type: ignore[misc]
            "in_channels": is_pos, "out_channels": is_pos, "kernel_size": ints(dims, True),
            "stride": ints(dims, True), "padding": ints(dims), "dilation": ints(dims, True),
            "bias": is_bool, "groups": is_pos,
        }

    def roles(self, a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        groups = a.get("groups", 1)
        roles = {"weight": (a["out_channels"], a["in_channels"] // groups, *a["kernel_size"])}
        if a["bias"]:
            roles["bias"] = (a["out_channels"],)
        return roles

    def check(self, node: Node) -> None:
        a, groups = node.attrs, node.attrs.get("groups", 1)
        if a["in_channels"] % groups or a["out_channels"] % groups:
            raise fail(node, f"groups={groups} must divide the input and output channels")

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        s, a = spatial(node, shapes, self.dims), node.attrs
        if s[0] != a["in_channels"]:
            raise fail(node, f"expects {a['in_channels']} input channels, got {s[0]}")
        out = tuple(window(s[i + 1], a["kernel_size"][i], a["stride"][i], a["padding"][i],
                           a["dilation"][i]) for i in range(self.dims))
        if any(o is not None and o < 1 for o in out):
            raise fail(node, f"input {list(s)} is smaller than the kernel")
        return (a["out_channels"], *out)

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        (v,), p = ins, node.params
        nb.channels(node, v)
        kernel = (None,) * self.dims
        groups = node.attrs.get("groups", 1)
        if is_depthwise(node.attrs):  # each filter follows its channel
            nb.map(p["weight"], (v, None, *kernel))
            if "bias" in p:
                nb.map(p["bias"], (v,))
            nb.use(v, node.name)
            return v
        g = nb.group(node.name, node.attrs["out_channels"], node.name)
        if groups > 1:  # blocks of channels, the block order shared by input and output
            order = nb.group(f"{node.name}:groups", groups, node.name)
            nb.structure(v.group, (groups, node.attrs["in_channels"] // groups), order)
            nb.structure(g, (groups, node.attrs["out_channels"] // groups), order)
            nb.grouped(p["weight"], g, v.group, groups)
        else:
            nb.map(p["weight"], (g, v, *kernel))
        if "bias" in p:
            nb.tensor(p["bias"], (g,))
        nb.use(v, node.name)
        return nb.value(g, 0)

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        src = gb.resolve(node.inputs[0])
        s = gb.new_set(node.attrs["out_channels"], "conv", node.name, [src])
        groups = node.attrs.get("groups", 1)
        if is_depthwise(node.attrs):
            gb.diagonal(src, s, "conv", node.params["weight"])
        elif groups > 1:  # each output block reads its own input block only
            w, a = node.params["weight"], node.attrs
            rows, cols = a["out_channels"] // groups, a["in_channels"] // groups
            for i in range(groups):
                gb.dense(src, i * cols, s, f"{w}#g{i}", "conv", dst_offset=i * rows,
                         dst_size=rows)
        else:
            gb.weight(node.inputs[0], s, "conv", node.params["weight"])
        if "bias" in node.params:
            gb.features(node.params["bias"], s, 0)
        gb.produce(node.name, s)

    def build(self, node: Node, host: Host) -> Step:
        a = node.attrs
        cls = nn.Conv1d if self.dims == 1 else nn.Conv2d
        return host.place(node.module_path, cls(
            a["in_channels"], a["out_channels"], tuple(a["kernel_size"]),
            stride=tuple(a["stride"]), padding=tuple(a["padding"]),
            dilation=tuple(a["dilation"]), groups=a.get("groups", 1), bias=a["bias"]))

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, m: Any) -> None:
        path, dims = tb.path(fx_node), self.dims
        if type(m) is not self.modules[0] or m.padding_mode != "zeros":
            raise UnsupportedOpError(f"{path}: {type(m).__name__} with padding_mode="
                                     f"{m.padding_mode!r} is not supported (use 'zeros')")
        padding = m.padding
        if isinstance(padding, str):
            padding = same_padding(path, padding, m, dims)
        attrs = {"in_channels": m.in_channels, "out_channels": m.out_channels,
                 "kernel_size": pair(m.kernel_size, dims), "stride": pair(m.stride, dims),
                 "padding": pair(padding, dims), "dilation": pair(m.dilation, dims),
                 "bias": m.bias is not None}
        if m.groups != 1:
            attrs["groups"] = m.groups
        tb.emit(fx_node, self.name, tb.one(fx_node), attrs, path)


def is_depthwise(a: dict[str, Any]) -> bool:
    """One filter per channel (``groups = in_channels = out_channels``)."""
    return a.get("groups", 1) > 1 and a["in_channels"] == a["out_channels"] == a["groups"]


def same_padding(path: str, padding: str, m: Any, dims: int) -> list[int]:
    if padding == "valid":
        return [0] * dims
    totals = [d * (k - 1) for d, k in zip(pair(m.dilation, dims), pair(m.kernel_size, dims),
                                           strict=True)]
    if any(t % 2 for t in totals):
        raise UnsupportedOpError(f"{path}: padding='same' with an even kernel is asymmetric; "
                                 "pad explicitly")
    return [t // 2 for t in totals]
