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

Edge kernels, exact and sized per layer: ``edge_kernel`` is one flat tensor holding every
edge's kernel in edge order (row-major), so a linear or 1×1 conv edge stores 1 value, a 3×3
edge 9 and only a 7×7 stem's edges 49; ``edge_kernel_shape`` ``(E, 2)`` (int32) is each
edge's ``(kh, kw)`` (``(1, 1)`` for linear weights; a conv1d kernel is ``(1, k)``; the
linear after a spatial flatten gets the C→out weight's ``(H, W)`` pixel weights). Because
edges follow each weight tensor's row-major order, ``edge_kernel`` is the weight tensors
themselves, concatenated: building and inverting are slice copies, for any kernel size.
Residual, norm and attention Q↔K pairing edges are identity edges (kernel ``[1]``).
:func:`kernels_by_shape` regroups them per kernel shape (edge ids and ``(n, kh, kw)``).

Edge features ``edge_attr`` (width ``max_kernel``, default 9 = 3×3) are a fixed-width view
for metanetworks, derived from the kernels: a kernel of at most ``max_kernel`` entries is
flattened row-major and zero-padded at the end (so a linear weight or identity edge sits in
column 0; the v1 layout, unchanged); a larger kernel is **area-resampled** to the largest
square that fits (``s = isqrt(max_kernel)``: 7×7 → 3×3 at the default, → 1×1 at
``max_kernel=1``), each side independently (a 1×7 kernel → 1×3), then padded. The
resampling integrates the kernel as piecewise constant over ``s`` equal cells per side, so
it keeps the kernel's sum (its response to a constant input) and its coarse spatial
layout. ``max_kernel=1`` is the compact form: one summary value per edge, the exact kernels
in ``edge_kernel`` (:func:`edge_features` derives any other width from a graph later).

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

import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction

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
    "edge_features",
    "from_graph",
    "graph_bytes",
    "kernel_shapes",
    "kernels_by_shape",
    "to_graph",
]

DEFAULT_MAX_KERNEL = 9
# The vocabulary of the v1 metanetworks (their embedding tables are sized by it): append-only
# would still change those sizes, so ops outside it map onto the nearest entry (see
# ``Op.activation`` and each op's ``graph`` rule); ``node_fn`` keeps the exact function.
NODE_FEATURES = ("bias", "norm_weight", "norm_bias", "running_mean", "running_var", "act_param")
NODE_TYPES = {
    name: i
    for i, name in enumerate(
        (
            "input",
            "linear",
            "conv",
            "batchnorm",
            "layernorm",
            "add",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_out",
        )
    )
}
EDGE_TYPES = {
    name: i
    for i, name in enumerate(
        (
            "linear",
            "conv",
            "flatten_linear",
            "residual",
            "norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_out",
            "attn_pair",
        )
    )
}
ACTIVATION_IDS = {name: i + 1 for i, name in enumerate(ACTIVATIONS)}  # 0: none
# node_fn: the exact elementwise op applied to a node's value (0: none), by registry order
FUNCTION_IDS = {
    name: i + 1 for i, name in enumerate(n for n, op in OPS.items() if op.activation is not None)
}
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
    num_kernel_values: int = 0  # length of ``edge_kernel``
    # edge blocks: src offset, src size, dst offset, dst size, mode, edge type, kh, kw
    edges: list[tuple[int, int, int, int, str, int, int, int]] = field(default_factory=list)
    # identity blocks: edge offset, count, kernel offset
    identity_place: list[tuple[int, int, int]] = field(default_factory=list)
    node_place: list[tuple[str, int, int]] = field(default_factory=list)  # view, offset, col
    # weight blocks: view, edge offset, count, kernel entries, kernel offset, kh, kw
    edge_place: list[tuple[str, int, int, int, int, int, int]] = field(default_factory=list)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # structural tensors
    group_ids: list[str] = field(default_factory=list)


