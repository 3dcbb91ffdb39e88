"""Probe features (Kofinas et al., ICLR 2024): each neuron's activations on learned inputs.

A network's weights are a poor view of the function it computes when many weight settings
give nearly the same function: an INR that fits an 8×8 digit moves its weights only a little
away from their random initialization, so weight statistics and message passing on the raw
weights see mostly the initialization (every method stays near chance on digits-inr). Running
a few input points through the network the graph encodes gives every neuron a vector of its
values on those points; the output neurons' vectors are the encoded signal itself. The points
are parameters of the metanetwork, learned with it.

The pass runs on the parameter graph, not on a rebuilt module, so it is batched over any mix
of graphs, sees the same augmented weights the metanetwork sees, and is differentiable in
the points. Hidden neurons are permuted together with their activations, so the features
keep the metanetwork invariant. Only networks of linear layers (and residual adds) are
evaluated; any other graph (normalization, attention) gets zero features, flagged by
:func:`probe_supported`.

Chains of convolutions (``digits-backdoor``: BadNets-style trigger detection) are evaluated
too when the points are square images (``D = side²``, e.g. 64 for 8×8 digits): learned input
images run through a CNN are what Universal Litmus Patterns (Kolouri et al., CVPR 2020) feed
a backdoor detector, and a trigger is a property of the function that its weights show only
indirectly. The graph records kernels, not strides or padding, so the pass assumes the
digits zoos' convolutions (3×3, stride 2, padding 1) followed by global average pooling into
linear layers (:func:`conv_probe_supported`); a conv neuron's feature is the spatial mean of
its map on each point. GELU is evaluated exactly: the graph does not record a
tanh approximation (a difference far below what the features are used for).

The activation functions come from the op registry (:data:`graphs.OPS`): a graph that
carries ``node_fn`` (the exact elementwise op of each node) is evaluated exactly; one
that carries only ``node_act`` (the v1 vocabulary: ``relu6`` is recorded as ``relu``) gets
the nearest v1 activation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from graphs import ACTIVATION_IDS, EDGE_TYPES, FUNCTION_IDS, NODE_TYPES, OPS
from models.layers import Block, GraphLayout, type_mask

_SUPPORTED_NODES = tuple(NODE_TYPES[k] for k in ("input", "linear", "add"))
_CONV_NODES = tuple(NODE_TYPES[k] for k in ("input", "conv", "linear"))
_CONV_EDGES = tuple(EDGE_TYPES[k] for k in ("conv", "linear"))
CONV_STRIDE = 2
CONV_PADDING = 1


# id -> f(pre-activation, per-row parameter: w0 of a sine, slope of a leaky ReLU)
_ACTIVATIONS = {i: OPS[name].apply for name, i in ACTIVATION_IDS.items()}
_FUNCTIONS = {i: OPS[name].apply for name, i in FUNCTION_IDS.items()}


def _activate(pre: Tensor, act: Tensor, param: Tensor, table: dict) -> Tensor:
    """Each node's own function (``node_fn`` or ``node_act``; 0 = identity) on its row."""
    ids = torch.unique(act).tolist()
    if len(ids) == 1:  # one function for every row (a layer of one MLP): no row gathers
        return pre if ids[0] == 0 else table[ids[0]](pre, param[:, None])
    out = pre
    for a in ids:
        if a == 0:
            continue
        rows = act == a
        y = table[a](pre[rows], param[rows, None])
        out = out.index_put((rows.nonzero()[:, 0],), y)
    return out


def _functions(batch: Batch) -> tuple[Tensor, dict]:
    """Each node's exact function id (``node_fn``) and its table, or else ``node_act``'s."""
    exact = getattr(batch, "node_fn", None)
    return (batch.node_act, _ACTIVATIONS) if exact is None else (exact, _FUNCTIONS)


def probe_supported(batch: Batch, num_graphs: int) -> Tensor:
    """Per graph: does it hold only linear layers, inputs and residual adds?"""
    bad = ~type_mask(batch.node_type, _SUPPORTED_NODES)
    any_bad = scatter(bad.float(), batch.batch, 0, dim_size=num_graphs, reduce="max")
    return any_bad == 0


