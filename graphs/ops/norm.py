"""``batchnorm1d``/``batchnorm2d``/``layernorm``: per-feature affine maps of their input's
neurons; their vectors follow the input's group and the parameter graph gives each norm its
own node set (a pre-LN norm reads a stream written by several layers).

``layernorm`` with ``channels_first`` normalizes over the channel axis of a ``(C, *spatial)``
value: ConvNeXt's ``LayerNorm(data_format="channels_first")``, written with ``mean``/``pow``/
``sqrt``. The tracer recognises such a module by what it computes (:func:`claim_channel_norm`):
its calls read one value and the module's ``weight``/``bias`` and, on the example input,
give exactly the channel LayerNorm of that value. Same symmetry as any LayerNorm: its
vectors follow the channels' group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
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
             "bias": is_bool, "channels_first": is_bool}
    optional: ClassVar[dict[str, Any]] = {"channels_first": False}
    modules = (nn.LayerNorm,)
    functions = (F.layer_norm,)

    def roles(self, a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        n, roles = a["normalized_shape"], {}
        if a["elementwise_affine"]:
            roles["weight"] = (n,)
            if a["bias"]:
                roles["bias"] = (n,)
        return roles

    def check(self, node: Node) -> None:
        a = node.attrs
        if a.get("channels_first") and not (a["elementwise_affine"] and a["bias"]):
            raise fail(node, "a channels_first layernorm has a weight and a bias")

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        (s,) = shapes
        first = node.attrs.get("channels_first", False)
        if len(s) < (2 if first else 1) or s[0 if first else -1] != \
                node.attrs["normalized_shape"]:
            where = "channels (axis 1)" if first else "features"
            raise fail(node, f"normalizes {node.attrs['normalized_shape']} {where}, "
                             f"got {list(s)}")
        return s

    def check_layout(self, nb: _Builder, node: Node, v: Value) -> None:
        if node.attrs.get("channels_first", False):
            nb.channels(node, v)
        else:
            nb.feature_last(node, v)

    def build(self, node: Node, host: Host) -> Step:
        a = node.attrs
        if a.get("channels_first", False):
            return host.place(node.module_path,
                              ChannelsFirstLayerNorm(a["normalized_shape"], a["eps"]))
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


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over axis 1 of ``(N, C, *spatial)``, computed as ConvNeXt writes it (so a
    rebuilt module reproduces the source's rounding)."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_norm(x, self.weight, self.bias, self.eps)


def channel_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 eps: float) -> torch.Tensor:
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    shape = (-1, *[1] * (x.dim() - 2))
    return weight.reshape(shape) * x + bias.reshape(shape)


# --- recognising a channels_first LayerNorm written by hand -------------------------------

# the calls such a module may make (anything else: not this op)
_CHANNEL_NORM_CALLS = {"mean", "sub", "pow", "add", "sqrt", "rsqrt", "truediv", "div", "mul",
                       "getitem", "var", "square", "reshape", "view", "unsqueeze"}


def _call_name(n: fx.Node) -> str:
    return str(getattr(n.target, "__name__", n.target)).strip("_")


def claim_channel_norm(tb: TraceBuilder) -> None:
    """Claim each call of a module whose own tensors are ``weight``/``bias`` of C channels
    and whose calls compute the channels_first LayerNorm of one ``(N, C, *spatial)`` value
    (checked on the example input) as one ``layernorm`` node with ``channels_first``."""
    runs: list[tuple[str, list[fx.Node]]] = []
    for n in tb.gm.graph.nodes:
        stack = n.meta.get("nn_module_stack") or {}
        path = next(reversed(stack), None) if stack else None
        if n.op not in ("call_method", "call_function", "get_attr") or path is None:
            continue
        if runs and runs[-1][0] == path:
            runs[-1][1].append(n)
        else:
            runs.append((path, [n]))
    for path, nodes in runs:
        _claim_run(tb, path, nodes)


def _claim_run(tb: TraceBuilder, path: str, nodes: list[fx.Node]) -> None:
    try:
        m = tb.root.get_submodule(path)
    except AttributeError:
        return
    own = dict(m.named_parameters(recurse=False))
    if set(own) != {"weight", "bias"} or any(True for _ in m.children()):
        return
    if not any(n.op != "get_attr" and _call_name(n) == "mean" for n in nodes) or any(
            n.op != "get_attr" and _call_name(n) not in _CHANNEL_NORM_CALLS for n in nodes):
        return
    inside = set(nodes)
    ins = {a for n in nodes for a in n.all_input_nodes if a not in inside and tb.is_tensor(a)}
    outs = [n for n in nodes if any(u not in inside for u in n.users)]
    eps = getattr(m, "eps", None)
    if len(ins) != 1 or len(outs) != 1 or not isinstance(eps, int | float):
        return
    (x,), (y,) = ins, outs
    xv, yv = tb.values[x], tb.values.get(y)
    w, b = own["weight"], own["bias"]
    if not isinstance(yv, torch.Tensor) or xv.dim() < 3 or w.shape != (xv.shape[1],) or \
            b.shape != w.shape or yv.shape != xv.shape:
        return
    with torch.no_grad():
        want = channel_norm(xv, w, b, float(eps))
    if (want - yv).abs().max() > 1e-5 * yv.abs().max().clamp_min(1.0):
        return  # computes something else: the op-by-op walk names what it cannot read
    attrs = {"normalized_shape": int(w.shape[0]), "eps": float(eps),
             "elementwise_affine": True, "bias": True, "channels_first": True}
    tb.claim(inside, y, "layernorm", x, attrs,
             {"weight": f"{path}.weight", "bias": f"{path}.bias"}, path)
