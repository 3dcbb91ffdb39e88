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

Also on the ``Data``: ``node_type``/``edge_type`` (:data:`NODE_TYPES`, :data:`EDGE_TYPES`),
``node_act`` (:data:`ACTIVATION_IDS`, the activation applied to the node's value),
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

__all__ = [
    "ACTIVATION_IDS",
    "DEFAULT_MAX_KERNEL",
    "EDGE_TYPES",
    "NODE_FEATURES",
    "NODE_TYPES",
    "from_graph",
    "graph_bytes",
    "to_graph",
]

DEFAULT_MAX_KERNEL = 9
NODE_FEATURES = ("bias", "norm_weight", "norm_bias", "running_mean", "running_var", "act_param")
NODE_TYPES = {name: i for i, name in enumerate(
    ("input", "linear", "conv", "batchnorm", "layernorm", "add", "attn_q", "attn_k", "attn_v",
     "attn_out"))}
EDGE_TYPES = {name: i for i, name in enumerate(
    ("linear", "conv", "flatten_linear", "residual", "norm", "attn_q", "attn_k", "attn_v",
     "attn_out", "attn_pair"))}
ACTIVATION_IDS = {name: i + 1 for i, name in enumerate(ACTIVATIONS)}  # 0: none
_NORM_COLUMNS = {"weight": 1, "bias": 2, "running_mean": 3, "running_var": 4}


@dataclass
class _Set:
    offset: int
    size: int
    type: int
    group: str
    layer: int


@dataclass
class _Layout:
    """Everything about the graph that does not depend on the weights (cached per arch)."""

    num_nodes: int = 0
    num_edges: int = 0
    sets: list[_Set] = field(default_factory=list)
    act: dict[int, tuple[int, float]] = field(default_factory=dict)  # set index -> act
    edges: list[tuple[int, int, int, int, bool, int]] = field(default_factory=list)
    identity_place: list[tuple[int, int]] = field(default_factory=list)  # offset, count
    node_place: list[tuple[str, int, int]] = field(default_factory=list)  # view, offset, col
    edge_place: list[tuple[str, int, int, int]] = field(default_factory=list)  # view, off, n, k
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # structural tensors
    group_ids: list[str] = field(default_factory=list)


class _LayoutBuilder:
    def __init__(self, arch: Architecture, nmap: NeuronMap, max_kernel: int) -> None:
        self.arch, self.nmap, self.max_kernel = arch, nmap, max_kernel
        self.out = _Layout(group_ids=list(nmap.groups))
        self.vset: dict[str, int] = {}  # value -> node set index
        self.alias: dict[str, str] = {}  # pass-through value -> its input value
        self.pending_act: dict[str, tuple[int, float]] = {}
        self.nodes = {n.name: n for n in arch.nodes}

    def new_set(self, size: int, kind: str, group: str, parents: list[int]) -> int:
        layer = 1 + max((self.out.sets[p].layer for p in parents), default=-1)
        self.out.sets.append(_Set(self.out.num_nodes, size, NODE_TYPES[kind], group, layer))
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
            group = self.nmap.value_groups[value]
            s = self.new_set(self.nmap.groups[group].size, "input", group, [])
            self.vset[value] = s
            if value in self.pending_act:
                self.out.act[s] = self.pending_act[value]
        return self.vset[value]

    def produce(self, value: str, s: int) -> None:
        self.vset[value] = s

    def edges(self, src: int, dst: int, kind: str, view: str | None, kernel: int = 1) -> None:
        """Dense bipartite edges dst×src in row-major order (identity if ``view`` is None)."""
        a, b = self.out.sets[src], self.out.sets[dst]
        dense = view is not None
        count = a.size * b.size if dense else a.size
        if view is None:
            self.out.identity_place.append((self.out.num_edges, count))
        else:
            if kernel > self.max_kernel:
                raise ArchitectureError(
                    f"{view}: kernel of {kernel} entries exceeds max_kernel={self.max_kernel}; "
                    f"build the graph with max_kernel>={kernel}")
            self.out.edge_place.append((view, self.out.num_edges, count, kernel))
        self.out.edges.append((a.offset, a.size, b.offset, b.size, dense, EDGE_TYPES[kind]))
        self.out.num_edges += count

    def build(self) -> _Layout:
        for node in self.arch.nodes:
            self.visit(node)
        return self.finish()

    def visit(self, node) -> None:
        op, p, name = node.op, node.params, node.name
        group = self.nmap.value_groups[name]
        if op == "linear" or op.startswith("conv"):
            src = self.resolve(node.inputs[0])
            kind = "linear" if op == "linear" else "conv"
            s = self.new_set(self.nmap.groups[group].size, kind, group, [src])
            view = p["weight"]
            if f"{view}@unflatten" in self.nmap.views:
                view = f"{view}@unflatten"
                kind = "flatten_linear"
            shape = self.nmap.views[view].shape
            self.edges(src, s, kind, view, int(torch.Size(shape[2:]).numel()))
            if "bias" in p:
                self.out.node_place.append((p["bias"], self.out.sets[s].offset, 0))
            self.produce(name, s)
        elif op in ("batchnorm1d", "batchnorm2d", "layernorm"):
            src = self.resolve(node.inputs[0])
            kind = "layernorm" if op == "layernorm" else "batchnorm"
            s = self.new_set(self.out.sets[src].size, kind, group, [src])
            self.edges(src, s, "norm", None)
            for role, col in _NORM_COLUMNS.items():
                if role in p:
                    self.out.node_place.append((p[role], self.out.sets[s].offset, col))
            self.produce(name, s)
        elif op == "add":
            srcs = [self.resolve(v) for v in node.inputs]
            s = self.new_set(self.out.sets[srcs[0]].size, "add", group, srcs)
            for src in srcs:
                self.edges(src, s, "residual", None)
            self.produce(name, s)
        elif op == "self_attention":
            self.attention(node, group)
        elif op == "flatten" and name in self.nmap.groups:
            pass  # flatten of an input: a new fixed group, resolved as an input set on use
        else:  # activations, dropout, pooling, channel-keeping flatten
            self.alias[name] = node.inputs[0]
            if op in ACTIVATION_IDS:
                param = float(node.attrs.get("w0", node.attrs.get("negative_slope", 0.0)))
                root = self.root(node.inputs[0])
                act = (ACTIVATION_IDS[op], param)
                if root in self.vset:
                    self.out.act.setdefault(self.vset[root], act)
                else:
                    self.pending_act.setdefault(root, act)

    def attention(self, node, group: str) -> None:
        p, n = node.params, node.name
        src = self.resolve(node.inputs[0])
        e = node.attrs["embed_dim"]
        sets = {}
        for part, g in (("q", f"{n}:qk"), ("k", f"{n}:qk"), ("v", f"{n}:vo")):
            s = sets[part] = self.new_set(e, f"attn_{part}", g, [src])
            self.edges(src, s, f"attn_{part}", f"{p['in_proj_weight']}#{part}")
            if "in_proj_bias" in p:
                self.out.node_place.append((f"{p['in_proj_bias']}#{part}",
                                            self.out.sets[s].offset, 0))
        self.edges(sets["k"], sets["q"], "attn_pair", None)
        out = self.new_set(e, "attn_out", group, [sets["v"]])
        self.edges(sets["v"], out, "attn_out", p["out_proj.weight"])
        if "out_proj.bias" in p:
            self.out.node_place.append((p["out_proj.bias"], self.out.sets[out].offset, 0))
        self.produce(n, out)

    def finish(self) -> _Layout:
        out, nmap = self.out, self.nmap
        group_index = {g: i for i, g in enumerate(out.group_ids)}
        pos_base, next_pos = {}, 0
        for g in nmap.groups.values():
            if not g.permutable and g.blocks is None and g.kind != "hidden":
                pos_base[g.id] = next_pos
                next_pos += g.size
        cols: dict[str, list[torch.Tensor]] = {k: [] for k in
                                               ("type", "act", "param", "layer", "group", "pos")}
        for i, s in enumerate(out.sets):
            act, param = out.act.get(i, (0, 0.0))
            cols["type"].append(torch.full((s.size,), s.type))
            cols["act"].append(torch.full((s.size,), act))
            cols["param"].append(torch.full((s.size,), param))
            cols["layer"].append(torch.full((s.size,), s.layer))
            cols["group"].append(torch.full((s.size,), group_index[s.group]))
            base = pos_base.get(s.group)
            cols["pos"].append(torch.arange(s.size) + base if base is not None
                               else torch.full((s.size,), -1))
        cat = {k: torch.cat(v) if v else torch.zeros(0) for k, v in cols.items()}
        out.tensors = {
            "node_type": cat["type"].long(), "node_act": cat["act"].long(),
            "act_param": cat["param"].float(), "node_layer": cat["layer"].long(),
            "node_group": cat["group"].long(), "node_pos": cat["pos"].long(),
            "edge_index": torch.empty(2, out.num_edges, dtype=torch.long),
            "edge_type": torch.empty(out.num_edges, dtype=torch.long),
        }
        offset = 0
        for a_off, a_size, b_off, b_size, dense, kind in out.edges:
            count = a_size * b_size if dense else a_size
            src = out.tensors["edge_index"][0, offset:offset + count]
            dst = out.tensors["edge_index"][1, offset:offset + count]
            if dense:  # row-major (dst, src) order, filled by broadcasting
                src.view(b_size, a_size).copy_(torch.arange(a_off, a_off + a_size))
                dst.view(b_size, a_size).copy_(torch.arange(b_off, b_off + b_size)[:, None])
            else:
                src.copy_(torch.arange(a_off, a_off + a_size))
                dst.copy_(torch.arange(b_off, b_off + b_size))
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
        node_act=t["node_act"].clone(), node_layer=t["node_layer"].clone(),
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
