"""The parameter graph: a checkpoint as a sparse ``torch_geometric.data.Data`` and back.

Nodes are neurons, grouped in **node sets**, one per op-graph step that owns parameters or
joins values: each input feature (only where a weight reads it), each linear/conv output,
each BatchNorm/LayerNorm output, each residual ``add`` output, and four per attention
(``q``, ``k``, ``v`` rows and the output projection). Normalization layers get their own
node set (as Graph Metanetworks give them extra nodes) rather than features on the
producing layer's nodes: a pre-LN norm reads a residual stream written by several layers, so
there is no single "producing layer" to attach it to, and one node set per op keeps the
tensor <-> graph mapping one-to-one (exactly invertible) and the layout width fixed.

Edges run from input neuron to output neuron; their order is each weight tensor's
row-major order, so building and inverting are slices, never per-edge Python loops.

Node features ``x`` (width 6, :data:`NODE_FEATURES`): ``bias`` (linear/conv/attention
projections), ``norm_weight``, ``norm_bias``, ``running_mean``, ``running_var`` (norm node
sets), ``act_param`` (``w0`` of a following sine, slope of a leaky ReLU; architecture, not
weights). Absent entries are 0.

Edge features ``edge_attr`` (width ``max_kernel``, default 9 = 3×3): the weight's kernel
flattened row-major and zero-padded at the end, so a linear weight (or 1×1 conv) sits in
column 0. The linear after a spatial flatten gets the C→out weight's H·W pixel weights as
its kernel. Residual, norm and attention Q↔K pairing edges are identity edges (1 in
column 0). A larger kernel needs a larger ``max_kernel`` or raises.

Each op's rule is ``Op.graph`` in its module under :mod:`graphs.ops`. A channel ``cat`` and a
gating ``mul`` get a node set like ``add`` (identity edges from their inputs); a learned
parameter or an embedding table is a set of fixed "row" input neurons with ``linear``
edges (``(rows, features)`` order) to its features; a depthwise conv has one edge per
channel carrying its kernel.

Also on the ``Data``: ``node_type``/``edge_type`` (:data:`NODE_TYPES`, :data:`EDGE_TYPES`),
``node_act`` (:data:`ACTIVATION_IDS`, the activation applied to the node's value, nearest
v1 entry), ``node_fn`` (:data:`FUNCTION_IDS`, the exact elementwise op),
``node_layer`` (depth of the node set: inputs 0), ``node_group`` (index into
``group_ids``, the neuron map's group ids), ``node_pos`` (a fixed position id, unique per
neuron across input/output groups; -1 for hidden neurons, so hidden ones stay exchangeable).
Every graph has the same feature widths, so different architectures batch together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch_geometric.data import Data

from graphs.architecture import ACTIVATIONS, Architecture
from graphs.errors import ArchitectureError
from graphs.io import Checkpoint
from graphs.neuron_map import NeuronMap, neuron_map
from graphs.ops import OPS
from graphs.ops.base import Node

__all__ = [
    "ACTIVATION_IDS",
    "DEFAULT_MAX_KERNEL",
    "EDGE_TYPES",
    "FUNCTION_IDS",
    "NODE_FEATURES",
    "NODE_TYPES",
    "from_graph",
    "graph_bytes",
    "to_graph",
]

DEFAULT_MAX_KERNEL = 9
# The vocabulary of the v1 metanetworks (their embedding tables are sized by it): append-only
# would still change those sizes, so ops outside it map onto the nearest entry (see
# ``Op.activation`` and each op's ``graph`` rule); ``node_fn`` keeps the exact function.
NODE_FEATURES = ("bias", "norm_weight", "norm_bias", "running_mean", "running_var", "act_param")
NODE_TYPES = {name: i for i, name in enumerate(
    ("input", "linear", "conv", "batchnorm", "layernorm", "add", "attn_q", "attn_k", "attn_v",
     "attn_out"))}
EDGE_TYPES = {name: i for i, name in enumerate(
    ("linear", "conv", "flatten_linear", "residual", "norm", "attn_q", "attn_k", "attn_v",
     "attn_out", "attn_pair"))}
ACTIVATION_IDS = {name: i + 1 for i, name in enumerate(ACTIVATIONS)}  # 0: none
# node_fn: the exact elementwise op applied to a node's value (0: none), by registry order
FUNCTION_IDS = {name: i + 1 for i, name in enumerate(
    n for n, op in OPS.items() if op.activation is not None)}
NORM_COLUMNS = {"weight": 1, "bias": 2, "running_mean": 3, "running_var": 4}


@dataclass
class _Set:
    offset: int
    size: int
    type: int
    segments: list[tuple[str, int]]  # (group, size) along the set
    layer: int


@dataclass
class _Layout:
    """Everything about the graph that does not depend on the weights (cached per arch)."""

    num_nodes: int = 0
    num_edges: int = 0
    sets: list[_Set] = field(default_factory=list)
    act: dict[int, tuple[int, float, int]] = field(default_factory=dict)  # set -> act, p, fn
    edges: list[tuple[int, int, int, int, str, int]] = field(default_factory=list)
    identity_place: list[tuple[int, int]] = field(default_factory=list)  # offset, count
    node_place: list[tuple[str, int, int]] = field(default_factory=list)  # view, offset, col
    edge_place: list[tuple[str, int, int, int]] = field(default_factory=list)  # view, off, n, k
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # structural tensors
    group_ids: list[str] = field(default_factory=list)


class _LayoutBuilder:
    """Runs each op's parameter-graph rule; the helpers below are what the rules may use."""

    def __init__(self, arch: Architecture, nmap: NeuronMap, max_kernel: int) -> None:
        self.arch, self.nmap, self.max_kernel = arch, nmap, max_kernel
        self.out = _Layout(group_ids=list(nmap.groups))
        self.vset: dict[str, int] = {}  # value -> node set index
        self.alias: dict[str, str] = {}  # pass-through value -> its input value
        self.pending_act: dict[str, tuple[int, float, int]] = {}

    # --- helpers for op rules -------------------------------------------------------------

    def new_set(self, size: int, kind: str, value: str | list[tuple[str, int]],
                parents: list[int]) -> int:
        """A node set of ``size`` neurons laid out as ``value``'s groups (or given ones)."""
        segments = list(self.nmap.values[value].segments) if isinstance(value, str) else value
        layer = 1 + max((self.out.sets[p].layer for p in parents), default=-1)
        self.out.sets.append(_Set(self.out.num_nodes, size, NODE_TYPES[kind], segments, layer))
        self.out.num_nodes += size
        return len(self.out.sets) - 1

    def root(self, value: str) -> str:
        while value in self.alias:
            value = self.alias[value]
        return value

    def resolve(self, value: str) -> int:
        """The node set holding ``value``'s neurons, creating input sets on first use."""
        value = self.root(value)
        if value not in self.vset:
            size = sum(n for _, n in self.nmap.values[value].segments)
            s = self.new_set(size, "input", value, [])
            self.vset[value] = s
            if value in self.pending_act:
                self.out.act[s] = self.pending_act[value]
        return self.vset[value]

    def produce(self, value: str, s: int) -> None:
        self.vset[value] = s

    def passthrough(self, node: Node) -> None:
        """A value whose neurons are its input's (pooling, dropout, reshapes)."""
        self.alias[node.name] = node.inputs[0]

    def activation(self, node: Node, act: str, param: float) -> None:
        """An elementwise function: recorded on the neurons of its input (first one wins)."""
        self.alias[node.name] = node.inputs[0]
        root = self.root(node.inputs[0])
        entry = (ACTIVATION_IDS[act], param, FUNCTION_IDS[node.op])
        if root in self.vset:
            self.out.act.setdefault(self.vset[root], entry)
        else:
            self.pending_act.setdefault(root, entry)

    def weight(self, src_value: str, dst: int, kind: str, tensor: str,
               transposed: bool = False) -> None:
        """Dense edges from ``src_value``'s neurons to set ``dst`` carrying ``tensor``
        (``(dst, src, *kernel)``, or ``(src, dst)`` if ``transposed``), through its views."""
        src = self.resolve(src_value)
        views = self.nmap.views
        if f"{tensor}@unflatten" in views:
            self.dense(src, 0, dst, f"{tensor}@unflatten", "flatten_linear")
        elif f"{tensor}#cat0" in views:
            offset, j = 0, 0
            while f"{tensor}#cat{j}" in views:
                view = f"{tensor}#cat{j}"
                self.dense(src, offset, dst, view, kind)
                offset += views[view].shape[1]
                j += 1
        else:
            self.dense(src, 0, dst, tensor, kind, transposed)

    def dense(self, src: int, src_offset: int, dst: int, view: str, kind: str,
              transposed: bool = False, dst_offset: int = 0, dst_size: int | None = None
              ) -> None:
        shape = self.nmap.views[view].shape
        a, b = self.out.sets[src], self.out.sets[dst]
        n_src = shape[0] if transposed else shape[1]
        n_dst = b.size if dst_size is None else dst_size  # a block of the set (grouped conv)
        kernel = int(torch.Size(shape[2:]).numel())
        self._place(view, n_dst * n_src, kernel)
        self.out.edges.append((a.offset + src_offset, n_src, b.offset + dst_offset, n_dst,
                               "dense_t" if transposed else "dense", EDGE_TYPES[kind]))
        self.out.num_edges += n_dst * n_src

    def diagonal(self, src: int, dst: int, kind: str, view: str | None,
                 src_offset: int = 0, dst_offset: int = 0, size: int | None = None) -> None:
        """One edge per neuron, i -> i: identity (``view`` None) or carrying a kernel each."""
        a, b = self.out.sets[src], self.out.sets[dst]
        n = a.size if size is None else size
        if view is None:
            self.out.identity_place.append((self.out.num_edges, n))
        else:
            self._place(view, n, int(torch.Size(self.nmap.views[view].shape[1:]).numel()))
        self.out.edges.append((a.offset + src_offset, n, b.offset + dst_offset, n, "diagonal",
                               EDGE_TYPES[kind]))
        self.out.num_edges += n

    def features(self, tensor: str, s: int, column: int) -> None:
        """A per-neuron vector as node feature ``column`` of set ``s`` (through its views)."""
        views, offset = self.nmap.views, self.out.sets[s].offset
        if tensor in views:
            self.out.node_place.append((tensor, offset, column))
            return
        j = 0
        while f"{tensor}#cat{j}" in views:
            self.out.node_place.append((f"{tensor}#cat{j}", offset, column))
            offset += views[f"{tensor}#cat{j}"].shape[0]
            j += 1

    def _place(self, view: str, count: int, kernel: int) -> None:
        if kernel > self.max_kernel:
            raise ArchitectureError(
                f"{view}: kernel of {kernel} entries exceeds max_kernel={self.max_kernel}; "
                f"build the graph with max_kernel>={kernel}")
        self.out.edge_place.append((view, self.out.num_edges, count, kernel))

    # --- the walk -----------------------------------------------------------------------

    def build(self) -> _Layout:
        for node in self.arch.nodes:
            OPS[node.op].graph(self, node)
        return self.finish()

    def finish(self) -> _Layout:
        out, nmap = self.out, self.nmap
        group_index = {g: i for i, g in enumerate(out.group_ids)}
        pos_base, next_pos = {}, 0
        for g in nmap.groups.values():
            if not g.permutable and g.blocks is None and g.kind != "hidden":
                pos_base[g.id] = next_pos
                next_pos += g.size
        cols: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("type", "act", "param", "fn", "layer", "group", "pos")}
        for i, s in enumerate(out.sets):
            act, param, fn = out.act.get(i, (0, 0.0, 0))
            cols["type"].append(torch.full((s.size,), s.type))
            cols["act"].append(torch.full((s.size,), act))
            cols["param"].append(torch.full((s.size,), param))
            cols["fn"].append(torch.full((s.size,), fn))
            cols["layer"].append(torch.full((s.size,), s.layer))
            for g, n in s.segments:
                cols["group"].append(torch.full((n,), group_index[g]))
                base = pos_base.get(g)
                cols["pos"].append(torch.arange(n) + base if base is not None
                                   else torch.full((n,), -1))
        cat = {k: torch.cat(v) if v else torch.zeros(0) for k, v in cols.items()}
        out.tensors = {
            "node_type": cat["type"].long(), "node_act": cat["act"].long(),
            "act_param": cat["param"].float(), "node_fn": cat["fn"].long(),
            "node_layer": cat["layer"].long(), "node_group": cat["group"].long(),
            "node_pos": cat["pos"].long(),
            "edge_index": torch.empty(2, out.num_edges, dtype=torch.long),
            "edge_type": torch.empty(out.num_edges, dtype=torch.long),
        }
        offset = 0
        for a_off, a_size, b_off, b_size, mode, kind in out.edges:
            count = a_size if mode == "diagonal" else a_size * b_size
            src = out.tensors["edge_index"][0, offset:offset + count]
            dst = out.tensors["edge_index"][1, offset:offset + count]
            a, b = torch.arange(a_off, a_off + a_size), torch.arange(b_off, b_off + b_size)
            if mode == "dense":  # row-major (dst, src) order, filled by broadcasting
                src.view(b_size, a_size).copy_(a)
                dst.view(b_size, a_size).copy_(b[:, None])
            elif mode == "dense_t":  # row-major (src, dst): an embedding table
                src.view(a_size, b_size).copy_(a[:, None])
                dst.view(a_size, b_size).copy_(b)
            else:
                src.copy_(a)
                dst.copy_(b)
            out.tensors["edge_type"][offset:offset + count] = kind
            offset += count
        out.edges = []  # folded into the tensors above
        return out


