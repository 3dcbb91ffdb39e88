"""``embedding`` (``nn.Embedding`` on token ids) and ``position_embedding`` (the same table
read at ``arange(length)``, nanoGPT's ``wpe(pos)``).

The vocabulary (table rows) is fixed, the embedding dim is a new permutable group. In the
parameter graph the table is a linear map from one fixed input neuron per row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import fx, nn

from graphs.errors import UnsupportedOpError
from graphs.ops.base import Check, Host, Node, Op, Shape, Step, Value, fail, is_pos

if TYPE_CHECKING:
    from graphs.neuron_map import _Builder
    from graphs.parameter_graph import _LayoutBuilder
    from graphs.trace import _Builder as TraceBuilder


class Embedding(Op):
    name = "embedding"
    family = "embedding"
    attrs: ClassVar[dict[str, Check]] = {"num_embeddings": is_pos, "embedding_dim": is_pos}
    modules = (nn.Embedding,)

    def roles(self, a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        return {"weight": (a["num_embeddings"], a["embedding_dim"])}

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        return (*shapes[0], node.attrs["embedding_dim"])

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        g = nb.group(node.name, node.attrs["embedding_dim"], node.name)
        vocab = nb.group(f"{node.name}:vocab", node.attrs["num_embeddings"], node.name, "input")
        nb.tensor(node.params["weight"], (vocab, g))
        return nb.value(g, len(nb.arch.shapes[node.name]) - 1)

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        n, d = node.attrs["num_embeddings"], node.attrs["embedding_dim"]
        rows = gb.new_set(n, "input", [(f"{node.name}:vocab", n)], [])
        s = gb.new_set(d, "linear", node.name, [rows])
        gb.dense(rows, 0, s, node.params["weight"], "linear", transposed=True)
        gb.produce(node.name, s)

    def build(self, node: Node, host: Host) -> Step:
        a = node.attrs
        return host.place(node.module_path, nn.Embedding(a["num_embeddings"],
                                                         a["embedding_dim"]))

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, m: nn.Embedding) -> None:
        path = tb.path(fx_node)
        if m.max_norm is not None:
            raise UnsupportedOpError(f"{path}: nn.Embedding with max_norm rewrites its weight "
                                     "in forward; use max_norm=None")
        attrs = {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim}
        positions = tb.arange(fx_node.args[0])
        if positions is not None:  # wpe(torch.arange(T)): the first T rows of the table
            if positions != list(range(len(positions))):
                raise UnsupportedOpError(f"{path}: embedding of arange other than 0..T-1")
            attrs["length"] = len(positions)
            tb.emit(fx_node, "position_embedding", [], attrs, path)
        else:
            tb.emit(fx_node, self.name, tb.one(fx_node), attrs, path)


class PositionEmbedding(Embedding):
    name = "position_embedding"
    n_inputs = 0
    attrs: ClassVar[dict[str, Check]] = {
        "num_embeddings": is_pos, "embedding_dim": is_pos, "length": is_pos}
    modules = ()

    def check(self, node: Node) -> None:
        if node.attrs["length"] > node.attrs["num_embeddings"]:
            raise fail(node, "length exceeds the number of positions")

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        return (node.attrs["length"], node.attrs["embedding_dim"])

    def build(self, node: Node, host: Host) -> Step:
        emb, n = super().build(node, host), node.attrs["length"]
        return lambda: emb.weight[:n]  # type: ignore[attr-defined]


class Arange(Op):
    """``torch.arange`` of constants: a position index, consumed by a position embedding."""

    name = "arange"  # trace rule only
    functions = (torch.arange,)

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, target: Any) -> None:
        tb.mark_arange(fx_node)
