"""A picture of a checkpoint's parameter graph, as plain JSON-able data for a drawing.

Two levels of detail, because a picture of every weight helps only while it stays legible:

* **full**: every neuron of the parameter graph (:func:`graphs.to_graph`) as a node, placed
  in the column of its depth (``node_layer``) at its position in that column, and every
  weight as an edge carrying its value. A kernel edge (a conv's k×k kernel, the pixel
  block of a linear after a flatten) is drawn as one line, so it carries the mean of its
  kernel entries; identity edges (residual, norm) carry 1.
* **layers**: one box per input and per op of the architecture with its output shape and
  parameter count, and one link per wire between them, with the number and norm of the
  target op's weights (so a reader sees where the parameters sit without a million lines).

``auto`` picks ``full`` while the graph has at most ``max_nodes`` neurons and
``max_edges`` weights. The counts come from the cached layout, so deciding costs nothing
for a large network.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from graphs.errors import ArchitectureError
from graphs.io import Checkpoint
from graphs.neuron_map import neuron_map
from graphs.parameter_graph import EDGE_TYPES, NODE_TYPES, _layout, to_graph

__all__ = ["FULL_LIMIT", "MAX_EDGES", "MAX_NODES", "Detail", "picture"]

Detail = Literal["full", "layers", "auto"]
MAX_NODES = 400  # a column of more circles than this is no longer readable
MAX_EDGES = 5_000  # nor are more lines than this; the layer view says the same in boxes
# ``full`` asked for explicitly may go past the readable caps, but never past this: the
# answer grows by ~60 bytes per edge and a browser has to draw it
FULL_LIMIT = (5_000, 100_000)

_NODE_TYPE_NAMES = {i: name for name, i in NODE_TYPES.items()}
_EDGE_TYPE_NAMES = {i: name for name, i in EDGE_TYPES.items()}
_NODE_KIND = {"batchnorm": "norm", "layernorm": "norm", "add": "join"}


def picture(
    checkpoint: Checkpoint,
    detail: Detail = "auto",
    max_nodes: int = MAX_NODES,
    max_edges: int = MAX_EDGES,
) -> dict[str, Any]:
    """The picture as a dict (see the module docstring); ``detail="full"`` on a graph past
    :data:`FULL_LIMIT` raises ``ArchitectureError``."""
    arch = checkpoint.architecture
    layout = _layout(arch)
    counts = {"outputs": list(arch.outputs), "neuron_count": layout.num_nodes,
              "weight_count": layout.num_edges, "parameter_count": arch.num_parameters(),
              "max_nodes": max_nodes, "max_edges": max_edges}  # fmt: skip
    small = layout.num_nodes <= max_nodes and layout.num_edges <= max_edges
    if detail == "full" and (layout.num_nodes > FULL_LIMIT[0] or layout.num_edges > FULL_LIMIT[1]):
        raise ArchitectureError(
            f"the parameter graph has {layout.num_nodes:,} neurons and {layout.num_edges:,} "
            f"weights; full detail is drawn up to {FULL_LIMIT[0]:,} neurons and "
            f"{FULL_LIMIT[1]:,} weights (ask for detail=layers)"
        )
    if detail == "layers" or (detail == "auto" and not small):
        reason = (
            "asked for the layer view"
            if detail == "layers"
            else f"{layout.num_nodes:,} neurons and {layout.num_edges:,} weights are more "
            f"than a readable drawing holds ({max_nodes:,} neurons, {max_edges:,} "
            "weights): one box per layer"
        )
        return {"detail": "layers", "reason": reason, **counts, **_layers(checkpoint),
                "columns": [], "nodes": [], "edges": []}  # fmt: skip
    reason = (
        "asked for every neuron and weight"
        if detail == "full"
        else f"{layout.num_nodes:,} neurons and {layout.num_edges:,} weights fit in one "
        "drawing: every neuron and weight"
    )
    return {"detail": "full", "reason": reason, **counts, **_full(checkpoint),
            "layers": [], "links": []}  # fmt: skip


def _full(checkpoint: Checkpoint) -> dict[str, Any]:
    graph = to_graph(checkpoint, max_kernel=1)  # kernels are read whole from edge_kernel
    nmap = neuron_map(checkpoint.architecture)
    layer = graph.node_layer.tolist()
    types = graph.node_type.tolist()
    groups = [graph.group_ids[g] for g in graph.node_group.tolist()]
    bias = graph.x[:, 0].tolist()
    nodes, columns = [], []
    position: dict[int, int] = {}
    in_group: dict[tuple[int, str], int] = {}
    for i in range(graph.num_nodes):
        col, group = layer[i], groups[i]
        if col not in position:
            position[col] = 0
        type_name = _NODE_TYPE_NAMES[types[i]]
        kind = _NODE_KIND.get(type_name, "hidden")
        if type_name == "input":
            kind = "input"
        elif nmap.groups[group].kind == "output" and kind == "hidden":
            kind = "output"
        index = in_group.get((col, group), 0)
        in_group[(col, group)] = index + 1
        nodes.append({"id": i, "layer": col, "position": position[col], "kind": kind,
                      "type": type_name, "group": group, "label": f"{group}[{index}]",
                      "bias": bias[i]})  # fmt: skip
        position[col] += 1
    for col in sorted(position):
        kinds = sorted({n["type"] for n in nodes if n["layer"] == col})
        names = sorted({n["group"] for n in nodes if n["layer"] == col})
        columns.append({"index": col, "size": position[col], "types": kinds, "groups": names})
    wide = torch.isin(
        graph.edge_type, torch.tensor([EDGE_TYPES["conv"], EDGE_TYPES["flatten_linear"]])
    )
    value = graph.edge_attr[:, 0].clone()
    if bool(wide.any()):
        value[wide] = _kernel_means(graph)[wide]
    src, dst = graph.edge_index.tolist()
    edge_types = graph.edge_type.tolist()
    values = value.tolist()
    edges = [
        {"source": s, "target": t, "weight": w, "type": _EDGE_TYPE_NAMES[k]}
        for s, t, w, k in zip(src, dst, values, edge_types, strict=True)
    ]
    return {"columns": columns, "nodes": nodes, "edges": edges}


def _kernel_means(graph: Any) -> torch.Tensor:
    """The mean of every edge's exact kernel (``edge_kernel``, ragged in edge order)."""
    shape = graph.edge_kernel_shape.long()
    counts = shape[:, 0] * shape[:, 1]
    owner = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    sums = torch.zeros(counts.numel(), dtype=graph.edge_kernel.dtype)
    return sums.index_add_(0, owner, graph.edge_kernel) / counts