class _LayoutBuilder:
    """Runs each op's parameter-graph rule; the helpers below are what the rules may use."""

    def __init__(self, arch: Architecture, nmap: NeuronMap) -> None:
        self.arch, self.nmap = arch, nmap
        self.out = _Layout(group_ids=list(nmap.groups))
        self.vset: dict[str, int] = {}  # value -> node set index
        self.alias: dict[str, str] = {}  # pass-through value -> its input value
        self.pending_act: dict[str, tuple[int, float, int]] = {}

    # --- helpers for op rules -------------------------------------------------------------

    def new_set(
        self, size: int, kind: str, value: str | list[tuple[str, int]], parents: list[int]
    ) -> int:
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

    def weight(
        self, src_value: str, dst: int, kind: str, tensor: str, transposed: bool = False
    ) -> None:
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

    def dense(
        self,
        src: int,
        src_offset: int,
        dst: int,
        view: str,
        kind: str,
        transposed: bool = False,
        dst_offset: int = 0,
        dst_size: int | None = None,
    ) -> None:
        shape = self.nmap.views[view].shape
        a, b = self.out.sets[src], self.out.sets[dst]
        n_src = shape[0] if transposed else shape[1]
        n_dst = b.size if dst_size is None else dst_size  # a block of the set (grouped conv)
        kh, kw = self._place(view, n_dst * n_src, tuple(shape[2:]))
        self.out.edges.append(
            (
                a.offset + src_offset,
                n_src,
                b.offset + dst_offset,
                n_dst,
                "dense_t" if transposed else "dense",
                EDGE_TYPES[kind],
                kh,
                kw,
            )
        )
        self.out.num_edges += n_dst * n_src

    def diagonal(
        self,
        src: int,
        dst: int,
        kind: str,
        view: str | None,
        src_offset: int = 0,
        dst_offset: int = 0,
        size: int | None = None,
    ) -> None:
        """One edge per neuron, i -> i: identity (``view`` None) or carrying a kernel each."""
        a, b = self.out.sets[src], self.out.sets[dst]
        n = a.size if size is None else size
        if view is None:
            self.out.identity_place.append((self.out.num_edges, n, self.out.num_kernel_values))
            self.out.num_kernel_values += n
            kh = kw = 1
        else:
            kh, kw = self._place(view, n, tuple(self.nmap.views[view].shape[1:]))
        self.out.edges.append(
            (
                a.offset + src_offset,
                n,
                b.offset + dst_offset,
                n,
                "diagonal",
                EDGE_TYPES[kind],
                kh,
                kw,
            )
        )
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

    def _place(self, view: str, count: int, dims: tuple[int, ...]) -> tuple[int, int]:
        """Record ``count`` edges carrying ``view``'s kernels of ``dims``; their ``(kh, kw)``
        (leading kernel dims fold into ``kh``: a depthwise ``(1, kh, kw)`` is ``(kh, kw)``)."""
        kw = dims[-1] if dims else 1
        kh = int(torch.Size(dims[:-1]).numel())
        self.out.edge_place.append(
            (view, self.out.num_edges, count, kh * kw, self.out.num_kernel_values, kh, kw)
        )
        self.out.num_kernel_values += count * kh * kw
        return kh, kw

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
            k: [] for k in ("type", "act", "param", "fn", "layer", "group", "pos")
        }
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
                cols["pos"].append(
                    torch.arange(n) + base if base is not None else torch.full((n,), -1)
                )
        cat = {k: torch.cat(v) if v else torch.zeros(0) for k, v in cols.items()}
        out.tensors = {
            "node_type": cat["type"].long(),
            "node_act": cat["act"].long(),
            "act_param": cat["param"].float(),
            "node_fn": cat["fn"].long(),
            "node_layer": cat["layer"].long(),
            "node_group": cat["group"].long(),
            "node_pos": cat["pos"].long(),
        }
        return out


def _layout(arch: Architecture) -> _Layout:
    cached = arch._cache.get("graph_layout")
    if cached is None:
        cached = arch._cache["graph_layout"] = _LayoutBuilder(arch, neuron_map(arch)).build()
    return cached


def kernel_shapes(arch: Architecture) -> list[tuple[int, int]]:
    """The distinct ``(kh, kw)`` of the architecture's weight edges, smallest first."""
    return sorted({(kh, kw) for *_, kh, kw in _layout(arch).edge_place})


# Graphs up to this many edges keep their structural edge tensors cached (cloned per call:
# three copies beat a few ops per edge block); larger ones rebuild them, which costs about
# the same writes as a clone, instead of holding 32 bytes per edge for the architecture's
# lifetime (a ResNet-50: 500 MB).
CACHED_EDGES = 1 << 20


