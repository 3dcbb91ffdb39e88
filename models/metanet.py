"""The graph metanetwork: encoders, :class:`~models.layers.NGConv` layers, invariant readout.

Every input it sees comes from a ``graphs.to_graph`` parameter graph; all widths are fixed
there, so one model batches any mix of architectures. Hidden neurons only ever meet
weight-tied operations (shared encoders, message passing, pooling) and embeddings of
permutation-invariant ids (type, activation, depth, and ``node_pos`` = -1 for all of them),
so the output is invariant to hidden-neuron permutations. Input and output neurons keep
their fixed positions: the readout reads output neurons in ``node_pos`` order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter

from graphs import ACTIVATION_IDS, EDGE_TYPES, NODE_FEATURES, NODE_TYPES
from models.config import MetanetConfig
from models.layers import (
    GraphLayout,
    NGConv,
    add_to_blocks,
    block_order,
    both_directions,
    graph_layout,
    mlp,
    slice_graphs,
    type_mask,
)
from models.probes import probe_activations
from models.queries import QueryReadout, digit_images
from models.runtime import map_threads
from models.triggers import TriggerReadout

WEIGHT_EDGE_TYPES = tuple(EDGE_TYPES[k] for k in
                          ("linear", "conv", "flatten_linear", "attn_q", "attn_k", "attn_v",
                           "attn_out"))


def is_weight_edge(edge_type: Tensor) -> Tensor:
    """Edges that carry a weight entry (not the identity edges of residuals, norms, pairs)."""
    return type_mask(edge_type, WEIGHT_EDGE_TYPES)


def robust_scale(values: Tensor) -> Tensor:
    """Per-column scale: the 90th percentile of the non-zero magnitudes (1 if none)."""
    out = torch.ones(values.shape[1])
    for c in range(values.shape[1]):
        col = values[:, c].abs()
        col = col[col > 0]
        if col.numel():
            out[c] = torch.quantile(col[:1_000_000].double(), 0.9).float().clamp_min(1e-6)
    return out


class FeatureEncoder(nn.Module):
    """Scaled signed-log features plus random Fourier features, then a linear map.

    Weights span orders of magnitude (a SIREN's first layer beside a classifier head), so
    each column is divided by a scale fitted on the training set, squashed by
    sign(v)·log1p(|v|), and expanded with fixed sin/cos features (Tancik et al.) so small
    differences in a weight's value stay visible to the network.
    """

    def __init__(self, in_dim: int, out_dim: int, fourier: int, sigma: float) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(in_dim))
        self.register_buffer("freqs", torch.randn(in_dim, fourier) * sigma)
        self.lin = nn.Linear(in_dim + 2 * fourier, out_dim)

    def forward(self, v: Tensor) -> Tensor:
        v = v / self.scale
        v = torch.sign(v) * torch.log1p(v.abs())
        proj = 2 * math.pi * v @ self.freqs
        # lin([v, sin, cos]) as three products into one output: no (rows, in + 2F) copy
        d, f = v.shape[1], self.freqs.shape[1]
        w = self.lin.weight
        out = torch.addmm(self.lin.bias, v, w[:, :d].t())
        if not torch.is_autocast_enabled(v.device.type):
            # accumulated in place: an out-of-place addmm first copies its (rows, out)
            # input, a third of the encoder's time on an edge list
            out.addmm_(torch.sin(proj), w[:, d:d + f].t())
            return out.addmm_(torch.cos(proj), w[:, d + f:].t())
        # (out of place: autocast casts addmm's operands, not an in-place addmm_'s)
        out = torch.addmm(out, torch.sin(proj), w[:, d:d + f].t())
        return torch.addmm(out, torch.cos(proj), w[:, d + f:].t())


#: the largest batch one inference pass runs at once (larger ones run in sub-batches)
INFERENCE_GRAPHS = 256
#: the fewest graphs a sub-batch of a CPU inference pass on several threads gets
THREAD_GRAPHS = 32

LAYER_STATS = 15  # per layer: 4 weight statistics, mean/std of 5 node features, presence


def layer_statistics(batch: Batch, num_graphs: int, max_layer: int,
                     layout: GraphLayout | None = None) -> Tensor:
    """Per-layer weight and neuron statistics of each graph, ``(num_graphs, max_layer * 15)``.

    Unterthiner et al.'s statistics, computed from the graph itself: for each depth (the
    layer of an edge's target neuron, deeper layers share the last slot) the mean, std,
    mean |w| and max |w| of the weight entries, and the mean and std of each node feature
    but ``act_param``, plus a presence flag. Aggregates over whole layers are unchanged by
    any neuron permutation, so this branch keeps the model invariant; it hands the readout
    the global scale information that message passing from local neighbourhoods only
    approximates. With a ``layout`` (graphs of one structure) the sums are products with
    one graph's slot matrix instead of scatters over the batch's edges.
    """
    if layout is not None:
        return _layout_statistics(batch, layout, max_layer)
    dev = batch.x.device
    slots = num_graphs * max_layer
    layer = batch.node_layer.clamp(0, max_layer - 1)
    node_slot = batch.batch * max_layer + layer
    dst = batch.edge_index[1]
    weight = is_weight_edge(batch.edge_type)
    e = batch.edge_attr.float()[weight]
    eslot = node_slot[dst[weight]]
    present = (e != 0).float()
    n = scatter(present.sum(1), eslot, 0, dim_size=slots, reduce="sum").clamp_min(1)
    s1 = scatter(e.sum(1), eslot, 0, dim_size=slots, reduce="sum") / n
    s2 = scatter((e * e).sum(1), eslot, 0, dim_size=slots, reduce="sum") / n
    sa = scatter(e.abs().sum(1), eslot, 0, dim_size=slots, reduce="sum") / n
    mx = scatter(e.abs().max(1).values, eslot, 0, dim_size=slots, reduce="max")
    x = batch.x.float()[:, :5]
    has = (batch.node_type != NODE_TYPES["input"]).float()
    cnt = scatter(has, node_slot, 0, dim_size=slots, reduce="sum")
    xm = scatter(x * has[:, None], node_slot, 0, dim_size=slots, reduce="sum")
    xm = xm / cnt.clamp_min(1)[:, None]
    xs = scatter(x * x * has[:, None], node_slot, 0, dim_size=slots, reduce="sum")
    xs = (xs / cnt.clamp_min(1)[:, None] - xm * xm).clamp_min(0).sqrt()
    return _stat_columns(s1, s2, sa, mx, xm, xs, cnt.to(dev)).view(
        num_graphs, max_layer * LAYER_STATS)


def _stat_columns(s1: Tensor, s2: Tensor, sa: Tensor, mx: Tensor, xm: Tensor, xs: Tensor,
                  cnt: Tensor) -> Tensor:
    """The ``LAYER_STATS`` columns of each (graph, layer) slot, from per-slot ``(..., )``
    weight moments and ``(..., 5)`` node-feature means and stds."""
    return torch.cat([s1[..., None], (s2 - s1 * s1).clamp_min(0).sqrt()[..., None],
                      sa[..., None], mx[..., None], xm, xs, (cnt > 0).float()[..., None]],
                     dim=-1)


def _layout_statistics(batch: Batch, layout: GraphLayout, max_layer: int) -> Tensor:
    """:func:`layer_statistics` of graphs of one structure: every graph's edges and nodes
    fall in the same slots, so one graph's one-hot slot matrices serve the whole batch."""
    g, n, m = layout.num_graphs, layout.num_nodes, layout.num_edges
    layer = batch.node_layer[:n].clamp(0, max_layer - 1)
    eslot = layer[batch.edge_index[1, :m]]
    weight = is_weight_edge(batch.edge_type[:m])
    e_onehot = F.one_hot(eslot, max_layer).float() * weight[:, None]
    has = (batch.node_type[:n] != NODE_TYPES["input"]).float()
    n_onehot = F.one_hot(layer, max_layer).float() * has[:, None]

    e = batch.edge_attr.float().view(g, m, -1)
    a = e.abs()
    per_edge = torch.stack([(e != 0).sum(2, dtype=e.dtype), e.sum(2), (e * e).sum(2),
                            a.sum(2)], dim=1)  # (g, 4, m)
    sums = per_edge @ e_onehot  # (g, 4, L)
    count = sums[:, 0].clamp_min(1)
    s1, s2, sa = sums[:, 1] / count, sums[:, 2] / count, sums[:, 3] / count
    peak = a.amax(2)
    mx = e.new_zeros(g, max_layer)
    for slot in torch.unique(eslot[weight]).tolist():
        mx[:, slot] = peak[:, (eslot == slot) & weight].amax(1)

    x = batch.x.float()[:, :5].view(g, n, 5).transpose(1, 2)  # (g, 5, n)
    cnt = n_onehot.sum(0)  # (L,)
    xm = (x @ n_onehot) / cnt.clamp_min(1)  # (g, 5, L)
    xs = ((x * x) @ n_onehot / cnt.clamp_min(1) - xm * xm).clamp_min(0).sqrt()
    out = _stat_columns(s1, s2, sa, mx, xm.transpose(1, 2), xs.transpose(1, 2),
                        cnt.expand(g, -1))
    return out.reshape(g, max_layer * LAYER_STATS)


class GraphMetanet(nn.Module):
    """Permutation-invariant prediction from parameter graphs (one class for every family).

    ``forward(batch)`` returns ``(num_graphs, num_outputs)`` logits: class logits for
    classification, the logit of the predicted test accuracy for generalization.

    ``use_layout`` (default True): when every graph of a batch shares one structure, run
    the message passing and the probe pass block by block (:class:`models.layers.GraphLayout`)
    instead of over the edge list; the same function up to float rounding, several times
    faster, and with per-edge temporaries one block at a time. Mixed batches always take the
    edge-list path. Without autograd a batch of one structure runs
    :meth:`NGConv.forward_fused` (``fuse_layers``, default True; False keeps the unfused
    block layers, for comparison), and on several CPU threads its sub-batches run side by
    side (:func:`models.runtime.map_threads`).
    ``set_checkpointing`` says whether a training step recomputes the per-edge
    messages in the backward pass (the default) instead of keeping them.
    """

    use_layout: bool = True
    fuse_layers: bool = True

    def __init__(self, config: MetanetConfig) -> None:
        super().__init__()
        self.config = c = config
        h = c.hidden
        self.node_enc = FeatureEncoder(len(NODE_FEATURES), h, c.fourier, c.fourier_sigma)
        self.edge_enc = FeatureEncoder(c.max_kernel, c.edge_hidden, c.fourier, c.fourier_sigma)
        self.node_type = nn.Embedding(len(NODE_TYPES), h)
        self.node_act = nn.Embedding(len(ACTIVATION_IDS) + 1, h)
        self.node_layer = nn.Embedding(c.max_layer, h)
        self.node_depth = nn.Embedding(c.max_layer, h)  # layers left to the output
        self.node_pos = nn.Embedding(c.max_pos, h)  # row 0: every hidden neuron
        self.edge_type = nn.Embedding(len(EDGE_TYPES), c.edge_hidden)
        if c.probes:
            # INR coordinates live in [-1, 1]^D; the points move from there as they learn.
            self.probe_points = nn.Parameter(torch.rand(c.probes, c.probe_dims) * 2 - 1)
            self.probe_enc = nn.Linear(c.probes, h)
        self.convs = nn.ModuleList(
            NGConv(h, c.edge_hidden, c.aggregators, c.dropout, update_edges=i < c.layers - 1)
            for i in range(c.layers))
        self.out_norm = nn.LayerNorm(h)
        readout = (4 + c.readout_outputs) * h
        if c.queries:
            self.query_readout = QueryReadout(c.queries, c.query_side, c.readout_outputs, h,
                                              c.dropout, by_class=c.query_classes)
            readout += self.query_readout.out_dim
        if c.triggers:
            self.trigger_readout = TriggerReadout(c.triggers, c.trigger_window, c.query_side,
                                                  c.readout_outputs, h, c.dropout)
            readout += h
        if c.layer_stats:
            width = c.max_layer * LAYER_STATS
            self.register_buffer("stats_mean", torch.zeros(width))
            self.register_buffer("stats_std", torch.ones(width))
            self.stats_mlp = mlp([width, h, h], c.dropout)
            readout += h
        self.head = mlp([readout, h, c.num_outputs], c.dropout)

    def set_checkpointing(self, mode: bool) -> None:
        """Whether training passes recompute per-edge messages in backward (default True)
        or keep them, for every layer; see :class:`NGConv`."""
        for conv in self.convs:
            conv.checkpoint_messages = mode

    def layout_of(self, batch: Batch) -> GraphLayout | None:
        """The batch's shared structure, or None (mixed batch, or ``use_layout`` off)."""
        return graph_layout(batch) if self.use_layout else None

    @torch.no_grad()
    def fit_normalization(self, graphs: Iterable[Data]) -> None:
        """Set the feature scales from training graphs (weights only, not identity edges)."""
        graphs = list(graphs)
        x = torch.cat([g.x for g in graphs]).float()
        e = torch.cat([g.edge_attr[is_weight_edge(g.edge_type)] for g in graphs]).float()
        self.node_enc.scale.copy_(robust_scale(x))
        self.edge_enc.scale.copy_(robust_scale(e))
        if self.config.queries and self.config.query_side == 8:
            # a seeded draw of digits (the images the digits zoos' networks read)
            seed = int(torch.randint(0, 1 << 30, ()).item())
            self.query_readout.init_images(digit_images(self.config.queries, seed,
                                                        train_only=self.config.query_classes))
        if self.config.triggers:
            self.trigger_readout.init_digits()
        if self.config.layer_stats:
            stats = torch.cat([self.signed_log_stats(b, int(b.num_graphs)) for b in
                               DataLoader(graphs, batch_size=256)])
            self.stats_mean.copy_(stats.mean(0))
            self.stats_std.copy_(stats.std(0).clamp_min(1e-3))

    def signed_log_stats(self, batch: Batch, num_graphs: int,
                         layout: GraphLayout | None = None) -> Tensor:
        s = layer_statistics(batch, num_graphs, self.config.max_layer, layout)
        return torch.sign(s) * torch.log1p(s.abs() * 100)

    def forward(self, batch: Batch) -> Tensor:
        num_graphs = int(batch.num_graphs)
        if torch.is_grad_enabled():
            return self._forward(batch)
        threads = torch.get_num_threads() if batch.x.device.type == "cpu" else 1
        if num_graphs <= INFERENCE_GRAPHS and (threads == 1 or num_graphs < 2 * THREAD_GRAPHS):
            return self._forward(batch)
        # Without autograd every output depends on its own graph only, so a large batch runs
        # as sub-batches: memory stays that of INFERENCE_GRAPHS graphs at any batch size, and
        # with several CPU threads the sub-batches run side by side, one thread each
        size = min(INFERENCE_GRAPHS // threads, -(-num_graphs // threads))
        size = max(size, min(THREAD_GRAPHS, INFERENCE_GRAPHS))
        bounds = [(i, min(i + size, num_graphs)) for i in range(0, num_graphs, size)]
        layout = self.layout_of(batch)
        if layout is not None:
            parts = [slice_graphs(batch, layout, a, b) for a, b in bounds]
        elif num_graphs <= INFERENCE_GRAPHS:
            return self._forward(batch)  # mixed: not worth collating its graphs anew
        else:
            graphs = batch.index_select(range(num_graphs))
            parts = [Batch.from_data_list(graphs[a:b]) for a, b in bounds]
        return torch.cat(map_threads(self._forward, parts, threads))

    def _forward(self, batch: Batch) -> Tensor:
        c = self.config
        num_graphs = int(batch.num_graphs)
        graph_of = batch.batch
        layer = batch.node_layer
        last = scatter(layer, graph_of, dim=0, dim_size=num_graphs, reduce="max")[graph_of]
        pos = (batch.node_pos + 1).clamp(0, c.max_pos - 1)
        x = (self.node_enc(batch.x.float()) + self.node_type(batch.node_type)
             + self.node_act(batch.node_act) + self.node_pos(pos)
             + self.node_layer(layer.clamp(0, c.max_layer - 1))
             + self.node_depth((last - layer).clamp(0, c.max_layer - 1)))
        layout = self.layout_of(batch)
        if c.probes:
            v = probe_activations(batch, num_graphs, self.probe_points, layout)
            x = x + self.probe_enc(torch.sign(v) * torch.log1p(v.abs()))
        if (layout is not None and self.fuse_layers and not torch.is_grad_enabled()
                and all(conv.fusable() for conv in self.convs)):
            # inference on one structure: edges in block-major order from the encoder on
            # (a per-row map, so the rows are permuted before it), every layer fused
            order = block_order(layout, batch.edge_attr.device)
            e = add_to_blocks(self.edge_enc(batch.edge_attr[order].float()), layout,
                              self.edge_type(batch.edge_type[:layout.num_edges]))
            for conv in self.convs:
                x, e = conv.forward_fused(x, e, layout)
        else:
            e = self.edge_enc(batch.edge_attr.float()) + self.edge_type(batch.edge_type)
            both = None if layout is not None else both_directions(batch.edge_index)
            for conv in self.convs:
                x, e = conv(x, batch.edge_index, e, both, layout)
        x = self.out_norm(x)
        features = self.readout(x, batch, num_graphs)
        if c.queries:
            features = torch.cat([features, self.query_readout(batch, num_graphs, layout)],
                                 dim=-1)
        if c.triggers:
            features = torch.cat([features, self.trigger_readout(batch, num_graphs)], dim=-1)
        if c.layer_stats:
            s = self.signed_log_stats(batch, num_graphs, layout)
            s = (s - self.stats_mean) / self.stats_std
            features = torch.cat([features, self.stats_mlp(s)], dim=-1)
        return self.head(features)

    def readout(self, x: Tensor, batch: Batch, num_graphs: int) -> Tensor:
        """Mean and max over all nodes and over output neurons, then the first
        ``readout_outputs`` output neurons in their fixed order (zero-padded)."""
        k, h = self.config.readout_outputs, x.shape[1]
        graph_of = batch.batch
        out = (batch.node_pos >= 0) & (batch.node_type != NODE_TYPES["input"])
        xo, go, po = x[out], graph_of[out], batch.node_pos[out]
        pooled = [
            scatter(x, graph_of, 0, dim_size=num_graphs, reduce="mean"),
            scatter(x, graph_of, 0, dim_size=num_graphs, reduce="max"),
            scatter(xo, go, 0, dim_size=num_graphs, reduce="mean"),
            scatter(xo, go, 0, dim_size=num_graphs, reduce="max"),
        ]
        first = scatter(po, go, 0, dim_size=num_graphs, reduce="min")
        rank = po - first[go]
        keep = rank < k
        slots = x.new_zeros(num_graphs, k, h)
        slots[go[keep], rank[keep]] = xo[keep]
        return torch.cat([*pooled, slots.flatten(1)], dim=-1)