def conv_probe_supported(batch: Batch, num_graphs: int) -> Tensor:
    """Per graph: is it a chain of convolutions (from one input channel) into linear layers?"""
    bad = ~type_mask(batch.node_type, _CONV_NODES)
    any_bad = scatter(bad.float(), batch.batch, 0, dim_size=num_graphs, reduce="max")
    src = batch.edge_index[0]
    bad_edge = ~type_mask(batch.edge_type, _CONV_EDGES)
    any_bad_edge = scatter(bad_edge.float(), batch.batch[src], 0, dim_size=num_graphs,
                           reduce="max")
    inputs = scatter((batch.node_type == NODE_TYPES["input"]).float(), batch.batch, 0,
                     dim_size=num_graphs, reduce="sum")
    convs = scatter((batch.node_type == NODE_TYPES["conv"]).float(), batch.batch, 0,
                    dim_size=num_graphs, reduce="sum")
    return (any_bad == 0) & (any_bad_edge == 0) & (inputs == 1) & (convs > 0)


def image_side(points: Tensor) -> int | None:
    """The side of the square image each point is, or None (coordinates, e.g. for INRs)."""
    side = math.isqrt(points.shape[1])
    return side if side >= 4 and side * side == points.shape[1] else None


def conv_probe_activations(batch: Batch, num_graphs: int, points: Tensor) -> Tensor:
    """``(num_nodes, P)``: each neuron's value on ``P`` input images (``points`` ``(P, side²)``)
    in conv-chain graphs (spatial means for conv neurons); zero rows for other graphs.

    Maps live on one ``(num_nodes, P, side, side)`` canvas, each in its top-left corner
    (zero elsewhere), so a linear layer after the global average pool reads a neuron's map
    sum over its area. Each conv edge's 3×3 kernel is applied to its source map's unfolded
    patches and the results are summed into the destination neuron.
    """
    n, num_points = batch.num_nodes, points.shape[0]
    side = image_side(points)
    if side is None:
        return points.new_zeros(n, num_points)
    src, dst = batch.edge_index
    ok = conv_probe_supported(batch, num_graphs)[batch.batch]
    maps = points.new_zeros(n, num_points, side, side)
    size = torch.zeros(n, dtype=torch.long, device=points.device)
    first = (batch.node_type == NODE_TYPES["input"]) & ok
    maps = maps.index_put((first.nonzero()[:, 0],),
                          points.view(1, num_points, side, side).expand(int(first.sum()), -1, -1,
                                                                        -1))
    size = torch.where(first, side, size)
    bias = batch.x[:, 0].to(points.dtype)
    param = batch.x[:, 5].to(points.dtype)
    fn, table = _functions(batch)
    layer, edge_layer = batch.node_layer, batch.node_layer[dst]
    ok_edge = ok[dst]
    conv_edge = batch.edge_type == EDGE_TYPES["conv"]
    for depth in range(1, int(layer.max()) + 1 if n else 1):
        rows = (layer == depth) & ok
        if not bool(rows.any()):
            continue
        e_conv = (edge_layer == depth) & ok_edge & conv_edge
        e_lin = (edge_layer == depth) & ok_edge & ~conv_edge
        is_conv = rows & (batch.node_type == NODE_TYPES["conv"])
        is_lin = rows & ~is_conv
        if bool(e_conv.any()):
            s_in = int(size[src[e_conv]].max())
            s_out = (s_in + 2 * CONV_PADDING - 3) // CONV_STRIDE + 1
            m = maps[src[e_conv], :, :s_in, :s_in].reshape(-1, 1, s_in, s_in)
            patches = F.unfold(m, 3, padding=CONV_PADDING, stride=CONV_STRIDE)
            patches = patches.view(-1, num_points, 9, s_out * s_out)
            kernel = batch.edge_attr[e_conv, :9].to(points.dtype)
            contrib = torch.einsum("epkl,ek->epl", patches, kernel)
            pre = scatter(contrib, dst[e_conv], 0, dim_size=n, reduce="sum")
            idx = is_conv.nonzero()[:, 0]
            out = _activate((pre[idx] + bias[idx, None, None]).flatten(1), fn[idx],
                            param[idx], table)
            canvas = points.new_zeros(len(idx), num_points, side, side)
            canvas[:, :, :s_out, :s_out] = out.view(len(idx), num_points, s_out, s_out)
            maps = maps.index_put((idx,), canvas)
            size = size.index_put((idx,), torch.full_like(idx, s_out))
        if bool(e_lin.any()):
            area = size[src[e_lin]].clamp_min(1).square().to(points.dtype)
            pooled = maps[src[e_lin]].sum((-1, -2)) / area[:, None]
            weight = batch.edge_attr[e_lin, 0].to(points.dtype)
            pre = scatter(weight[:, None] * pooled, dst[e_lin], 0, dim_size=n, reduce="sum")
            idx = is_lin.nonzero()[:, 0]
            out = _activate(pre[idx] + bias[idx, None], fn[idx], param[idx], table)
            canvas = points.new_zeros(len(idx), num_points, side, side)
            canvas[:, :, 0, 0] = out
            maps = maps.index_put((idx,), canvas)
            size = size.index_put((idx,), torch.ones_like(idx))
    area = size.clamp_min(1).square().to(points.dtype)
    return maps.sum((-1, -2)) / area[:, None]