def _layout(arch: Architecture, max_kernel: int) -> _Layout:
    key = f"graph_layout:{max_kernel}"
    cached = arch._cache.get(key)
    if cached is None:
        cached = arch._cache[key] = _LayoutBuilder(arch, neuron_map(arch), max_kernel).build()
    return cached


def to_graph(checkpoint: Checkpoint, max_kernel: int = DEFAULT_MAX_KERNEL,
             dtype: torch.dtype = torch.float32) -> Data:
    """The parameter graph of a checkpoint (see the module docstring for the layout).

    ``dtype`` is the feature dtype: float32 holds float32/float16/bfloat16 weights exactly;
    pass ``torch.float64`` for an exact round trip of float64 checkpoints.
    """
    arch = checkpoint.architecture
    layout = _layout(arch, max_kernel)
    nmap = neuron_map(arch)
    views = nmap.split(checkpoint.tensors)
    x = torch.zeros(layout.num_nodes, len(NODE_FEATURES), dtype=dtype)
    for view, offset, col in layout.node_place:
        v = views[view]
        x[offset:offset + v.shape[0], col] = v
    x[:, 5] = layout.tensors["act_param"]
    # Every row is written exactly once (weights then zero padding, or an identity row).
    edge_attr = torch.empty(layout.num_edges, max_kernel, dtype=dtype)
    for view, offset, n, k in layout.edge_place:
        edge_attr[offset:offset + n, :k] = views[view].reshape(n, k)
        edge_attr[offset:offset + n, k:] = 0
    for offset, n in layout.identity_place:
        edge_attr[offset:offset + n, 1:] = 0
        edge_attr[offset:offset + n, 0] = 1
    t = layout.tensors
    return Data(
        x=x, edge_index=t["edge_index"].clone(), edge_attr=edge_attr,
        node_type=t["node_type"].clone(), edge_type=t["edge_type"].clone(),
        node_act=t["node_act"].clone(), node_fn=t["node_fn"].clone(),
        node_layer=t["node_layer"].clone(),
        node_group=t["node_group"].clone(), node_pos=t["node_pos"].clone(),
        group_ids=list(layout.group_ids), num_nodes=layout.num_nodes,
    )


