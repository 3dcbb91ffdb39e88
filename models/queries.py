"""Learned queries (MNTD, Xu et al. 2021): a detector that asks the network, not its weights.

A backdoor is a property of the function on triggered inputs, written into the same few
kernels that read the digits, so weight statistics and message passing see it only
indirectly (ZOOS.md, "digits-backdoor detection"). Meta Neural Trojan Detection instead
learns a small set of query inputs jointly with a classifier over the network's outputs on
them. Here the queries are images stored in the metanetwork's weights, run through each CNN
by the probe pass (:func:`models.probes.probe_activations`: conv chains and MLPs, on the
parameter graph, so it batches any mix of architectures and is differentiable in the
images); the output neurons' values are the network's logits on each query.

The readout is symmetric in the classes (DeepSets over classes): each class's log-probability
profile across the queries goes through one shared MLP, then max and mean over classes. A
trigger's target class is arbitrary, so "some class responds to the queries like a target
class does" is the property to detect, not which class. The network's outputs are invariant
to hidden-neuron permutations, so these features are too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from graphs import EDGE_TYPES, NODE_TYPES
from models.layers import Block, GraphLayout, decompose, mlp
from models.probes import (
    CONV_PADDING,
    CONV_STRIDE,
    _activate,
    _functions,
    conv_probe_supported,
    probe_activations,
    probe_supported,
)

#: queries are stored as logits divided by this, so the shared learning rate moves them
#: QUERY_GAIN times faster than the classifier's weights (Adam steps are ~lr per parameter)
QUERY_GAIN = 50.0
#: logits are clamped to this magnitude before the softmax over classes; absent classes
#: (a network with fewer outputs) get -ABSENT (finite: no NaN in any gradient)
MAX_LOGIT = 30.0
ABSENT = 1e4
_CONV = EDGE_TYPES["conv"]


_CHAINS: dict[bytes, tuple[Block, ...] | None] = {}


def _chain_blocks(edge_index: Tensor, node_layer: Tensor, node_type: Tensor
                  ) -> tuple[Block, ...] | None:
    """One graph's dense blocks if it is a plain chain (layer d reads exactly the nodes of
    layer d - 1 through one dense block, the first from the input nodes), else None."""
    key = b"".join(t.cpu().numpy().tobytes() for t in (edge_index, node_layer, node_type))
    if key in _CHAINS:
        return _CHAINS[key]
    blocks = decompose(edge_index.cpu(), node_layer.cpu())
    ok = blocks is not None and len(blocks) > 0
    if ok:
        layer = node_layer.cpu()
        for depth, b in enumerate(blocks, start=1):
            src = (layer == depth - 1).nonzero()[:, 0]
            dst = (layer == depth).nonzero()[:, 0]
            ok = ok and not b.diagonal and b.dst_layer == depth \
                and src.tolist() == list(range(b.s0, b.s0 + b.cols)) \
                and dst.tolist() == list(range(b.d0, b.d0 + b.rows))
        ok = ok and int(layer.max()) == len(blocks)
    _CHAINS[key] = blocks if ok else None
    if len(_CHAINS) > 256:
        _CHAINS.pop(next(iter(_CHAINS)))
    return _CHAINS[key]


def chain_activations(batch: Batch, num_graphs: int, images: Tensor) -> Tensor | None:
    """:func:`models.probes.probe_activations` for batches of plain conv/linear chains, as
    grouped convolutions and batched matrix products over the graphs of one structure.

    ``images`` is ``(P, S)`` (the same P inputs for every graph) or ``(P, num_graphs, S)``
    (each graph its own, e.g. a trigger search's stamped digits). Returns ``(num_nodes, P)``
    values of the last layer's neurons (zero elsewhere), or None when some graph is not such
    a chain (the caller takes the general pass). Same function as the general pass up to
    float rounding (tests/models/test_queries.py).
    """
    if not bool((conv_probe_supported(batch, num_graphs)
                 | probe_supported(batch, num_graphs)).all()):
        return None
    ptr = batch.ptr.tolist()
    src_graph = batch.batch[batch.edge_index[0]]
    eptr = [0, *torch.bincount(src_graph, minlength=num_graphs).cumsum(0).tolist()]
    groups: dict[bytes, list[int]] = {}
    structures: dict[bytes, tuple[Block, ...]] = {}
    for g in range(num_graphs):
        n0, n1, e0, e1 = ptr[g], ptr[g + 1], eptr[g], eptr[g + 1]
        ei = batch.edge_index[:, e0:e1] - n0
        parts = (ei, batch.node_layer[n0:n1], batch.node_type[n0:n1],
                 batch.edge_type[e0:e1])
        key = b"".join(t.cpu().numpy().tobytes() for t in parts)
        if key not in structures:
            blocks = _chain_blocks(*parts[:3])
            if blocks is None:
                return None
            structures[key] = blocks
        groups.setdefault(key, []).append(g)
    fn, table = _functions(batch)
    bias_all, param_all = batch.x[:, 0].to(images.dtype), batch.x[:, 5].to(images.dtype)
    per_graph = images.dim() == 3
    num_points, side = images.shape[0], math.isqrt(images.shape[-1])
    out = images.new_zeros(batch.num_nodes, num_points)
    dev = images.device
    for key, members in groups.items():
        blocks = structures[key]
        gi = torch.tensor(members, device=dev)
        n_start = batch.ptr[gi]
        e_start = torch.tensor([eptr[g] for g in members], device=dev)
        count = len(members)
        h: Tensor | None = None  # (P, G*C, s, s) maps or (P, G, C) vectors
        for b in blocks:
            edges = e_start[:, None] + b.e0 + torch.arange(b.size, device=dev)
            nodes = n_start[:, None] + b.d0 + torch.arange(b.rows, device=dev)
            bias = bias_all[nodes]  # (G, rows)
            if bool(batch.edge_type[b.e0 + eptr[members[0]]] == _CONV):
                w = batch.edge_attr[edges, :9].to(images.dtype)
                w = w.view(count * b.rows, b.cols, 3, 3)
                if (h is None and b.cols != 1) or (h is not None and h.dim() != 4):
                    return None  # not one input image, or a convolution after a linear layer
                if h is None and per_graph:
                    x = images[:, gi].reshape(num_points, count, side, side)
                else:
                    x = images.view(num_points, 1, side, side) if h is None else h
                # shared images: the first layer is one plain convolution for every graph
                shared = h is None and not per_graph
                pre = F.conv2d(x, w, bias.reshape(-1), stride=CONV_STRIDE, padding=CONV_PADDING,
                               groups=1 if shared else count)
                s_out = pre.shape[-1]
                rows = pre.view(num_points, count * b.rows, s_out * s_out).transpose(0, 1)
                act = _activate(rows.reshape(count * b.rows, -1), fn[nodes.reshape(-1)],
                                param_all[nodes.reshape(-1)], table)
                h = act.view(count * b.rows, num_points, s_out, s_out).transpose(0, 1)
            else:
                w = batch.edge_attr[edges, 0].to(images.dtype).view(count, b.rows, b.cols)
                if h is None:
                    if b.cols != images.shape[-1]:
                        return None
                    x = images[:, gi] if per_graph else images[:, None, :].expand(-1, count, -1)
                elif h.dim() == 4:
                    x = h.mean((-1, -2)).view(num_points, count, b.cols)
                else:
                    x = h
                pre = torch.einsum("pgc,grc->pgr", x, w) + bias[None]
                flat = pre.permute(1, 2, 0).reshape(count * b.rows, num_points)
                act = _activate(flat, fn[nodes.reshape(-1)], param_all[nodes.reshape(-1)],
                                table)
                h = act.view(count, b.rows, num_points).permute(2, 0, 1)
        last = blocks[-1]
        nodes = n_start[:, None] + last.d0 + torch.arange(last.rows, device=dev)
        final = h if h.dim() == 3 else h.mean((-1, -2)).view(num_points, count, last.rows)
        out = out.index_put((nodes.reshape(-1),), final.permute(1, 2, 0).reshape(-1, num_points))
    return out


def output_logits(batch: Batch, num_graphs: int, values: Tensor, classes: int
                  ) -> tuple[Tensor, Tensor]:
    """``(num_graphs, classes, P)`` output-neuron values in their fixed order and a
    ``(num_graphs, classes)`` mask of the ones present (a network may have fewer)."""
    is_out = (batch.node_pos >= 0) & (batch.node_type != NODE_TYPES["input"])
    graph_of, pos = batch.batch[is_out], batch.node_pos[is_out]
    first = scatter(pos, graph_of, 0, dim_size=num_graphs, reduce="min")
    rank = pos - first[graph_of]
    keep = rank < classes
    out = values.new_zeros(num_graphs, classes, values.shape[1])
    out[graph_of[keep], rank[keep]] = values[is_out][keep]
    present = torch.zeros(num_graphs, classes, dtype=torch.bool, device=values.device)
    present[graph_of[keep], rank[keep]] = True
    return out, present


#: the digits zoos' fixed train/test split of sklearn's digits (``zoo.data.digits_split``;
#: models may not import zoo, tests/models/test_queries.py checks the two agree)
DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION = 0, 0.25


def digit_images(count: int, seed: int = 0, train_only: bool = False) -> Tensor:
    """``(count, 64)`` sklearn digits in [0, 1] (a seeded draw): the queries' starting point.

    Queries that start as digits get answers the networks were trained to give, which a
    trigger then moves; queries from noise plateaued early in the first attempt (ZOOS.md).
    ``train_only`` draws from the zoos' training split alone: a readout that knows each
    query's class (``query_classes``) must not start from images the targets were scored on.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).flatten(1)
    if train_only:
        keep, _ = train_test_split(range(len(images)), test_size=DIGITS_TEST_FRACTION,
                                   random_state=DIGITS_SPLIT_SEED, stratify=digits.target)
        images = images[torch.tensor(sorted(keep))]
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    return images[pick]


class QueryReadout(nn.Module):
    """``(num_graphs, out_dim)`` features from the network's answers to learned queries.

    ``queries`` images of ``side × side`` pixels in (0, 1) (the digits' range: a sigmoid of
    a stored logit), initialised from :meth:`init_images`; graphs the conv-chain pass cannot
    read get zero features (and a zero flag in the last column of the class profile).
    ``by_class`` reads the whole (class × query) table of log-probabilities and answers
    (the argmax class of each query) instead of the class-symmetric profiles: where class
    ``c`` means the same in every network of the domain (digit ``c``), which class answers
    each query is what a network's accuracy is made of, and a symmetric readout cannot see
    it. Queries that start as training digits make this an accuracy on a small learned
    probe set: the prediction still reads nothing but the checkpoint.
    """

    def __init__(self, queries: int, side: int, classes: int, hidden: int,
                 dropout: float = 0.0, by_class: bool = False) -> None:
        super().__init__()
        self.side, self.classes, self.by_class = side, classes, by_class
        self.query_logits = nn.Parameter(torch.randn(queries, side * side) / QUERY_GAIN)
        if by_class:
            self.class_mlp = mlp([2 * classes * queries, 2 * hidden, 2 * hidden], dropout)
        else:
            self.class_mlp = mlp([queries, hidden, hidden], dropout)
        self.out_dim = 2 * hidden

    @torch.no_grad()
    def init_images(self, images: Tensor) -> None:
        """Start the queries from these images (``(Q, side²)`` in [0, 1], e.g. train digits)."""
        p = images.reshape(self.query_logits.shape).clamp(0.02, 0.98)
        self.query_logits.copy_(torch.logit(p) / QUERY_GAIN)

    def images(self) -> Tensor:
        return torch.sigmoid(self.query_logits * QUERY_GAIN)

    def forward(self, batch: Batch, num_graphs: int, layout: GraphLayout | None = None
                ) -> Tensor:
        images = self.images()
        values = chain_activations(batch, num_graphs, images)
        if values is None:
            values = probe_activations(batch, num_graphs, images, layout)
        logits, present = output_logits(batch, num_graphs, values, self.classes)
        absent = ~present[..., None]
        logits = logits.clamp(-MAX_LOGIT, MAX_LOGIT).masked_fill(absent, -ABSENT)
        logp = torch.log_softmax(logits, dim=1).masked_fill(absent, 0.0)
        ok = (conv_probe_supported(batch, num_graphs) | probe_supported(batch, num_graphs))
        ok = ok & present.any(1)
        if self.by_class:
            # the class each query is answered with (no gradient) beside the log-probabilities:
            # accuracy is counted in answers, which a smooth log-probability blurs
            answers = F.one_hot(logits.argmax(1), self.classes).transpose(1, 2)
            table = torch.cat([logp, answers.to(logp.dtype).masked_fill(absent, 0.0)], dim=1)
            return torch.where(ok[:, None], self.class_mlp(table.flatten(1)), 0.0)
        z = self.class_mlp(logp)  # (graphs, classes, hidden): one profile per class
        top = z.masked_fill(absent, -ABSENT).max(1).values
        mean = z.masked_fill(absent, 0.0).sum(1) / present.sum(1, keepdim=True).clamp_min(1)
        return torch.where(ok[:, None], torch.cat([top, mean], dim=-1), 0.0)