def probe_activations(batch: Batch, num_graphs: int, points: Tensor,
                      layout: GraphLayout | None = None) -> Tensor:
    """``(num_nodes, P)``: every neuron's post-activation value on each of the ``P`` points.

    ``points`` is ``(P, D)``: input neuron ``i`` of a graph (in its fixed input order)
    reads coordinate ``i`` of each point (0 past ``D``). Zero rows for unsupported graphs.
    With the batch's :class:`~models.layers.GraphLayout` (one structure for all graphs) a
    dense weight block is a batched matrix product instead of a gather of every edge's
    source values (``E x P`` floats) and a scatter back. Conv-chain graphs are evaluated by
    :func:`conv_probe_activations` when the points are square images.
    """
    linear = _linear_probe_activations(batch, num_graphs, points, layout)
    if image_side(points) is None:
        return linear
    return linear + conv_probe_activations(batch, num_graphs, points)


def _linear_probe_activations(batch: Batch, num_graphs: int, points: Tensor,
                              layout: GraphLayout | None) -> Tensor:
    exact = getattr(batch, "node_fn", None)
    if layout is not None and all(b.dst_layer >= 0 for b in layout.blocks):
        same = [batch.x[:, 5]] + ([exact] if exact is not None else [])
        views = [t.view(layout.num_graphs, layout.num_nodes) for t in same]
        if layout.num_graphs == 1 or all(bool((v == v[:1]).all()) for v in views):
            return _probe_blocks(batch, layout, points)
    n, (num_points, dims) = batch.num_nodes, points.shape
    src, dst = batch.edge_index
    graph_of = batch.batch
    ok = probe_supported(batch, num_graphs)[graph_of]
    is_input = batch.node_type == NODE_TYPES["input"]
    first = scatter(torch.where(is_input, batch.node_pos, batch.node_pos.new_full((), 1 << 30)),
                    graph_of, 0, dim_size=num_graphs, reduce="min")
    rank = batch.node_pos - first[graph_of]
    take = is_input & ok & (rank >= 0) & (rank < dims)
    values = points.new_zeros(n, num_points)
    values = values.index_put((take.nonzero()[:, 0],), points[:, rank[take]].t())
    weight = batch.edge_attr[:, 0].to(points.dtype)
    bias = batch.x[:, 0].to(points.dtype)
    param = batch.x[:, 5].to(points.dtype)
    layer = batch.node_layer
    fn, table = _functions(batch)
    edge_layer = layer[dst]
    for depth in range(1, int(layer.max()) + 1 if n else 1):
        e = edge_layer == depth
        if not bool(e.any()):
            continue
        pre = scatter(weight[e, None] * values[src[e]], dst[e], 0, dim_size=n, reduce="sum")
        rows = (layer == depth) & ok
        idx = rows.nonzero()[:, 0]
        out = _activate(pre[idx] + bias[idx, None], fn[idx], param[idx], table)
        values = values.index_put((idx,), out)
    return values


