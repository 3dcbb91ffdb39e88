"""``describe``: turn a live ``nn.Module`` into an op graph by ``torch.fx`` tracing.

Tracing records the calls ``forward`` makes; each one is mapped onto one op of
:mod:`graphs.architecture` or refused with an :class:`~graphs.errors.UnsupportedOpError`
naming it. Shapes come from running the example input once (``ShapeProp``), which also
lets ``x.view(x.size(0), -1)`` be recognised as a flatten.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from graphs.architecture import OPS, Architecture
from graphs.errors import UnsupportedOpError
from graphs.modules import Sine

__all__ = ["describe"]


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, Sine) or super().is_leaf_module(m, qualname)


def describe(module: nn.Module, example_input: torch.Tensor) -> Architecture:
    """Trace ``module`` on ``example_input`` (batched) and return its validated op graph."""
    try:
        graph = _Tracer().trace(module)
    except Exception as exc:  # fx raises many types for untraceable code
        raise UnsupportedOpError(f"module cannot be traced by torch.fx: {exc}") from None
    gm = fx.GraphModule(module, graph)
    was_training = module.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example_input)
    module.train(was_training)
    builder = _Builder(gm)
    for node in gm.graph.nodes:
        builder.visit(node)
    arch = Architecture.from_json(builder.result())
    arch.check_tensors(module.state_dict())
    return arch


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise UnsupportedOpError(f"{node.name}: value is not a single tensor")
    return tuple(meta.shape)


def _pair(v: Any, dims: int) -> list[int]:
    return list(v) if isinstance(v, tuple | list) else [int(v)] * dims


_ACT_MODULES: dict[type, str] = {
    nn.ReLU: "relu", nn.GELU: "gelu", nn.SiLU: "silu", nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid", nn.LeakyReLU: "leaky_relu", Sine: "sine",
}
_ACT_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", F.gelu: "gelu", F.silu: "silu", torch.tanh: "tanh",
    F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.leaky_relu: "leaky_relu",
}
_ACT_METHODS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
_ADD = {operator.add, operator.iadd, torch.add}


class _Builder:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.alias: dict[fx.Node, str] = {}
        self.inputs: list[dict[str, Any]] = []
        self.nodes: list[dict[str, Any]] = []
        self.outputs: list[str] = []
        self.names: set[str] = set()
        self.ignored: set[fx.Node] = set()  # non-tensor values such as x.size(0)
        self.attention: set[fx.Node] = set()  # attention calls, whose result is a tuple

    def result(self) -> dict[str, Any]:
        return {"version": 1, "inputs": self.inputs, "nodes": self.nodes, "outputs": self.outputs}

    def src(self, arg: Any, user: fx.Node) -> str:
        if not isinstance(arg, fx.Node) or arg not in self.alias:
            raise UnsupportedOpError(f"{user.name}: operand {arg!r} is not a traced tensor")
        return self.alias[arg]

    def emit(self, node: fx.Node, op: str, srcs: list[str], attrs: dict[str, Any],
             path: str | None = None) -> None:
        name = path if path and path not in self.names else node.name
        while name in self.names:
            name += "_"
        self.names.add(name)
        params = {role: f"{path}.{role}" for role in OPS[op].roles(attrs)} if path else {}
        self.nodes.append({"name": name, "op": op, "inputs": srcs, "attrs": attrs,
                           "params": params})
        self.alias[node] = name

    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if self.inputs:
                raise UnsupportedOpError(f"{node.name}: only single-input modules are supported")
            self.names.add(node.name)
            self.inputs.append({"name": node.name, "shape": list(_shape(node)[1:])})
            self.alias[node] = node.name
        elif node.op == "output":
            outs = node.args[0]
            outs = list(outs) if isinstance(outs, tuple | list) else [outs]
            self.outputs = [self.src(o, node) for o in outs]
        elif node.op == "call_module":
            self.visit_module(node, self.modules[str(node.target)])
        elif node.op == "call_function":
            self.visit_function(node)
        elif node.op == "call_method":
            self.visit_method(node)
        else:
            raise UnsupportedOpError(f"{node.name}: unsupported fx op {node.op} {node.target}")

    def one(self, node: fx.Node) -> list[str]:
        return [self.src(node.args[0], node)]

    def visit_module(self, node: fx.Node, m: nn.Module) -> None:
        path = str(node.target)
        kind = type(m).__name__
        if isinstance(m, nn.Identity):
            self.alias[node] = self.src(node.args[0], node)
        elif type(m) in _ACT_MODULES:
            op = _ACT_MODULES[type(m)]
            self.emit(node, op, self.one(node), _act_attrs(op, m))
        elif isinstance(m, nn.Linear):
            self.emit(node, "linear", self.one(node), {
                "in_features": m.in_features, "out_features": m.out_features,
                "bias": m.bias is not None}, path)
        elif isinstance(m, nn.Conv1d | nn.Conv2d) and type(m) in (nn.Conv1d, nn.Conv2d):
            dims = 1 if isinstance(m, nn.Conv1d) else 2
            if m.groups != 1 or m.padding_mode != "zeros":
                raise UnsupportedOpError(f"{path}: {kind} with groups={m.groups} or "
                                         f"padding_mode={m.padding_mode!r} is not supported")
            padding = m.padding
            if isinstance(padding, str):
                padding = _same_padding(path, padding, m, dims)
            self.emit(node, f"conv{dims}d", self.one(node), {
                "in_channels": m.in_channels, "out_channels": m.out_channels,
                "kernel_size": _pair(m.kernel_size, dims), "stride": _pair(m.stride, dims),
                "padding": _pair(padding, dims), "dilation": _pair(m.dilation, dims),
                "bias": m.bias is not None}, path)
        elif type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
            op = "batchnorm1d" if isinstance(m, nn.BatchNorm1d) else "batchnorm2d"
            self.emit(node, op, self.one(node), {
                "num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                "affine": m.affine, "track_running_stats": m.track_running_stats}, path)
        elif isinstance(m, nn.LayerNorm):
            if len(m.normalized_shape) != 1:
                raise UnsupportedOpError(f"{path}: LayerNorm over more than the last dim")
            self.emit(node, "layernorm", self.one(node), {
                "normalized_shape": m.normalized_shape[0], "eps": m.eps,
                "elementwise_affine": m.elementwise_affine,
                "bias": m.elementwise_affine and m.bias is not None}, path)
        elif isinstance(m, nn.Dropout):
            self.emit(node, "dropout", self.one(node), {"p": m.p})
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise UnsupportedOpError(f"{path}: Flatten must use start_dim=1, end_dim=-1")
            self.emit(node, "flatten", self.one(node), {})
        elif type(m) in _POOLS:
            op, attrs = _POOLS[type(m)](path, m)
            self.emit(node, op, self.one(node), attrs)
        elif isinstance(m, nn.MultiheadAttention):
            self.visit_attention(node, m, path)
        else:
            raise UnsupportedOpError(f"{path}: module type {kind} is not supported")

    def visit_attention(self, node: fx.Node, m: nn.MultiheadAttention, path: str) -> None:
        q, k, v = (node.args + (None,) * 3)[:3]
        if not (q is k is v) or q is None:
            raise UnsupportedOpError(f"{path}: only self-attention (query is key is value)")
        for key, value in node.kwargs.items():
            if key in ("attn_mask", "key_padding_mask") and value is not None:
                raise UnsupportedOpError(f"{path}: attention masks are not supported")
            if key == "is_causal" and value:
                raise UnsupportedOpError(f"{path}: causal attention is not supported")
        if not m.batch_first or not m._qkv_same_embed_dim or m.bias_k is not None \
                or m.add_zero_attn:
            raise UnsupportedOpError(f"{path}: MultiheadAttention must use batch_first=True, "
                                     "equal q/k/v dims, no bias_kv, no add_zero_attn")
        self.emit(node, "self_attention", [self.src(q, node)], {
            "embed_dim": m.embed_dim, "num_heads": m.num_heads,
            "bias": m.in_proj_bias is not None, "dropout": m.dropout}, path)
        self.attention.add(node)
        for user in node.users:
            if user.op != "call_function" or user.target is not operator.getitem \
                    or user.args[1] != 0:
                raise UnsupportedOpError(f"{path}: only the attention output ([0]) may be used")

    def visit_function(self, node: fx.Node) -> None:
        f = node.target
        if f is operator.getitem and node.args[0] in self.attention and node.args[1] == 0:
            self.alias[node] = self.alias[node.args[0]]
        elif f in _ADD:
            if len(node.args) != 2 or node.kwargs:
                raise UnsupportedOpError(f"{node.name}: add with extra arguments")
            self.emit(node, "add", [self.src(a, node) for a in node.args], {})
        elif f in _ACT_FUNCTIONS:
            op = _ACT_FUNCTIONS[f]
            attrs: dict[str, Any] = {}
            if op == "gelu":
                attrs["approximate"] = node.kwargs.get("approximate", "none")
            if op == "leaky_relu":
                args = node.args[1:] or (node.kwargs.get("negative_slope", 0.01),)
                attrs["negative_slope"] = float(args[0])
            self.emit(node, op, self.one(node), attrs)
        elif f is torch.flatten:
            self.flatten(node, *node.args[1:], **node.kwargs)
        elif f is F.dropout:
            self.emit(node, "dropout", self.one(node), {"p": float(node.kwargs.get("p", 0.5))})
        else:
            name = getattr(f, "__name__", str(f))
            raise UnsupportedOpError(f"{node.name}: function {name} is not supported")

    def visit_method(self, node: fx.Node) -> None:
        m = str(node.target)
        if m == "size":
            self.ignored.add(node)
        elif m in _ACT_METHODS:
            self.emit(node, _ACT_METHODS[m], self.one(node), {})
        elif m == "flatten":
            self.flatten(node, *node.args[1:], **node.kwargs)
        elif m == "contiguous":
            self.alias[node] = self.src(node.args[0], node)
        elif m in ("view", "reshape"):
            src, out = _shape(node.args[0]), _shape(node)  # type: ignore[arg-type]
            if len(src) > 2 and len(out) == 2 and out[0] == src[0]:
                self.emit(node, "flatten", self.one(node), {})
            elif src == out:
                self.alias[node] = self.src(node.args[0], node)
            else:
                raise UnsupportedOpError(f"{node.name}: {m} other than a flatten to (batch, -1)")
        elif m in ("add", "add_", "__add__", "__iadd__"):
            self.emit(node, "add", [self.src(a, node) for a in node.args], {})
        else:
            raise UnsupportedOpError(f"{node.name}: tensor method {m} is not supported")

    def flatten(self, node: fx.Node, start_dim: int = 0, end_dim: int = -1) -> None:
        if start_dim != 1 or end_dim != -1:
            raise UnsupportedOpError(f"{node.name}: flatten must use start_dim=1, end_dim=-1")
        self.emit(node, "flatten", self.one(node), {})


def _act_attrs(op: str, m: nn.Module) -> dict[str, Any]:
    if op == "gelu":
        return {"approximate": m.approximate}
    if op == "leaky_relu":
        return {"negative_slope": float(m.negative_slope)}
    if op == "sine":
        return {"w0": float(m.w0)}
    return {}


def _same_padding(path: str, padding: str, m: nn.Module, dims: int) -> list[int]:
    if padding == "valid":
        return [0] * dims
    totals = [d * (k - 1) for d, k in zip(_pair(m.dilation, dims), _pair(m.kernel_size, dims),
                                           strict=True)]
    if any(t % 2 for t in totals):
        raise UnsupportedOpError(f"{path}: padding='same' with an even kernel is asymmetric")
    return [t // 2 for t in totals]


def _pool(kind: str, dims: int) -> Callable[[str, nn.Module], tuple[str, dict[str, Any]]]:
    def convert(path: str, m: Any) -> tuple[str, dict[str, Any]]:
        if kind == "adaptive_avg" or kind == "adaptive_max":
            size = _pair(m.output_size, dims)
            if any(s is None for s in size) or getattr(m, "return_indices", False):
                raise UnsupportedOpError(f"{path}: adaptive pooling needs a full output size")
            return f"{kind}_pool{dims}d", {"output_size": size}
        if m.ceil_mode or getattr(m, "return_indices", False) \
                or getattr(m, "divisor_override", None) is not None \
                or getattr(m, "count_include_pad", True) is False:
            raise UnsupportedOpError(f"{path}: {type(m).__name__} with ceil_mode, "
                                     "return_indices, divisor_override or count_include_pad=False")
        stride = m.stride if m.stride is not None else m.kernel_size
        attrs = {"kernel_size": _pair(m.kernel_size, dims), "stride": _pair(stride, dims),
                 "padding": _pair(m.padding, dims)}
        if kind == "max":
            attrs["dilation"] = _pair(m.dilation, dims)
        return f"{kind}_pool{dims}d", attrs

    return convert


_POOLS: dict[type, Callable[[str, nn.Module], tuple[str, dict[str, Any]]]] = {
    nn.AvgPool1d: _pool("avg", 1), nn.AvgPool2d: _pool("avg", 2),
    nn.MaxPool1d: _pool("max", 1), nn.MaxPool2d: _pool("max", 2),
    nn.AdaptiveAvgPool1d: _pool("adaptive_avg", 1), nn.AdaptiveAvgPool2d: _pool("adaptive_avg", 2),
    nn.AdaptiveMaxPool1d: _pool("adaptive_max", 1), nn.AdaptiveMaxPool2d: _pool("adaptive_max", 2),
}
