"""``parameter``: a learned tensor used directly in ``forward`` (a class token, a position
embedding, a layer-scale ``gamma``).

Its last axis is a feature axis: a new group, tied by whatever ``add``/``mul``/``cat`` joins
it to. Its other entries (token positions) are fixed rows: in the parameter graph the tensor
is a linear map from one fixed input neuron per row (a one-hot constant) to its features.
``batch`` says the leading axis of size 1 is the batch axis (timm's ``(1, N, D)`` tokens).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from torch import fx, nn

from graphs.errors import UnsupportedOpError
from graphs.ops.base import Check, Host, Node, Op, Shape, Step, Value, fail, is_bool

if TYPE_CHECKING:
    from graphs.neuron_map import _Builder
    from graphs.parameter_graph import _LayoutBuilder
    from graphs.trace import _Builder as TraceBuilder


def _name(v: Any) -> bool:
    return isinstance(v, str) and v.isidentifier()


def _shape(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)


class Parameter(Op):
    name = "parameter"
    n_inputs = 0
    attrs: ClassVar[dict[str, Check]] = {"name": _name, "shape": _shape, "batch": is_bool}
    family = "parameter"

    def roles(self, a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        return {a["name"]: tuple(a["shape"])}

    def check(self, node: Node) -> None:
        if node.attrs["batch"] and (len(node.attrs["shape"]) < 2 or node.attrs["shape"][0] != 1):
            raise fail(node, "a batch axis must be a leading axis of size 1")

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        s = tuple(node.attrs["shape"])
        return s[1:] if node.attrs["batch"] else s

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        shape = nb.arch.shapes[node.name]
        features, rows = shape[-1], math.prod(shape[:-1])  # type: ignore[arg-type]
        g = nb.group(node.name, features, node.name)  # type: ignore[arg-type]
        fixed = nb.group(f"{node.name}:rows", rows, node.name, "input")
        tensor = node.params[node.attrs["name"]]
        nb.tensor(tensor, (fixed, g), (rows, features), view=f"{tensor}@rows")  # type: ignore[arg-type]
        return nb.value(g, len(shape) - 1)

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        tensor = node.params[node.attrs["name"]]
        view = gb.nmap.views[f"{tensor}@rows"]
        rows = gb.new_set(view.shape[0], "input", [(f"{node.name}:rows", view.shape[0])], [])
        s = gb.new_set(view.shape[1], "linear", node.name, [rows])
        gb.dense(rows, 0, s, view.name, "linear", transposed=True)
        gb.produce(node.name, s)

    def build(self, node: Node, host: Host) -> Step:
        return host.parameter(node.params[node.attrs["name"]], tuple(node.attrs["shape"]))

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        path = str(fx_node.target)
        value = tb.root.get_parameter(path) if _is_param(tb.root, path) else None
        if value is None:
            raise UnsupportedOpError(f"{path}: a buffer used in forward is not supported "
                                     "(only learned nn.Parameters are)")
        shape = list(value.shape)
        batch = len(shape) >= 2 and shape[0] == 1
        *_, attr = path.split(".")
        tb.emit(fx_node, self.name, [], {"name": attr, "shape": shape, "batch": batch},
                path=path, params={attr: path})


def _is_param(root: nn.Module, path: str) -> bool:
    try:
        root.get_parameter(path)
        return True
    except AttributeError:
        return False