def _probe_blocks(batch: Batch, layout: GraphLayout, points: Tensor) -> Tensor:
    """:func:`probe_activations` for a batch of one structure, block by block."""
    g, n, m = layout.num_graphs, layout.num_nodes, layout.num_edges
    num_points, dims = points.shape
    one = Batch(x=batch.x[:n], node_type=batch.node_type[:n], batch=batch.batch[:n],
                node_pos=batch.node_pos[:n], node_layer=batch.node_layer[:n],
                node_act=batch.node_act[:n])
    if not bool(probe_supported(one, 1)[0]):
        return points.new_zeros(g * n, num_points)
    is_input = one.node_type == NODE_TYPES["input"]
    rank = one.node_pos - one.node_pos[is_input].min() if bool(is_input.any()) else one.node_pos
    take = (is_input & (rank >= 0) & (rank < dims)).nonzero()[:, 0]
    inputs = points[:, rank[take]].t().expand(g, -1, -1)
    fn, table = _functions(batch)
    fn = fn[:n]
    weight = batch.edge_attr[:, 0].to(points.dtype).view(g, m)
    bias = batch.x[:, 0].to(points.dtype).view(g, n)
    layer = one.node_layer
    depths = range(1, int(layer.max()) + 1 if n else 1)
    if n and bool((layer[1:] >= layer[:-1]).all()):
        return _probe_layers(layout, inputs, take, weight, bias, fn, one.x[:, 5], table,
                             layer, depths)
    values = points.new_zeros(g, n, num_points).index_copy(1, take, inputs)
    for depth in depths:
        blocks = [b for b in layout.blocks if b.dst_layer == depth]
        if not blocks:
            continue
        pre = points.new_zeros(g, n, num_points)
        for b in blocks:
            part = _block_product(weight, b, values[:, b.s0:b.s0 + b.cols])
            pre = pre.slice_scatter(pre[:, b.d0:b.d0 + b.rows] + part, 1, b.d0, b.d0 + b.rows)
        idx = (layer == depth).nonzero()[:, 0]
        out = _activate_rows(pre[:, idx] + bias[:, idx, None], fn[idx],
                             one.x[idx, 5].to(points.dtype), table)
        values = values.index_copy(1, idx, out)
    return values.view(g * n, num_points)


def _block_product(weight: Tensor, block: Block, src: Tensor) -> Tensor:
    """One block's contribution to its destinations' pre-activations: ``weight`` is the
    batch's ``(graphs, edges)`` weights, ``src`` the sources' ``(graphs, cols, P)`` values."""
    w = weight[:, block.e0:block.e0 + block.size]
    if block.diagonal:
        return w[:, :, None] * src
    return torch.bmm(w.reshape(weight.shape[0], block.rows, block.cols), src)


def _activate_rows(rows: Tensor, fn: Tensor, param: Tensor, table: dict) -> Tensor:
    """:func:`_activate` on ``(graphs, nodes, P)`` pre-activations of the same nodes."""
    g, k, p = rows.shape
    # _activate works on rows = nodes: put the graphs beside the points
    flat = rows.transpose(0, 1).reshape(k, g * p)
    return _activate(flat, fn, param, table).view(k, g, p).transpose(0, 1)


def _probe_layers(layout: GraphLayout, inputs: Tensor, take: Tensor, weight: Tensor,
                  bias: Tensor, fn: Tensor, param: Tensor, table: dict, layer: Tensor,
                  depths: range) -> Tensor:
    """:func:`_probe_blocks` when the nodes come layer by layer (``graphs.to_graph``'s
    order): each layer's values are one ``(graphs, width, P)`` tensor, a block reads a slice
    of them where its sources lie in one layer, and the result is one concatenation, instead
    of whole ``(graphs, nodes, P)`` copies per layer."""
    g = weight.shape[0]
    num_points = inputs.shape[-1]
    starts = [0, *(torch.searchsorted(layer, torch.tensor(list(depths), device=layer.device))
                   .tolist()), layout.num_nodes]
    values = [inputs.new_zeros(g, starts[1], num_points).index_copy(1, take, inputs)]

    def sources(s0: int, cols: int) -> Tensor:
        d = int(layer[s0])
        if int(layer[s0 + cols - 1]) == d:
            return values[d][:, s0 - starts[d]:s0 - starts[d] + cols]
        return torch.cat(values, 1)[:, s0:s0 + cols]  # sources across layers (rare)

    for depth in depths:
        a, z = starts[depth], starts[depth + 1]
        pre = None
        for b in (b for b in layout.blocks if b.dst_layer == depth):
            part = _block_product(weight, b, sources(b.s0, b.cols))
            if pre is None and b.d0 == a and b.rows == z - a:
                pre = part
                continue
            if pre is None:
                pre = inputs.new_zeros(g, z - a, num_points)
            pre = pre.slice_scatter(pre[:, b.d0 - a:b.d0 - a + b.rows] + part, 1,
                                    b.d0 - a, b.d0 - a + b.rows)
        if pre is None:
            pre = inputs.new_zeros(g, z - a, num_points)
        values.append(_activate_rows(pre + bias[:, a:z, None], fn[a:z],
                                     param[a:z].to(inputs.dtype), table))
    return torch.cat(values, 1).view(g * layout.num_nodes, num_points)