def from_graph(graph: Data, template: Checkpoint) -> Checkpoint:
    """The checkpoint whose parameter graph is ``graph``, architecture and dtypes from
    ``template`` (integer buffers such as ``num_batches_tracked`` are copied from it)."""
    arch = template.architecture
    max_kernel = int(graph.edge_attr.shape[1])
    layout = _layout(arch, max_kernel)
    if graph.num_nodes != layout.num_nodes or graph.edge_attr.shape[0] != layout.num_edges \
            or graph.x.shape[1] != len(NODE_FEATURES):
        raise ArchitectureError(
            f"graph has {graph.num_nodes} nodes / {graph.edge_attr.shape[0]} edges, the "
            f"template architecture needs {layout.num_nodes} / {layout.num_edges}")
    nmap = neuron_map(arch)
    views = nmap.split(template.tensors)
    for view, offset, col in layout.node_place:
        n = views[view].shape[0]
        views[view] = graph.x[offset:offset + n, col].to(views[view].dtype).clone()
    for view, offset, n, k in layout.edge_place:
        v = views[view]
        views[view] = graph.edge_attr[offset:offset + n, :k].reshape(v.shape).to(v.dtype)
    joined = nmap.join(views)
    tensors = {name: joined[name].clone() for name in template.tensors}
    return Checkpoint(tensors, arch, dict(template.metadata))


def graph_bytes(graph: Data) -> int:
    """Bytes held by the graph's tensors."""
    return sum(v.numel() * v.element_size() for _, v in graph if isinstance(v, torch.Tensor))