def _edge_tensors(layout: _Layout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``edge_index``, ``edge_type`` and ``edge_kernel_shape`` (see :data:`CACHED_EDGES`)."""
    if layout.num_edges > CACHED_EDGES:
        return _fill_edge_tensors(layout)
    if "edge_index" not in layout.tensors:
        index, kind, shape = _fill_edge_tensors(layout)
        layout.tensors.update(edge_index=index, edge_type=kind, edge_kernel_shape=shape)
    t = layout.tensors
    return t["edge_index"].clone(), t["edge_type"].clone(), t["edge_kernel_shape"].clone()


def _fill_edge_tensors(layout: _Layout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The structural edge tensors, filled block by block."""
    e = layout.num_edges
    edge_index = torch.empty(2, e, dtype=torch.long)
    edge_type = torch.empty(e, dtype=torch.long)
    shape = torch.empty(e, 2, dtype=torch.int32)
    offset = 0
    for a_off, a_size, b_off, b_size, mode, kind, kh, kw in layout.edges:
        count = a_size if mode == "diagonal" else a_size * b_size
        src = edge_index[0, offset : offset + count]
        dst = edge_index[1, offset : offset + count]
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
        edge_type[offset : offset + count] = kind
        shape[offset : offset + count, 0] = kh
        shape[offset : offset + count, 1] = kw
        offset += count
    return edge_index, edge_type, shape


def to_graph(
    checkpoint: Checkpoint, max_kernel: int = DEFAULT_MAX_KERNEL, dtype: torch.dtype = torch.float32
) -> Data:
    """The parameter graph of a checkpoint (see the module docstring for the layout).

    ``max_kernel`` is the width of ``edge_attr`` only (kernels beyond it are resampled
    there); ``edge_kernel`` always holds every kernel exactly, whatever its size. ``dtype``
    is the feature dtype: float32 holds float32/float16/bfloat16 weights exactly; pass
    ``torch.float64`` for an exact round trip of float64 checkpoints.
    """
    if max_kernel < 1:
        raise ValueError(f"max_kernel must be at least 1, got {max_kernel}")
    arch = checkpoint.architecture
    layout = _layout(arch)
    nmap = neuron_map(arch)
    views = nmap.split(checkpoint.tensors)
    x = torch.zeros(layout.num_nodes, len(NODE_FEATURES), dtype=dtype)
    for view, offset, col in layout.node_place:
        v = views[view]
        x[offset : offset + v.shape[0], col] = v
    x[:, 5] = layout.tensors["act_param"]
    edge_index, edge_type, edge_kernel_shape = _edge_tensors(layout)
    # Every entry of both is written exactly once (a weight block, or an identity block).
    kernel = torch.empty(layout.num_kernel_values, dtype=dtype)
    edge_attr = torch.empty(layout.num_edges, max_kernel, dtype=dtype)
    for view, offset, n, k, k_off, kh, kw in layout.edge_place:
        v = views[view].reshape(n, k)
        kernel[k_off : k_off + n * k].view(n, k).copy_(v)
        _write_features(edge_attr[offset : offset + n], v, kh, kw)
    for offset, n, k_off in layout.identity_place:
        kernel[k_off : k_off + n] = 1
        edge_attr[offset : offset + n, 1:] = 0
        edge_attr[offset : offset + n, 0] = 1
    t = layout.tensors
    return Data(
        x=x,
        edge_index=edge_index,
        edge_attr=edge_attr,
        edge_kernel=kernel,
        edge_kernel_shape=edge_kernel_shape,
        node_type=t["node_type"].clone(),
        edge_type=edge_type,
        node_act=t["node_act"].clone(),
        node_fn=t["node_fn"].clone(),
        node_layer=t["node_layer"].clone(),
        node_group=t["node_group"].clone(),
        node_pos=t["node_pos"].clone(),
        group_ids=list(layout.group_ids),
        num_nodes=layout.num_nodes,
    )


def _write_features(out: torch.Tensor, kernels: torch.Tensor, kh: int, kw: int) -> None:
    """``out`` ``(n, width)`` = the ``(n, kh*kw)`` kernels zero-padded, or area-resampled
    to the largest square that fits when they do not (module docstring)."""
    width, k = out.shape[1], kh * kw
    if k > width:
        side = math.isqrt(width)
        th, tw = min(kh, side), min(kw, side)
        v = kernels.reshape(-1, kh, kw).to(out.dtype)
        m_h = _area_matrix(kh, th).to(out.dtype)
        m_w = _area_matrix(kw, tw).to(out.dtype)
        kernels = (m_h @ v @ m_w.T).reshape(-1, th * tw)
        k = th * tw
    out[:, :k] = kernels
    out[:, k:] = 0


@functools.cache
def _area_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)``: how much of input cell ``j`` (unit width) falls into output cell
    ``i`` (width ``n_in / n_out``); every column sums to 1, so sums are kept."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        lo, hi = Fraction(i * n_in, n_out), Fraction((i + 1) * n_in, n_out)
        for j in range(math.floor(lo), math.ceil(hi)):
            m[i, j] = float(min(hi, j + 1) - max(lo, Fraction(j)))
    return m


