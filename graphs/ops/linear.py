"""``linear``: ``nn.Linear`` over the last axis; its outputs are a new neuron group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from torch import fx, nn

from graphs.ops.base import Check, Host, Node, Op, Shape, Step, Value, fail, is_bool, is_pos

if TYPE_CHECKING:
    from graphs.neuron_map import _Builder
    from graphs.parameter_graph import _LayoutBuilder
    from graphs.trace import _Builder as TraceBuilder


class Linear(Op):
    name = "linear"
    family = "linear"
    attrs: ClassVar[dict[str, Check]] = {
        "in_features": is_pos, "out_features": is_pos, "bias": is_bool}
    modules = (nn.Linear,)

    def roles(self, a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        roles = {"weight": (a["out_features"], a["in_features"])}
        if a["bias"]:
            roles["bias"] = (a["out_features"],)
        return roles

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        (s,) = shapes
        if len(s) < 1 or s[-1] != node.attrs["in_features"]:
            raise fail(node, f"expects last dim {node.attrs['in_features']}, got {list(s)}")
        return (*s[:-1], node.attrs["out_features"])

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        (v,) = ins
        if v.axis != len(nb.arch.shapes[node.inputs[0]]) - 1:
            raise fail(node, "linear over a non-feature axis (permute the features last)")
        g = nb.group(node.name, node.attrs["out_features"], node.name)
        w = node.params["weight"]
        if v.repeat > 1:  # after a spatial flatten: (out, C, H·W) keeps pixel blocks together
            a = node.attrs
            nb.tensor(w, (g, v.group, None), (a["out_features"], a["in_features"] // v.repeat,
                                              v.repeat), view=f"{w}@unflatten")
        else:
            nb.map(w, (g, v))
        if "bias" in node.params:
            nb.tensor(node.params["bias"], (g,))
        nb.use(v, node.name)
        return nb.value(g, len(nb.arch.shapes[node.name]) - 1)

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        src = gb.resolve(node.inputs[0])
        s = gb.new_set(node.attrs["out_features"], "linear", node.name, [src])
        gb.weight(node.inputs[0], s, "linear", node.params["weight"])
        if "bias" in node.params:
            gb.features(node.params["bias"], s, 0)
        gb.produce(node.name, s)

    def build(self, node: Node, host: Host) -> Step:
        a = node.attrs
        return host.place(node.module_path,
                     nn.Linear(a["in_features"], a["out_features"], bias=a["bias"]))

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, m: nn.Linear) -> None:
        tb.emit(fx_node, self.name, tb.one(fx_node), {
            "in_features": m.in_features, "out_features": m.out_features,
            "bias": m.bias is not None}, tb.path(fx_node))
