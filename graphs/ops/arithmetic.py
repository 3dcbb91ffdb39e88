"""Arithmetic: ``add``/``mul`` of two values, and a value with a constant.

``add`` (residual) and ``mul`` (gating, ``x * sigmoid(s)``; layer scale ``gamma * x``) tie
the groups they join into one, since both operands must be permuted alike for the result
to be a permutation of either. Operands broadcast (a squeeze-excitation gate is
``(C, 1, 1)``); their feature axes must line up. Constants (``omega_0 * x``, ``x / 2``,
``-x``, ``x + 1``) act on every neuron alike, so they keep the group.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import fx

from graphs.errors import UnsupportedOpError
from graphs.ops.base import Check, Host, Node, Op, Shape, Step, Value, broadcast, fail, is_num

if TYPE_CHECKING:
    from graphs.neuron_map import _Builder
    from graphs.parameter_graph import _LayoutBuilder
    from graphs.trace import _Builder as TraceBuilder


class _Join(Op):
    n_inputs = 2
    family = "residual"
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        return broadcast(node, shapes)

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        a, b = ins
        sa, sb = (nb.arch.shapes[s] for s in node.inputs)
        if len(sa) - a.axis != len(sb) - b.axis:
            raise fail(node, f"the feature axes of {list(sa)} and {list(sb)} do not line up")
        out = nb.union(node, a, b)
        return out.moved(len(nb.arch.shapes[node.name]) - (len(sa) - a.axis))

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        srcs = [gb.resolve(v) for v in node.inputs]
        s = gb.new_set(gb.out.sets[srcs[0]].size, "add", node.name, srcs)
        for src in srcs:
            gb.diagonal(src, s, "residual", None)
        gb.produce(node.name, s)

    def build(self, node: Node, host: Host) -> Step:
        return self.fn


class Add(_Join):
    name = "add"
    fn = staticmethod(torch.add)


class Mul(_Join):
    """A product of two values; the v1 parameter graph records it as a join like ``add``."""

    name = "mul"
    family = "gating"
    fn = staticmethod(torch.mul)


class _Scalar(Op):
    attrs: ClassVar[dict[str, Check]] = {"value": is_num}
    family = "scalar"

    def __init__(self, name: str, fn: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
        self.name = name  # type: ignore[misc]
        self.fn = fn

    def build(self, node: Node, host: Host) -> Step:
        fn, c = self.fn, node.attrs["value"]
        return lambda x: fn(x, c)


class Neg(Op):
    name = "neg"
    family = "scalar"
    functions = (operator.neg, torch.neg)
    methods = ("neg", "__neg__")

    def build(self, node: Node, host: Host) -> Step:
        return torch.neg

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        tb.emit(fx_node, self.name, tb.one(fx_node), {})


SCALAR_OPS = (
    _Scalar("add_scalar", lambda x, c: x + c),
    _Scalar("mul_scalar", lambda x, c: x * c),
    _Scalar("div_scalar", lambda x, c: x / c),
    _Scalar("rsub_scalar", lambda x, c: c - x),
)

_KIND = {operator.add: "add", operator.iadd: "add", torch.add: "add",
         operator.sub: "sub", operator.isub: "sub", torch.sub: "sub",
         operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
         operator.truediv: "div", operator.itruediv: "div", torch.div: "div",
         "add": "add", "add_": "add", "__add__": "add", "__iadd__": "add", "__radd__": "add",
         "sub": "sub", "sub_": "sub", "__sub__": "sub", "mul": "mul", "mul_": "mul",
         "__mul__": "mul", "__rmul__": "mul", "div": "div", "div_": "div",
         "__truediv__": "div"}


class Arithmetic(Op):
    """The trace rule for ``+ - * /``: picks ``add``/``mul`` or a scalar op by operand."""

    name = "arithmetic"  # dispatch only, never in an op graph
    functions = tuple(k for k in _KIND if not isinstance(k, str))
    methods = tuple(k for k in _KIND if isinstance(k, str))

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        kind = _KIND[target]
        if set(fx_node.kwargs) - {"out"} or len(fx_node.args) != 2:
            raise UnsupportedOpError(f"{tb.where(fx_node)}: {kind} with extra arguments "
                                     "(alpha, rounding_mode) is not supported")
        a, b = fx_node.args
        ta, tb_ = tb.is_tensor(a), tb.is_tensor(b)
        if ta and tb_:
            if kind not in ("add", "mul"):
                raise UnsupportedOpError(f"{tb.where(fx_node)}: {kind} of two tensors is not "
                                         "supported (add and mul are)")
            tb.emit(fx_node, kind, [tb.src(a, fx_node), tb.src(b, fx_node)], {})
            return
        x, c, first = (a, tb.const(b), True) if ta else (b, tb.const(a), False)
        if c is None or not (ta or tb_):
            raise UnsupportedOpError(f"{tb.where(fx_node)}: {kind} of {a!r} and {b!r}: "
                                     "one operand must be a traced tensor, the other a number")
        op = {"add": "add_scalar", "mul": "mul_scalar", "div": "div_scalar",
              "sub": "add_scalar" if first else "rsub_scalar"}[kind]
        if kind == "div" and not first:
            raise UnsupportedOpError(f"{tb.where(fx_node)}: a number divided by a tensor "
                                     "is not supported")
        value = -c if kind == "sub" and first else c  # x - c == x + (-c) exactly
        tb.emit(fx_node, op, [tb.src(x, fx_node)], {"value": float(value)})
