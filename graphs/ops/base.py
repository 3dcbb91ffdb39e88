"""The contract every op of the op graph fulfils, and the small helpers ops share.

An :class:`Op` is everything the library knows about one kind of node, in one place:

* ``attrs``: attribute name -> validity check (the JSON is checked against it exactly);
* :meth:`Op.roles`: parameter role -> tensor shape, from the attributes;
* :meth:`Op.shape`: the per-sample output shape from the input shapes (the shape rule);
* :meth:`Op.neurons`: the neuron-map rule (which group each axis of each tensor joins);
* :meth:`Op.graph`: the parameter-graph rule (node sets, edges, node features);
* :meth:`Op.build`: the runnable step for :func:`graphs.build_module`;
* trace patterns: the module types, functions and tensor methods :func:`graphs.describe`
  maps onto this op (:meth:`Op.trace`).

The three rules receive the builder that calls them (neuron map, parameter graph, tracer)
and use its small public helper API; an op never reaches into another op's code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from graphs.errors import ArchitectureError, UnsupportedOpError

if TYPE_CHECKING:  # the builders import the registry, so only their types are needed here
    from graphs.neuron_map import _Builder
    from graphs.parameter_graph import _LayoutBuilder
    from graphs.trace import _Builder as TraceBuilder

__all__ = ["Check", "Host", "InputSpec", "Node", "Op", "Shape", "Step", "Value", "fail"]

Shape = tuple[int | None, ...]
Check = Callable[[Any], bool]
Step = Callable[..., torch.Tensor]


class Host(Protocol):
    """What a module builder gets from :class:`graphs.OpGraphModule`."""

    owner: nn.Module  # the module being built (its ``training`` flag, its parameters)

    def place(self, path: str, module: nn.Module) -> nn.Module:
        """Put ``module`` at ``path`` (so its state-dict keys are the checkpoint's names)."""
        ...

    def parameter(self, name: str, shape: tuple[int, ...]) -> Step:
        """Register a learned tensor under its state-dict ``name``; a step returning it."""
        ...

    def buffer(self, name: str, shape: tuple[int, ...]) -> Step:
        """Register a constant tensor (a mask) under its state-dict ``name``; a step
        returning it."""
        ...


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: Shape


@dataclass(frozen=True)
class Node:
    """One op: ``params`` maps parameter roles (``weight``, ``running_mean``...) to tensor names."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any]
    params: dict[str, str]

    @property
    def module_path(self) -> str:
        """The module prefix shared by this node's tensor names ('' for a bare module)."""
        role, name = next(iter(self.params.items()))
        return name[: len(name) - len(role)].rstrip(".")


@dataclass(frozen=True)
class Value:
    """How an op-graph value's feature axis maps onto groups.

    ``segments`` lists (group, size) along the feature axis: one entry, except after a
    channel concatenation. ``repeat > 1`` after a spatial flatten: each group neuron owns
    ``repeat`` consecutive features. ``axis`` is the feature axis in the per-sample shape.
    """

    segments: tuple[tuple[str, int], ...]
    repeat: int
    axis: int

    @property
    def group(self) -> str:
        if len(self.segments) != 1:
            raise ArchitectureError("a concatenated value is used where one group is needed")
        return self.segments[0][0]

    def moved(self, axis: int) -> Value:
        return Value(self.segments, self.repeat, axis)


def fail(node: Node, msg: str) -> ArchitectureError:
    return ArchitectureError(f"node {node.name!r} ({node.op}): {msg}")


# --- attribute checks ---------------------------------------------------------------------


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def is_pos(v: Any) -> bool:
    return is_int(v) and v > 0


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def is_opt_num(v: Any) -> bool:
    return v is None or is_num(v)


def is_prob(v: Any) -> bool:
    return is_num(v) and 0 <= v <= 1


def ints(n: int, positive: bool = False) -> Check:
    check = is_pos if positive else is_int
    return lambda v: isinstance(v, list) and len(v) == n and all(check(x) for x in v)


def int_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)


def one_of(*values: str) -> Check:
    return lambda v: v in values


def pair(v: Any, dims: int) -> list[int]:
    return list(v) if isinstance(v, tuple | list) else [int(v)] * dims


def broadcast(node: Node, shapes: list[Shape]) -> Shape:
    """numpy broadcasting of per-sample shapes (unknown dims broadcast as unknown)."""
    rank = max(len(s) for s in shapes)
    out: list[int | None] = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0} - {1}
        if len(dims) > 1:
            raise fail(node, f"cannot broadcast shapes {[list(s) for s in shapes]}")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


# --- the op contract ---------------------------------------------------------------------


class Op:
    """Base class: a parameter-free, shape-keeping op that passes its input's neurons on.

    Subclasses override what differs. ``n_inputs`` is ``None`` for "one or more".
    ``free_names`` lets a node's tensors live under several module prefixes (an attention
    written with separate q/k/v modules); otherwise every tensor is ``<module>.<role>``.
    """

    name: ClassVar[str]
    n_inputs: ClassVar[int | None] = 1
    attrs: ClassVar[dict[str, Check]] = {}
    optional: ClassVar[dict[str, Any]] = {}  # attrs with these defaults may be left out
    family: ClassVar[str] = "other"
    channel_first: ClassVar[bool] = False  # reads (channels, *spatial) values
    free_names: ClassVar[bool] = False
    # parameter-graph vocabulary of the v1 metanetworks: the nearest activation it knows
    activation: ClassVar[str | None] = None
    # trace patterns
    modules: ClassVar[tuple[type, ...]] = ()
    functions: ClassVar[tuple[Any, ...]] = ()
    methods: ClassVar[tuple[str, ...]] = ()

    def roles(self, attrs: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        return {}

    def check(self, node: Node) -> None:
        """Checks across attributes (each attribute alone is checked by ``attrs``)."""

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        return shapes[0]

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        return ins[0]

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        gb.passthrough(node)

    def build(self, node: Node, host: Host) -> Step:
        raise ArchitectureError(f"node {node.name!r}: op {node.op} cannot be rebuilt")

    def trace(self, tb: TraceBuilder, fx_node: Any, target: Any) -> None:
        """Emit this op for a matched fx node (a module call, function or method call)."""
        raise UnsupportedOpError(f"{tb.where(fx_node)}: {self.name} has no trace rule")

    def act_param(self, attrs: dict[str, Any]) -> float:
        """The activation parameter the parameter graph records (w0, slope), else 0."""
        return 0.0

    def apply(self, x: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        """Elementwise ops: the function on a parameter-graph value (probe features)."""
        raise NotImplementedError(self.name)
