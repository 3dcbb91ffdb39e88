"""Human-readable summary of a checkpoint: architecture, neuron groups, parameter graph size.

Backs ``weightscope graph FILE``; kept here so the library (and notebooks) can print it too.
"""

from __future__ import annotations

import os
from collections import Counter

from graphs.io import Checkpoint, load
from graphs.neuron_map import neuron_map
from graphs.parameter_graph import DEFAULT_MAX_KERNEL, EDGE_TYPES, graph_bytes, to_graph

__all__ = ["summary_text"]


def summary_text(
    source: Checkpoint | bytes | str | os.PathLike[str], max_kernel: int = DEFAULT_MAX_KERNEL
) -> str:
    """Architecture summary, group sizes, node/edge counts, kernel storage per kernel shape
    and graph memory (with ``max_kernel``-wide edge features), as text."""
    ckpt = source if isinstance(source, Checkpoint) else load(source)
    arch = ckpt.architecture
    summary = arch.summary()
    nmap = neuron_map(arch)
    graph = to_graph(ckpt, max_kernel=max_kernel)
    shapes = Counter(map(tuple, graph.edge_kernel_shape.tolist()))
    ops = ", ".join(f"{op}×{n}" for op, n in summary["op_counts"].items())
    lines = [
        f"architecture v{summary['version']}: {', '.join(summary['families'])}",
        f"  ops: {ops}",
        f"  inputs: {_shapes(summary['inputs'])}  outputs: {_shapes(summary['outputs'])}",
        f"  parameters: {summary['num_parameters']:,} in {summary['num_tensors']} tensors",
        "neuron groups:",
    ]
    for g in nmap.groups.values():
        extra = f" blocks={g.blocks[0]}×{g.blocks[1]}" if g.blocks else ""
        state = "permutable" if g.permutable else "fixed"
        if g.kind == "input" and g.id in summary["inputs"]:
            # the input's whole shape: its group indexes one axis (8 rows of a 1×8×8 image)
            shape = "×".join("?" if n is None else str(n) for n in summary["inputs"][g.id])
            lines.append(f"  {g.id}: input {shape} ({state}){extra}")
        else:
            lines.append(f"  {g.id}: {g.size} {g.kind} ({state}){extra}")
    lines += [
        f"parameter graph (edge features max_kernel={max_kernel}):",
        f"  nodes: {graph.num_nodes:,}  edges: {graph.edge_index.shape[1]:,}",
        f"  kernels: {graph.edge_kernel.numel():,} values stored exactly; edges per kernel: "
        + ", ".join(f"{kh}×{kw}×{n:,}" for (kh, kw), n in sorted(shapes.items())),
        f"  memory: {graph_bytes(graph):,} bytes ({graph_bytes(graph) / 2**20:.1f} MiB)",
        "  edge types: "
        + ", ".join(
            f"{_edge_name(t)}×{n:,}" for t, n in sorted(Counter(graph.edge_type.tolist()).items())
        ),
    ]
    if ckpt.metadata:
        lines.append("metadata: " + ", ".join(f"{k}={v}" for k, v in sorted(ckpt.metadata.items())))
    return "\n".join(lines)


def _shapes(shapes: dict[str, list[int | None]]) -> str:
    return ", ".join(f"{k}{[('?' if s is None else s) for s in v]}" for k, v in shapes.items())


def _edge_name(t: int) -> str:
    return next(name for name, i in EDGE_TYPES.items() if i == t)
