"""Elementwise ops: activations, dropout and identity-like steps.

They keep their input's neurons (each feature maps to itself), so their neuron-map rule is
the pass-through default. Each activation is one row of :data:`ACTIVATION_TABLE` (adding one
is adding a row): its function, the modules/functions/methods that trace to it, and the
nearest activation of the v1 metanetwork vocabulary. ``sine``/``cosine`` carry ``w0``: the
tracer folds a constant scale into them, so SIREN's ``torch.sin(self.omega_0 * linear(x))``
and ``Sine(w0)`` give the same op graph.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import fx, nn

from graphs.modules import Cosine, Sine
from graphs.ops.base import Check, Host, Node, Op, Step, is_num, is_prob, one_of

if TYPE_CHECKING:
    from graphs.parameter_graph import _LayoutBuilder
    from graphs.trace import _Builder as TraceBuilder

Fn = Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]


@dataclass(frozen=True)
class Row:
    name: str
    fn: Fn  # the function on a value, given the node's attrs
    nearest: str  # the v1 vocabulary activation the parameter graph records
    attrs: dict[str, Check] = field(default_factory=dict)
    modules: tuple[type, ...] = ()
    functions: tuple[Any, ...] = ()
    methods: tuple[str, ...] = ()
    from_module: Callable[[Any], dict[str, Any]] = lambda m: {}
    from_call: Callable[[fx.Node], dict[str, Any]] = lambda n: {}
    param: str | None = None  # the attr recorded as the parameter graph's act_param


def _kw(node: fx.Node, key: str, pos: int, default: Any) -> Any:
    return node.kwargs[key] if key in node.kwargs else \
        node.args[pos] if len(node.args) > pos else default


ACTIVATION_TABLE = (  # v1 vocabulary first, in its order; append new rows at the end
    Row("relu", lambda x, a: F.relu(x), "relu", modules=(nn.ReLU,),
        functions=(F.relu, torch.relu, F.relu_, torch.relu_), methods=("relu", "relu_")),
    Row("gelu", lambda x, a: F.gelu(x, approximate=a["approximate"]), "gelu",
        {"approximate": one_of("none", "tanh")}, (nn.GELU,), (F.gelu,), (),
        lambda m: {"approximate": m.approximate},
        lambda n: {"approximate": _kw(n, "approximate", 1, "none")}),
    Row("silu", lambda x, a: F.silu(x), "silu", modules=(nn.SiLU,), functions=(F.silu,)),
    Row("tanh", lambda x, a: torch.tanh(x), "tanh", modules=(nn.Tanh,),
        functions=(torch.tanh, F.tanh), methods=("tanh",)),
    Row("sigmoid", lambda x, a: torch.sigmoid(x), "sigmoid", modules=(nn.Sigmoid,),
        functions=(torch.sigmoid, F.sigmoid), methods=("sigmoid",)),
    Row("leaky_relu", lambda x, a: torch.where(x >= 0, x, x * a["negative_slope"]),
        "leaky_relu",
        {"negative_slope": is_num}, (nn.LeakyReLU,), (F.leaky_relu,), (),
        lambda m: {"negative_slope": float(m.negative_slope)},
        lambda n: {"negative_slope": float(_kw(n, "negative_slope", 1, 0.01))},
        "negative_slope"),
    Row("sine", lambda x, a: torch.sin(a["w0"] * x), "sine", {"w0": is_num}, (Sine,),
        (torch.sin,), ("sin",), lambda m: {"w0": float(m.w0)}, lambda n: {"w0": 1.0}, "w0"),
    Row("relu6", lambda x, a: F.relu6(x), "relu", modules=(nn.ReLU6,), functions=(F.relu6,)),
    Row("hardswish", lambda x, a: F.hardswish(x), "silu", modules=(nn.Hardswish,),
        functions=(F.hardswish,)),
    Row("hardsigmoid", lambda x, a: F.hardsigmoid(x), "sigmoid", modules=(nn.Hardsigmoid,),
        functions=(F.hardsigmoid,)),
    Row("mish", lambda x, a: F.mish(x), "silu", modules=(nn.Mish,), functions=(F.mish,)),
    Row("cosine", lambda x, a: torch.cos(a["w0"] * x), "sine", {"w0": is_num}, (Cosine,),
        (torch.cos,), ("cos",), lambda m: {"w0": float(m.w0)}, lambda n: {"w0": 1.0}, "w0"),
)
V1_ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "sine")


class Activation(Op):
    """One row of the activation table as an op."""

    family = "activation"

    def __init__(self, row: Row) -> None:
        self.row = row
        self.name = row.name  # type: ignore[misc]
        self.attrs = row.attrs  # type: ignore[misc]
        self.activation = row.nearest  # type: ignore[misc]
        self.modules, self.functions, self.methods = (  # type: ignore[misc]
            row.modules, row.functions, row.methods)

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        gb.activation(node, self.row.nearest, self.act_param(node.attrs))

    def act_param(self, attrs: dict[str, Any]) -> float:
        return float(attrs[self.row.param]) if self.row.param else 0.0

    def apply(self, x: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        attrs = {k: param for k in self.row.attrs} if self.row.param else {}
        if self.name == "gelu":
            attrs = {"approximate": "none"}  # the graph does not record the approximation
        return self.row.fn(x, attrs)

    def build(self, node: Node, host: Host) -> Step:
        fn, attrs = self.row.fn, dict(node.attrs)
        return lambda x: fn(x, attrs)

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        if isinstance(target, nn.Module):
            attrs = self.row.from_module(target)
        else:
            attrs = self.row.from_call(fx_node)
            if "w0" in attrs:  # sin(w0 * x): fold the constant scale into the op
                scale = tb.fold_scale(fx_node.args[0])
                if scale is not None:
                    attrs["w0"], src = scale
                    tb.emit(fx_node, self.name, [src], attrs)
                    return
        tb.emit(fx_node, self.name, tb.one(fx_node), attrs)


class Dropout(Op):
    """Identity at inference; kept in the graph so a rebuilt module trains like the source."""

    name = "dropout"
    attrs: ClassVar[dict[str, Check]] = {"p": is_prob}
    modules = (nn.Dropout, nn.Dropout1d, nn.Dropout2d)
    functions = (F.dropout, F.dropout1d, F.dropout2d)

    def build(self, node: Node, host: Host) -> Step:
        p, owner = node.attrs["p"], host.owner  # the rebuilt module's training flag decides
        return lambda x: F.dropout(x, p, owner.training)

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        p = target.p if isinstance(target, nn.Module) else float(_kw(fx_node, "p", 1, 0.5))
        tb.emit(fx_node, self.name, tb.one(fx_node), {"p": float(p)})


class Identity(Op):
    """Steps that do nothing to a value: ``nn.Identity``, ``.contiguous()``, ``+x``."""

    name = "identity"  # never emitted: tracing aliases the value
    modules = (nn.Identity,)
    methods = ("contiguous", "clone", "detach", "requires_grad_")
    functions = (operator.pos,)

    def build(self, node: Node, host: Host) -> Step:
        return lambda x: x

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        tb.alias(fx_node, fx_node.args[0])