def _layers(checkpoint: Checkpoint) -> dict[str, Any]:
    arch = checkpoint.architecture
    tensors = checkpoint.tensors

    def tensor(name: str) -> torch.Tensor | None:
        return tensors.get(arch.ties.get(name, name))

    layers: list[dict[str, Any]] = [
        {"id": spec.name, "op": "input", "shape": list(spec.shape), "parameter_count": 0,
         "parameters": []}
        for spec in arch.inputs
    ]  # fmt: skip
    links = []
    for node in arch.nodes:
        params = []
        for role, name in node.params.items():
            t = tensor(name)
            if t is not None:
                params.append({"role": role, "name": name, "shape": list(t.shape),
                               "count": t.numel()})  # fmt: skip
        layers.append({
            "id": node.name, "op": node.op, "shape": list(arch.shapes.get(node.name, ())),
            "parameter_count": sum(p["count"] for p in params), "parameters": params,
        })  # fmt: skip
        weights = [tensor(name) for role, name in node.params.items() if role.endswith("weight")]
        weights = [w for w in weights if w is not None and w.is_floating_point()]
        count = sum(w.numel() for w in weights)
        norm = (math.sqrt(sum(float(w.double().square().sum()) for w in weights))
                if weights else None)  # fmt: skip
        for source in node.inputs:
            links.append({"source": source, "target": node.name, "weight_count": count,
                          "weight_norm": norm})  # fmt: skip
    return {"layers": layers, "links": links}