def kernels_by_shape(graph: Data) -> dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]:
    """``{(kh, kw): (edge ids, kernels (n, kh, kw))}`` from ``edge_kernel``: the ragged
    storage regrouped per kernel shape (works on a batch too)."""
    shape = graph.edge_kernel_shape.long()
    counts = shape[:, 0] * shape[:, 1]
    starts = torch.cumsum(counts, 0) - counts
    out: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    key = shape[:, 0] << 32 | shape[:, 1]  # one int per shape: a 1-D unique is cheap
    for k in torch.unique(key).tolist():
        kh, kw = k >> 32, k & 0xFFFFFFFF
        edges = (key == k).nonzero()[:, 0]
        index = starts[edges, None] + torch.arange(kh * kw, device=starts.device)
        out[(kh, kw)] = (edges, graph.edge_kernel[index].view(-1, kh, kw))
    return out


def edge_features(graph: Data, max_kernel: int = DEFAULT_MAX_KERNEL) -> torch.Tensor:
    """``(E, max_kernel)`` edge features from the graph's exact kernels: what
    ``to_graph(checkpoint, max_kernel)`` puts in ``edge_attr``, for a graph built (or
    stored) at another width."""
    if max_kernel < 1:
        raise ValueError(f"max_kernel must be at least 1, got {max_kernel}")
    out = graph.edge_kernel.new_empty(graph.edge_kernel_shape.shape[0], max_kernel)
    for (kh, kw), (edges, kernels) in kernels_by_shape(graph).items():
        block = out.new_empty(len(edges), max_kernel)
        _write_features(block, kernels.reshape(-1, kh * kw), kh, kw)
        out[edges] = block
    return out


def from_graph(graph: Data, template: Checkpoint) -> Checkpoint:
    """The checkpoint whose parameter graph is ``graph``, architecture and dtypes from
    ``template`` (integer buffers such as ``num_batches_tracked`` are copied from it).

    Each weight comes from ``edge_attr`` where its kernel fits that width (the v1 contract:
    edit ``edge_attr``, write the weights back), else from ``edge_kernel``, which holds every
    kernel exactly (``edge_attr`` holds those resampled). A graph without ``edge_kernel`` (a
    metanetwork's input graph, or one stored before it existed) inverts only the kernels
    that fit its width; one without ``edge_attr`` is read from ``edge_kernel`` alone (delete
    ``edge_attr`` to write back edits made to ``edge_kernel``).
    """
    arch = template.architecture
    layout = _layout(arch)
    num_edges = int(graph.edge_index.shape[1])
    if (
        graph.num_nodes != layout.num_nodes
        or num_edges != layout.num_edges
        or graph.x.shape[1] != len(NODE_FEATURES)
    ):
        raise ArchitectureError(
            f"graph has {graph.num_nodes} nodes / {num_edges} edges, the "
            f"template architecture needs {layout.num_nodes} / {layout.num_edges}"
        )
    kernel = graph.edge_kernel if "edge_kernel" in graph else None
    attr = graph.edge_attr if "edge_attr" in graph else None
    if kernel is None and attr is None:
        raise ArchitectureError("graph has neither edge_kernel nor edge_attr")
    if attr is not None and attr.shape[0] != layout.num_edges:
        raise ArchitectureError(
            f"graph has {attr.shape[0]} edge_attr rows for {layout.num_edges} edges"
        )
    if kernel is not None and kernel.numel() != layout.num_kernel_values:
        raise ArchitectureError(
            f"graph has {kernel.numel()} kernel entries, the template architecture needs "
            f"{layout.num_kernel_values}"
        )
    nmap = neuron_map(arch)
    views = nmap.split(template.tensors)
    for view, offset, col in layout.node_place:
        n = views[view].shape[0]
        views[view] = graph.x[offset : offset + n, col].to(views[view].dtype).clone()
    width = 0 if attr is None else int(attr.shape[1])
    for view, offset, n, k, k_off, kh, kw in layout.edge_place:
        v = views[view]
        if k <= width:
            values = attr[offset : offset + n, :k]
        elif kernel is not None:
            values = kernel[k_off : k_off + n * k]
        else:
            raise ArchitectureError(
                f"{view}: its {kh}×{kw} kernels were resampled to fit {width} edge features; "
                f"an exact inverse needs the graph's edge_kernel"
            )
        views[view] = values.reshape(v.shape).to(v.dtype)
    joined = nmap.join(views)
    tensors = {name: joined[name].clone() for name in template.tensors}
    return Checkpoint(tensors, arch, dict(template.metadata))


def graph_bytes(graph: Data) -> int:
    """Bytes held by the graph's tensors."""
    return sum(v.numel() * v.element_size() for _, v in graph if isinstance(v, torch.Tensor))
