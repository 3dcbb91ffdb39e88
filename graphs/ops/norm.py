"""``batchnorm1d``/``batchnorm2d``/``layernorm``: per-feature affine maps of their input's
neurons; their vectors follow the input's group and the parameter graph gives each norm its
own node set (a pre-LN norm reads a stream written by several layers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch.nn.functional as F
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
    is_bool,
    is_num,
    is_opt_num,
    is_pos,
)

if TYPE_CHECKING:
    from graphs.neuron_map import _Builder
    from graphs.parameter_graph import _LayoutBuilder
    from graphs.trace import _Builder as TraceBuilder

STAT_COLUMNS = {"weight": 1, "bias": 2, "running_mean": 3, "running_var": 4}


class _Norm(Op):
    family = "norm"
    kind = "batchnorm"

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        (v,) = ins
        self.check_layout(nb, node, v)
        for role, name in node.params.items():
            nb.map(name, () if role == "num_batches_tracked" else (v,))
        nb.use(v, node.name)
        return v

    def check_layout(self, nb: _Builder, node: Node, v: Value) -> None:
        nb.channels(node, v)

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        src = gb.resolve(node.inputs[0])
        s = gb.new_set(gb.out.sets[src].size, self.kind, node.inputs[0], [src])
        gb.diagonal(src, s, "norm", None)
        for role, col in STAT_COLUMNS.items():
            if role in node.params:
                gb.features(node.params[role], s, col)
        gb.produce(node.name, s)


class BatchNorm(_Norm):
    channel_first = True
    attrs: ClassVar[dict[str, Check]] = {
        "num_features": is_pos, "eps": is_num, "momentum": is_opt_num, "affine": is_bool,
             "track_running_stats": is_bool}

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.name = f"batchnorm{dims}d"  # type: ignore[misc]
        self.modules = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d,)  # type: ignore[misc]

    def roles(self, a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        n, roles = a["num_features"], {}
        if a["affine"]:
            roles |= {"weight": (n,), "bias": (n,)}
        if a["track_running_stats"]:
            roles |= {"running_mean": (n,), "running_var": (n,), "num_batches_tracked": ()}
        return roles

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        (s,) = shapes
        ok = len(s) in (1, 2) if self.dims == 1 else len(s) == 3
        if not ok or s[0] != node.attrs["num_features"]:
            raise fail(node, f"expects {node.attrs['num_features']} channels, got {list(s)}")
        return s

    def build(self, node: Node, host: Host) -> Step:
        a = node.attrs
        cls = nn.BatchNorm1d if self.dims == 1 else nn.BatchNorm2d
        return host.place(node.module_path, cls(
            a["num_features"], eps=a["eps"], momentum=a["momentum"], affine=a["affine"],
            track_running_stats=a["track_running_stats"]))

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, m: Any) -> None:
        if type(m) is not self.modules[0]:
            raise UnsupportedOpError(f"{tb.path(fx_node)}: {type(m).__name__} is not supported")
        tb.emit(fx_node, self.name, tb.one(fx_node), {
            "num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
            "affine": m.affine, "track_running_stats": m.track_running_stats},
            tb.path(fx_node))


class LayerNorm(_Norm):
    name = "layernorm"
    kind = "layernorm"
    attrs: ClassVar[dict[str, Check]] = {
        "normalized_shape": is_pos, "eps": is_num, "elementwise_affine": is_bool,
             "bias": is_bool}
    modules = (nn.LayerNorm,)
    functions = (F.layer_norm,)

    def roles(self, a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        n, roles = a["normalized_shape"], {}
        if a["elementwise_affine"]:
            roles["weight"] = (n,)
            if a["bias"]:
                roles["bias"] = (n,)
        return roles

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        (s,) = shapes
        if len(s) < 1 or s[-1] != node.attrs["normalized_shape"]:
            raise fail(node, f"normalizes {node.attrs['normalized_shape']} features, "
                             f"got {list(s)}")
        return s

    def check_layout(self, nb: _Builder, node: Node, v: Value) -> None:
        nb.feature_last(node, v)

    def build(self, node: Node, host: Host) -> Step:
        a = node.attrs
        return host.place(node.module_path, nn.LayerNorm(
            a["normalized_shape"], eps=a["eps"], elementwise_affine=a["elementwise_affine"],
            bias=a["bias"]))

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, m: Any) -> None:
        if not isinstance(m, nn.Module):
            self.trace_function(tb, fx_node)
            return
        if len(m.normalized_shape) != 1:
            raise UnsupportedOpError(f"{tb.path(fx_node)}: LayerNorm over more than the last "
                                     "dim (normalize the feature axis only)")
        tb.emit(fx_node, self.name, tb.one(fx_node), {
            "normalized_shape": m.normalized_shape[0], "eps": m.eps,
            "elementwise_affine": m.elementwise_affine,
            "bias": m.elementwise_affine and m.bias is not None}, tb.path(fx_node))

    def trace_function(self, tb: TraceBuilder, fx_node: fx.Node) -> None:
        """``F.layer_norm(x, shape, self.weight, self.bias, eps)`` in a user LayerNorm class
        (nanoGPT, ConvNeXt): the module's own tensors become the op's."""
        names = ("input", "normalized_shape", "weight", "bias", "eps")
        a = dict(zip(names, fx_node.args, strict=False)) | dict(fx_node.kwargs)
        shape = a["normalized_shape"]
        shape = tb.values.get(shape, shape) if isinstance(shape, fx.Node) else shape
        w, b = tb.param_path(a.get("weight")), tb.param_path(a.get("bias"))
        if len(shape) != 1 or (a.get("weight") is not None and w is None) or (
                a.get("bias") is not None and b is None) or (b is not None and w is None):
            raise UnsupportedOpError(f"{tb.where(fx_node)}: layer_norm over the last dim with "
                                     "the module's own weight (and bias) is supported")
        path = w.rpartition(".")[0] if w else None
        if (w and not w.endswith(".weight")) or (b and b != f"{path}.bias"):
            raise UnsupportedOpError(f"{tb.where(fx_node)}: layer_norm tensors must be named "
                                     "'<module>.weight' and '<module>.bias'")
        tb.emit(fx_node, self.name, tb.one(fx_node), {
            "normalized_shape": int(shape[0]), "eps": float(a.get("eps", 1e-5)),
            "elementwise_affine": w is not None, "bias": b is not None}, path)
