"""Message passing on parameter graphs: node and edge updates with edge-modulated messages.

Two equivalent ways to run :class:`NGConv`:

* on any batch, with gathers and scatters over the edge list (``edge_index``);
* on a batch whose graphs share one architecture (the common case: a zoo's networks share
  a layout), described by a :class:`GraphLayout`. A parameter graph's edges come in blocks
  (``graphs.to_graph`` writes each weight tensor as a dense dst x src block in row-major
  order, each identity map as a diagonal), so node features are viewed as
  ``(graphs, nodes, H)`` and every block's messages are formed by broadcasting the two
  endpoint terms and reduced along a tensor dimension: no index tensors, no scatter, and
  per-edge temporaries only one block (optionally one chunk of graphs) at a time.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import MultiAggregation

#: aggregators the block path computes itself (from a sum, a sum of squares, a max, a min)
BLOCK_AGGREGATORS = frozenset({"sum", "mean", "max", "min", "var", "std"})
#: type ids (graphs.NODE_TYPES, EDGE_TYPES) are below this
TYPE_TABLE_SIZE = 256


_TYPE_TABLES: dict[tuple[tuple[int, ...], torch.device], Tensor] = {}


def type_mask(types: Tensor, ids: tuple[int, ...]) -> Tensor:
    """``torch.isin(types, ids)`` for small non-negative type ids, as a lookup in a bool
    table (a fifth of ``isin``'s time on a batch's edge list)."""
    key = (ids, types.device)
    table = _TYPE_TABLES.get(key)
    if table is None:
        table = torch.zeros(TYPE_TABLE_SIZE, dtype=torch.bool)
        table[list(ids)] = True
        table = _TYPE_TABLES.setdefault(key, table.to(types.device))
    return table[types]


def mlp(dims: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def both_directions(edge_index: Tensor) -> Tensor:
    """Every edge forwards, then every edge backwards (``NGConv`` sends messages both ways)."""
    return torch.cat([edge_index, edge_index.flip(0)], dim=1)


# --- one architecture per batch --------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """Edges ``e0 .. e0 + size`` of every graph of a batch.

    Dense (``diagonal`` False): edge ``e0 + r * cols + c`` runs from node ``s0 + c`` to node
    ``d0 + r`` (a weight tensor in row-major order). Diagonal: edge ``e0 + k`` runs from
    ``s0 + k`` to ``d0 + k`` (``rows == cols``; residual, norm and pairing edges).
    ``dst_layer``: the ``node_layer`` shared by all the destination nodes, or -1 if mixed.
    """

    e0: int
    rows: int
    cols: int
    d0: int
    s0: int
    diagonal: bool
    dst_layer: int = -1

    @property
    def size(self) -> int:
        return self.rows if self.diagonal else self.rows * self.cols


@dataclass(frozen=True)
class GraphLayout:
    """``num_graphs`` graphs with identical structure, ``num_nodes``/``num_edges`` each.

    ``in_degree``: per node of one graph, the messages it receives (both directions), as
    floats on the batch's device.
    """

    num_graphs: int
    num_nodes: int
    num_edges: int
    blocks: tuple[Block, ...]
    in_degree: Tensor


#: the most blocks a layout may have before the edge-list path is used instead (each block
#: costs a few Python-dispatched ops per layer)
MAX_BLOCKS = 256
_LAYOUTS: OrderedDict[tuple, tuple[tuple[Block, ...], Tensor] | None] = OrderedDict()
_LAYOUTS_LOCK = threading.Lock()
_NODE_KEYS = ("node_type", "node_act", "node_layer", "node_pos")


def _runs(edge_index: Tensor) -> list[tuple[int, int, int, int]] | None:
    """Maximal runs ``(e0, length, dst, src0)`` of edges with one dst and consecutive srcs
    (None: more than a layout of :data:`MAX_BLOCKS` blocks could need)."""
    src, dst = edge_index
    num = src.numel()
    brk = torch.ones(num, dtype=torch.bool)
    brk[1:] = (dst[1:] != dst[:-1]) | (src[1:] != src[:-1] + 1)
    starts = brk.nonzero()[:, 0]
    if starts.numel() > max(4 * MAX_BLOCKS, num // 2):
        return None
    lengths = torch.diff(starts, append=torch.tensor([num]))
    return list(zip(starts.tolist(), lengths.tolist(), dst[starts].tolist(),
                    src[starts].tolist(), strict=True))


def decompose(edge_index: Tensor, node_layer: Tensor) -> tuple[Block, ...] | None:
    """One graph's edges as dense and diagonal :class:`Block` s (None: too fragmented)."""
    if edge_index.shape[1] == 0:
        return ()
    runs = _runs(edge_index)
    if runs is None:
        return None
    layers = node_layer.tolist()
    blocks: list[Block] = []
    i = 0
    while i < len(runs):
        e0, length, d0, s0 = runs[i]
        rows, j = 1, i + 1
        if length == 1 and j < len(runs) and runs[j][1] == 1 and runs[j][2] == d0 + 1 \
                and runs[j][3] == s0 + 1:
            while j < len(runs) and runs[j][1] == 1 and runs[j][2] == d0 + rows \
                    and runs[j][3] == s0 + rows and runs[j][0] == e0 + rows:
                rows, j = rows + 1, j + 1
            diagonal, cols = True, rows
        else:
            while j < len(runs) and runs[j][1] == length and runs[j][3] == s0 \
                    and runs[j][2] == d0 + rows and runs[j][0] == e0 + rows * length:
                rows, j = rows + 1, j + 1
            diagonal, cols = False, length
        dl = set(layers[d0:d0 + rows])
        blocks.append(Block(e0, rows, cols, d0, s0, diagonal, dl.pop() if len(dl) == 1 else -1))
        if len(blocks) > MAX_BLOCKS:
            return None
        i = j
    return tuple(blocks)


def _in_degree(blocks: tuple[Block, ...], num_nodes: int) -> Tensor:
    deg = torch.zeros(num_nodes)
    for b in blocks:
        deg[b.d0:b.d0 + b.rows] += 1 if b.diagonal else b.cols
        deg[b.s0:b.s0 + b.cols] += 1 if b.diagonal else b.rows
    return deg


def graph_layout(batch: Batch) -> GraphLayout | None:
    """The :class:`GraphLayout` of ``batch`` if all its graphs share one structure, else None.

    Checks, on every call, that every graph has the same node count, the same local
    ``edge_index``, the same edge types and the same node types, activations, layers and
    positions as the first (one comparison over the edge list: no trust in how the batch
    was built). The block decomposition of a structure is cached.
    """
    num_graphs = int(batch.num_graphs)
    n_total, ei = int(batch.num_nodes), batch.edge_index
    if num_graphs == 0 or n_total % num_graphs or ei.shape[1] % num_graphs:
        return None
    n, e = n_total // num_graphs, ei.shape[1] // num_graphs
    ptr = getattr(batch, "ptr", None)
    if ptr is not None and bool((ptr.diff() != n).any()):
        return None
    offsets = torch.arange(num_graphs, device=ei.device) * n
    local = ei.view(2, num_graphs, e) - offsets[None, :, None]
    first = local[:, 0]
    if num_graphs > 1 and not bool((local == first[:, None]).all()):
        return None
    for key, per_graph in [*((k, n) for k in _NODE_KEYS), ("edge_type", e)]:
        v = getattr(batch, key, None)
        if v is not None and num_graphs > 1 and not bool(
                (v.view(num_graphs, per_graph) == v[:per_graph]).all()):
            return None
    layer = batch.node_layer[:n].cpu() if getattr(batch, "node_layer", None) is not None \
        else torch.zeros(n, dtype=torch.long)
    first_cpu = first.cpu()
    key = (n, e, ei.device.type, first_cpu.numpy().tobytes(), layer.numpy().tobytes())
    with _LAYOUTS_LOCK:  # inference sub-batches run in threads (models.runtime)
        if key in _LAYOUTS:
            _LAYOUTS.move_to_end(key)
            cached = _LAYOUTS[key]
        else:
            blocks = decompose(first_cpu, layer)
            cached = None if blocks is None else (blocks, _in_degree(blocks, n).to(ei.device))
            _LAYOUTS[key] = cached
            if len(_LAYOUTS) > 64:
                _LAYOUTS.popitem(last=False)
    if cached is None:
        return None
    return GraphLayout(num_graphs, n, e, cached[0], cached[1])


def slice_graphs(batch: Batch, layout: GraphLayout, start: int, stop: int) -> Batch:
    """Graphs ``start .. stop`` of a batch of one structure, as a batch of their own: node
    and edge rows are ranges (every graph has ``num_nodes``/``num_edges`` of them) and the
    indices are shifted, so no graph is taken apart and collated again."""
    n, m = layout.num_nodes, layout.num_edges
    out = Batch()
    for key, value in batch.items():
        if key == "num_nodes":
            out[key] = (stop - start) * n
        elif not isinstance(value, Tensor) or value.dim() == 0:
            out[key] = value
        elif key == "edge_index":
            out[key] = value[:, start * m:stop * m] - start * n
        elif key == "batch":
            out[key] = value[start * n:stop * n] - start
        elif key == "ptr":
            out[key] = value[start:stop + 1] - start * n
        elif batch.is_edge_attr(key):
            out[key] = value[start * m:stop * m]
        elif batch.is_node_attr(key):
            out[key] = value[start * n:stop * n]
        elif value.shape[0] == layout.num_graphs:  # one row per graph (targets)
            out[key] = value[start:stop]
        else:
            raise ValueError(f"cannot slice batch attribute {key!r} by graphs")
    out._num_graphs = stop - start
    return out


#: without autograd, a block's messages are formed for this many elements (graphs x block
#: edges x hidden) at a time, so the FiLM parameters and messages of a chunk stay in cache
#: while they are reduced
CHUNK_ELEMENTS = 1 << 17
#: the same on a GPU, where what matters is the number of kernel launches: chunks there
#: only bound the memory of one block's temporaries
GPU_CHUNK_ELEMENTS = 1 << 26


def _block_stats(edges: Tensor, weight: Tensor, bias: Tensor, direction: Tensor,
                 recv: Tensor, send: Tensor, block: Block,
                 stats: tuple[bool, bool, bool, bool],
                 masks: list[Tensor] | None = None) -> list[Tensor]:
    """One block's messages in both directions, reduced per receiver.

    ``edges`` ``(graphs, size, K)`` normalised edge features of the block, ``recv``/``send``
    ``(graphs, nodes, H)`` every node's ``msg_dst``/``msg_src`` term, ``weight``/``bias``
    the FiLM map, ``direction`` ``(2, 2H)`` its value on each direction's vector. Returns,
    for the forward direction (receivers: the block's dst nodes) then the backward one
    (its src nodes), the sum, sum of squares, max and min that ``stats`` asks for, each
    ``(graphs, receivers, H)``.

    The FiLM parameters are computed once for both directions (they differ by a constant
    per direction): the scale's constant is added per edge, the shift's after reducing
    (a shift moves a sum, a max and a min by a known amount). ``masks``: a list that
    receives, per direction, where each message equals its receiver's max (then min), for
    :class:`_LayerMessages`'s backward.
    """
    g, k, hid = edges.shape[0], edges.shape[-1], recv.shape[-1]
    flat = edges.reshape(-1, k)
    # scale and shift from separate products: each is contiguous, and each direction's
    # scale constant rides in its product's bias (adding it to a strided half of one
    # (E, 2H) product was the slowest op of the pass)
    w_scale, w_shift = weight[:hid].t(), weight[hid:].t()
    shift = torch.addmm(bias[hid:], flat, w_shift)
    d_rng, s_rng = slice(block.d0, block.d0 + block.rows), slice(block.s0, block.s0 + block.cols)
    if block.diagonal:
        shape = (g, block.rows, hid)
        ends = [(recv[:, d_rng], send[:, s_rng], -1, 1), (recv[:, s_rng], send[:, d_rng], -1, 1)]
    else:
        shape = (g, block.rows, block.cols, hid)
        ends = [(recv[:, d_rng, None], send[:, None, s_rng], 2, block.cols),
                (recv[:, None, s_rng], send[:, d_rng, None], 1, block.rows)]
    shift = shift.view(shape)
    grad = torch.is_grad_enabled()
    want_sum, want_sq, want_max, want_min = stats
    out: list[Tensor] = []
    for (r, s, dim, count), const in zip(ends, direction, strict=True):
        c_shift = const[hid:]
        scale = torch.addmm(bias[:hid] + const[:hid], flat, w_scale).view(shape)
        pre = nn.functional.silu(r + s, inplace=not grad)
        msg = torch.addcmul(shift, scale, pre)
        if dim < 0:  # diagonal: one message per receiver
            total = mx = mn = msg
            sq = msg * msg if want_sq else None
            if masks is not None:
                masks += [torch.ones_like(msg, dtype=torch.bool)] * (want_max + want_min)
        else:
            total = msg.sum(dim) if want_sum else None
            mx = msg.amax(dim) if want_max else None
            mn = msg.amin(dim) if want_min else None
            if masks is not None:
                masks += [msg == mx.unsqueeze(dim)] if want_max else []
                masks += [msg == mn.unsqueeze(dim)] if want_min else []
            # last, so that without autograd the messages can be squared in place
            sq = (msg * msg if grad else msg.square_()).sum(dim) if want_sq else None
        if want_sum:
            out.append(total + count * c_shift)
        if want_sq:
            out.append(sq + 2 * c_shift * total + count * c_shift * c_shift)
        if want_max:
            out.append(mx + c_shift)
        if want_min:
            out.append(mn + c_shift)
    return out


def _block_stats_into(edges: Tensor, w_scale: Tensor, w_shift: Tensor, b_scale: Tensor,
                      recv: Tensor, send: Tensor, block: Block,
                      kinds: list[int], outs: list[list[Tensor]]) -> None:
    """:func:`_block_stats` without autograd, for one chunk: writes the unshifted
    statistics (kinds 0-3: sum, sum of squares, max, min) of each direction into ``outs``,
    with no temporary the reduction does not need (the direction shifts and the shift's
    bias are applied once per block by the caller)."""
    g, k, hid = edges.shape[0], edges.shape[-1], recv.shape[-1]
    flat = edges.reshape(-1, k)
    d_rng, s_rng = _receivers(block)
    if block.diagonal:
        shape = (g, block.rows, hid)
        ends = [(recv[:, d_rng], send[:, s_rng], -1), (recv[:, s_rng], send[:, d_rng], -1)]
    else:
        shape = (g, block.rows, block.cols, hid)
        ends = [(recv[:, d_rng, None], send[:, None, s_rng], 2),
                (recv[:, None, s_rng], send[:, d_rng, None], 1)]
    # the shift's bias is left out here: it moves every statistic like a direction's shift
    shift = torch.mm(flat, w_shift).view(shape)
    for d, (r, s, dim) in enumerate(ends):
        pre = nn.functional.silu(torch.add(r, s), inplace=True)
        scale = torch.addmm(b_scale[d], flat, w_scale).view(shape)
        msg = torch.addcmul(shift, scale, pre, out=pre)
        for kind, out in zip(kinds, outs[d], strict=True):
            if dim < 0 and kind == 1:
                torch.mul(msg, msg, out=out)
            elif dim < 0:
                out.copy_(msg)
            elif kind == 0:
                torch.sum(msg, dim, out=out)
            elif kind == 2:
                torch.amax(msg, dim, out=out)
            elif kind == 3:
                torch.amin(msg, dim, out=out)
        if 1 in kinds and dim >= 0:  # last: squares the messages in place
            torch.sum(msg.square_(), dim, out=outs[d][kinds.index(1)])


def _chunks(num_graphs: int, block: Block, hidden: int, device: torch.device) -> list[slice]:
    """Graph ranges of at most :data:`CHUNK_ELEMENTS` message elements (at least one graph)."""
    limit = CHUNK_ELEMENTS if device.type == "cpu" else GPU_CHUNK_ELEMENTS
    step = max(1, limit // (block.size * hidden))
    return [slice(c, min(c + step, num_graphs)) for c in range(0, num_graphs, step)]


class _LayerMessages(torch.autograd.Function):
    """Every block's messages of one layer, reduced per receiver, with a hand-written
    backward that recomputes the messages chunk by chunk instead of keeping them.

    Autograd through :func:`_block_stats` keeps about ten per-edge tensors of ``H`` floats
    per direction for backward, and ``amax``'s backward compares every message with the
    max and counts ties; here only the inputs (normalised edges, node terms), the reduced
    statistics and, for max/min, a bool mask per message are kept, and the backward runs in
    cache-sized chunks like the inference pass. Ties for a max (or min) each get the whole
    gradient (autograd would split it; ties have measure zero for real-valued messages).

    Returns the accumulated statistics, one ``(graphs, nodes, H)`` tensor per kind in
    ``kinds`` (0 sum, 1 sum of squares, 2 max, 3 min; max/min -inf/+inf where no message).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx: Any, e: Tensor, weight: Tensor, bias: Tensor, direction: Tensor,
                recv: Tensor, send: Tensor, layout: GraphLayout,
                stats: tuple[bool, bool, bool, bool]) -> tuple[Tensor, ...]:
        g, n, m = layout.num_graphs, layout.num_nodes, layout.num_edges
        hid, k = recv.shape[-1], e.shape[-1]
        kinds = [i for i in range(4) if stats[i]]
        acc = [recv.new_zeros(g, n, hid) if i < 2 else
               recv.new_full((g, n, hid), -math.inf if i == 2 else math.inf) for i in kinds]
        e3 = e.view(g, m, k)
        local: list[list[Tensor]] = []  # per block and direction: its statistics
        masks: list[list[Tensor]] = []  # per block: max/min masks of both directions
        for b in layout.blocks:
            ranges = _receivers(b)
            block_out: list[Tensor] = [recv.new_empty(g, r.stop - r.start, hid)
                                       for r in ranges for _ in kinds]
            block_masks: list[Tensor] | None = None
            for c in _chunks(g, b, hid, e.device):
                chunk_masks: list[Tensor] = []
                out = _block_stats(e3[c, b.e0:b.e0 + b.size], weight, bias, direction,
                                   recv[c], send[c], b, stats, chunk_masks)
                for full, part in zip(block_out, out, strict=True):
                    full[c] = part
                if block_masks is None:
                    block_masks = [recv.new_empty((g, *t.shape[1:]), dtype=torch.bool)
                                   for t in chunk_masks]
                for full, part in zip(block_masks, chunk_masks, strict=True):
                    full[c] = part
            for i, o in enumerate(block_out):
                kind, view = kinds[i % len(kinds)], acc[i % len(kinds)][:, ranges[i // len(kinds)]]
                if kind < 2:
                    view.add_(o)
                elif kind == 2:
                    torch.maximum(view, o, out=view)
                else:
                    torch.minimum(view, o, out=view)
            local.append(block_out)
            masks.append(block_masks or [])
        ctx.save_for_backward(e, weight, bias, direction, recv, send, *acc)
        ctx.layout, ctx.stats, ctx.local, ctx.masks = layout, stats, local, masks
        return tuple(acc)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        e, weight, bias, direction, recv, send, *acc = ctx.saved_tensors
        layout, stats = ctx.layout, ctx.stats
        g, m = layout.num_graphs, layout.num_edges
        hid, k = recv.shape[-1], e.shape[-1]
        kinds = [i for i in range(4) if stats[i]]
        grad = {kind: gr for kind, gr in zip(kinds, grads, strict=True) if gr is not None}
        final = dict(zip(kinds, acc, strict=True))
        g_e = torch.zeros_like(e).view(g, m, k)
        g_w, g_b = torch.zeros_like(weight), torch.zeros_like(bias)
        g_dir = torch.zeros_like(direction)
        g_recv, g_send = torch.zeros_like(recv), torch.zeros_like(send)
        e3 = e.view(g, m, k)
        w_scale, w_shift = weight[:hid], weight[hid:]
        for b, block_out, block_masks in zip(layout.blocks, ctx.local, ctx.masks, strict=True):
            ranges = _receivers(b)
            # node-level factors per direction: d(output)/d(message) pieces
            factors = []
            for d, rng in enumerate(ranges):
                outs = dict(zip(kinds, block_out[d * len(kinds):(d + 1) * len(kinds)],
                                strict=True))
                count = (1 if b.diagonal else (b.cols if d == 0 else b.rows))
                g_s = grad[0][:, rng] if 0 in grad else None
                g_q = grad[1][:, rng] if 1 in grad else None
                g_mx = (grad[2][:, rng] * (outs[2] == final[2][:, rng])) if 2 in grad else None
                g_mn = (grad[3][:, rng] * (outs[3] == final[3][:, rng])) if 3 in grad else None
                # the shift constant moved each output: sum by count, sum of squares by
                # 2 * (shifted sum), max and min by 1
                c_grad = torch.zeros(hid, dtype=e.dtype, device=e.device)
                for gr, scale in ((g_s, count), (g_q, None), (g_mx, 1), (g_mn, 1)):
                    if gr is None:
                        continue
                    c_grad += (gr * (2 * outs[0] if scale is None else scale)).sum((0, 1))
                g_dir[d, hid:] += c_grad
                mask_list = block_masks[d * (2 in kinds) + d * (3 in kinds):]
                mx_mask = mask_list[0] if 2 in kinds else None
                mn_mask = mask_list[1 if 2 in kinds else 0] if 3 in kinds else None
                factors.append((g_s, g_q, g_mx, g_mn, mx_mask, mn_mask))
            for c in _chunks(g, b, hid, e.device):
                _block_backward(e3[c, b.e0:b.e0 + b.size], w_scale, w_shift, bias, direction,
                                recv[c], send[c], b, factors, c, g_e[c, b.e0:b.e0 + b.size],
                                g_w, g_b, g_dir, g_recv[c], g_send[c])
        return g_e.view_as(e), g_w, g_b, g_dir, g_recv, g_send, None, None


def _receivers(block: Block) -> list[slice]:
    """The receivers of a block's forward (its dst nodes) and backward (src) messages."""
    return [slice(block.d0, block.d0 + block.rows), slice(block.s0, block.s0 + block.cols)]


def _block_backward(edges: Tensor, w_scale: Tensor, w_shift: Tensor, bias: Tensor,
                    direction: Tensor, recv: Tensor, send: Tensor, block: Block,
                    factors: list[tuple], c: slice, g_edges: Tensor, g_w: Tensor,
                    g_b: Tensor, g_dir: Tensor, g_recv: Tensor, g_send: Tensor) -> None:
    """One chunk of :class:`_LayerMessages`'s backward: recompute, then accumulate grads."""
    g, k, hid = edges.shape[0], edges.shape[-1], recv.shape[-1]
    flat = edges.reshape(-1, k)
    d_rng, s_rng = _receivers(block)
    if block.diagonal:
        shape = (g, block.rows, hid)
        ends = [(d_rng, s_rng, None, None), (s_rng, d_rng, None, None)]
    else:
        shape = (g, block.rows, block.cols, hid)
        # (receiver slice, sender slice, dim the receiver term broadcasts over, sender's)
        ends = [(d_rng, s_rng, 2, 1), (s_rng, d_rng, 1, 2)]
    shift = torch.addmm(bias[hid:], flat, w_shift.t()).view(shape)
    g_shift = torch.zeros(shape, dtype=edges.dtype, device=edges.device)
    g_flat = torch.zeros_like(flat)
    for d, ((r_rng, s_rng_, r_dim, s_dim), fac) in enumerate(zip(ends, factors, strict=True)):
        g_s, g_q, g_mx, g_mn, mx_mask, mn_mask = fac
        c_shift = direction[d, hid:]
        scale = torch.addmm(bias[:hid] + direction[d, :hid], flat, w_scale.t()).view(shape)
        r, s = recv[:, r_rng], send[:, s_rng_]
        if r_dim is not None:
            r, s = r.unsqueeze(r_dim), s.unsqueeze(s_dim)
        pre = r + s
        act = nn.functional.silu(pre)
        msg = torch.addcmul(shift, scale, act)

        def node(t: Tensor, dim: int | None = r_dim) -> Tensor:
            t = t[c]
            return t if dim is None else t.unsqueeze(dim)

        g_msg = torch.zeros(shape, dtype=edges.dtype, device=edges.device)
        if g_s is not None:
            g_msg += node(g_s)
        if g_q is not None:
            g_msg.addcmul_(msg + c_shift, node(g_q), value=2)
        if g_mx is not None:
            g_msg.addcmul_(mx_mask[c], node(g_mx))
        if g_mn is not None:
            g_msg.addcmul_(mn_mask[c], node(g_mn))
        g_shift += g_msg
        g_scale = (g_msg * act).reshape(-1, hid)
        g_w[:hid] += g_scale.t() @ flat
        col = g_scale.sum(0)
        g_b[:hid] += col
        g_dir[d, :hid] += col
        g_flat.addmm_(g_scale, w_scale)
        g_pre = torch.ops.aten.silu_backward(g_msg.mul_(scale), pre)
        if r_dim is None:
            g_recv[:, r_rng] += g_pre
            g_send[:, s_rng_] += g_pre
        else:
            g_recv[:, r_rng] += g_pre.sum(r_dim)
            g_send[:, s_rng_] += g_pre.sum(s_dim)
    g_shift = g_shift.view(-1, hid)
    g_w[hid:] += g_shift.t() @ flat
    g_b[hid:] += g_shift.sum(0)
    g_flat.addmm_(g_shift, w_shift)
    g_edges += g_flat.view(g_edges.shape)


def _add_endpoints(upd: Tensor, hs: Tensor, hd: Tensor, block: Block) -> None:
    """``upd`` (a block's ``(graphs, size, K)`` edge rows) += its src and dst node terms."""
    g, k = upd.shape[0], upd.shape[-1]
    src = hs[:, block.s0:block.s0 + block.cols]
    dst = hd[:, block.d0:block.d0 + block.rows]
    if block.diagonal:
        upd.add_(src).add_(dst)
    else:
        upd.view(g, block.rows, block.cols, k).add_(src[:, None]).add_(dst[:, :, None])


def block_order(layout: GraphLayout, device: torch.device) -> Tensor:
    """Block-major order of a batch's edge rows: block by block, each block's edges of
    graph 0, then of graph 1, ... (``(graphs * edges,)`` indices into the batch's edges).

    Edge features kept in this order (:meth:`NGConv.forward_fused`) make every block of
    every graph range a contiguous ``(graphs, size, K)`` tensor, so a chunk of graphs of a
    block is read and written without strided copies.
    """
    g, m = layout.num_graphs, layout.num_edges
    base = torch.arange(g, device=device)[:, None] * m
    if not layout.blocks:
        return torch.arange(g * m, device=device)
    return torch.cat([(base + torch.arange(b.e0, b.e0 + b.size, device=device)).flatten()
                      for b in layout.blocks])


def add_to_blocks(edges: Tensor, layout: GraphLayout, values: Tensor) -> Tensor:
    """``edges`` (block order, :func:`block_order`) plus ``values``, one graph's per-edge rows
    (every graph of a layout has the same edge types), added in place block by block:
    broadcast over the graphs instead of gathered for every edge of the batch."""
    g, start = layout.num_graphs, 0
    for b in layout.blocks:
        rows = g * b.size
        edges[start:start + rows].view(g, b.size, -1).add_(values[b.e0:b.e0 + b.size])
        start += rows
    return edges


def _accumulate(acc: list[Tensor], kinds: list[int], raw_stats: list[list[Tensor]],
                block: Block, shifts: Tensor) -> None:
    """Add one block's unshifted per-direction statistics into the layer's ``acc``, with
    each direction's shift constant (``shifts[d]``) applied per receiver, not per edge."""
    for d, (rng, stats_d) in enumerate(zip(_receivers(block), raw_stats, strict=True)):
        count = 1 if block.diagonal else (block.cols if d == 0 else block.rows)
        shift = shifts[d]
        got = dict(zip(kinds, stats_d, strict=True))
        for kind, a in zip(kinds, acc, strict=True):
            view = a[:, rng]
            if kind == 0:
                view.add_(got[0]).add_(shift, alpha=count)
            elif kind == 1:  # sum of (m + c)^2 = sum m^2 + 2 c sum m + count c^2
                view.add_(got[1]).addcmul_(got[0], shift, value=2)
                view.add_(shift * shift, alpha=count)
            else:
                got[kind].add_(shift)
                fn = torch.maximum if kind == 2 else torch.minimum
                fn(view, got[kind], out=view)


def _layer_norm(x: Tensor, eps: float) -> Tensor:
    """``layer_norm`` without affine over the last dim of a 2-D ``x``, with the row means
    as matrix-vector products: twice as fast as ``layer_norm``'s kernel on rows of 16."""
    mean_of = x.new_full((x.shape[1], 1), 1 / x.shape[1])
    centred = x - x @ mean_of
    var = torch.mm(centred * centred, mean_of)
    return centred.mul_(var.add_(eps).rsqrt_())


def _fused_chunk(raw: Tensor, eps: float, w_cat: Tensor, b_cat: Tensor, delta: Tensor,
                 recv: Tensor, send: Tensor, block: Block, kinds: list[int],
                 outs: list[list[Tensor]], edge_terms: tuple[Tensor, ...] | None) -> None:
    """One chunk of :meth:`NGConv.forward_fused`: ``raw`` ``(graphs, size, K)`` edges of one
    block (contiguous), normalised once, then ONE product gives every per-edge linear term
    (``w_cat``: FiLM scale and shift and the edge MLP's first layer, with the norm's affine
    and ``edge_in`` folded in). Messages of both directions are formed in one buffer and
    reduced into ``outs`` (unshifted, as :func:`_block_stats_into`); ``edge_terms``
    ``(src term, dst term, second-layer weight^T, bias)`` finish the edge update in place
    (``raw`` += MLP)."""
    g, k, hid = raw.shape[0], raw.shape[-1], recv.shape[-1]
    flat = raw.reshape(-1, k)
    y = torch.addmm(b_cat, _layer_norm(flat, eps), w_cat)
    d_rng, s_rng = _receivers(block)
    if block.diagonal:
        yv = y.view(g, block.rows, -1)
        ends = [(recv[:, d_rng], send[:, s_rng], -1), (recv[:, s_rng], send[:, d_rng], -1)]
    else:
        yv = y.view(g, block.rows, block.cols, -1)
        ends = [(recv[:, d_rng, None], send[:, None, s_rng], 2),
                (recv[:, None, s_rng], send[:, d_rng, None], 1)]
    scale, shift = yv[..., :hid], yv[..., hid:2 * hid]
    buf: Tensor | None = None
    for d, (r, s, dim) in enumerate(ends):
        if d == 1:
            scale.add_(delta)  # the backward direction's scale differs by a constant
        buf = torch.add(r, s) if buf is None else torch.add(r, s, out=buf)
        pre = nn.functional.silu(buf, inplace=True)
        msg = torch.addcmul(shift, scale, pre, out=pre)
        for kind, out in zip(kinds, outs[d], strict=True):
            if dim < 0 and kind == 1:
                torch.mul(msg, msg, out=out)
            elif dim < 0:
                out.copy_(msg)
            elif kind == 0:
                torch.sum(msg, dim, out=out)
            elif kind == 2:
                torch.amax(msg, dim, out=out)
            elif kind == 3:
                torch.amin(msg, dim, out=out)
        if 1 in kinds and dim >= 0:  # last: squares the messages in place
            torch.sum(msg.square_(), dim, out=outs[d][kinds.index(1)])
    if edge_terms is None:
        return
    hs, hd, w2, b2 = edge_terms
    src, dst = hs[:, s_rng], hd[:, d_rng]
    # out of place first: elementwise ops on the strided K-wide slice of y are ~5x slower
    # than on a contiguous tensor
    if block.diagonal:
        u = torch.add(yv[..., 2 * hid:], src).add_(dst)
    else:
        u = torch.add(yv[..., 2 * hid:], src[:, None]).add_(dst[:, :, None])
    u = nn.functional.silu(u, inplace=True)
    # in place: the chunk was read at the start and is still in cache (an out= product into
    # a fresh buffer first copied the bias into memory nothing had touched yet)
    flat.addmm_(u.reshape(-1, k), w2).add_(b2)


# --- the layer -------------------------------------------------------------------------------


class NGConv(MessagePassing):
    r"""The neural-graph layer of "Graph Neural Networks for Learning Equivariant
    Representations of Neural Networks" (Kofinas et al., ICLR 2024), on sparse edge lists.

    Messages are FiLM-modulated by the edge, aggregated with several aggregators, and the
    edge features are updated from their endpoints:

    .. math::
        \mathbf{m}_{j \to i} = \gamma(\mathbf{e}_{ji}) \odot
            \sigma(W_d \mathbf{x}_i + W_s \mathbf{x}_j) + \beta(\mathbf{e}_{ji})

        \mathbf{x}_i' = \mathbf{x}_i + \mathrm{MLP}\big([\mathbf{x}_i,
            \bigoplus_{j \in \mathcal{N}(i)} \mathbf{m}_{j \to i}]\big)

        \mathbf{e}_{ji}' = \mathbf{e}_{ji} + \mathrm{MLP}\big(W_e \mathbf{e}_{ji}
            + W_s \mathbf{x}_j + W_d \mathbf{x}_i\big)

    where :math:`\sigma` is SiLU (a one-layer MLP of :math:`[\mathbf{x}_i, \mathbf{x}_j]`
    whose linear part is applied per node, not per edge: parameter graphs have 10-100×
    more edges than nodes), :math:`\bigoplus` concatenates the aggregators (mean, max,
    min, std by default), each residual branch is pre-normalised with LayerNorm, and every
    edge also carries a message backwards (a learned direction vector added to its features), so
    information flows from inputs to outputs and back. All weights are shared across
    nodes and edges, so the layer is equivariant to any relabelling of the graph.

    With a :class:`GraphLayout` (all graphs of the batch share one structure) and
    aggregators in :data:`BLOCK_AGGREGATORS`, the same function is computed block by block
    (see the module docstring). ``checkpoint_messages`` (default True) then has a training
    pass keep no per-edge FiLM parameter or message for backward: :class:`_LayerMessages`
    recomputes them there, chunk by chunk, which is also faster than autograd's backward
    through them (bench/metanet_speed). False keeps them (plain autograd, the reference the
    tests compare with).

    Args:
        hidden: node feature width.
        edge_hidden: edge feature width.
        aggregators: names understood by :class:`torch_geometric.nn.aggr.MultiAggregation`.
        dropout: dropout inside the update MLPs.
        update_edges: whether to compute :math:`\mathbf{e}'` (the last layer of a model that
            reads out nodes only has no use for it).
    """

    def __init__(self, hidden: int, edge_hidden: int,
                 aggregators: tuple[str, ...] = ("mean", "max", "min", "std"),
                 dropout: float = 0.0, update_edges: bool = True) -> None:
        super().__init__(aggr=MultiAggregation(list(aggregators), mode="cat"))
        self.hidden, self.edge_hidden = hidden, edge_hidden
        self.aggregators = tuple(aggregators)
        self.node_norm = nn.LayerNorm(hidden)
        self.edge_norm = nn.LayerNorm(edge_hidden)
        self.direction = nn.Parameter(torch.zeros(2, edge_hidden))
        self.msg_dst = nn.Linear(hidden, hidden)
        self.msg_src = nn.Linear(hidden, hidden, bias=False)
        self.film = nn.Linear(edge_hidden, 2 * hidden)
        self.update_mlp = mlp([hidden + len(aggregators) * hidden, hidden, hidden], dropout)
        self.update_edges = update_edges
        if update_edges:
            self.edge_in = nn.Linear(edge_hidden, edge_hidden)
            self.edge_src = nn.Linear(hidden, edge_hidden, bias=False)
            self.edge_dst = nn.Linear(hidden, edge_hidden, bias=False)
            self.edge_mlp = mlp([edge_hidden, edge_hidden, edge_hidden], dropout)
        self.checkpoint_messages = True
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.LayerNorm)):
                m.reset_parameters()
        nn.init.normal_(self.direction, std=0.1)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor,
                both: Tensor | None = None,
                layout: GraphLayout | None = None) -> tuple[Tensor, Tensor]:
        """``both``: :func:`both_directions` of ``edge_index``, when the caller has it (it is
        the same for every layer). ``layout``: the batch's :class:`GraphLayout`, when all its
        graphs share one structure (then ``edge_index`` and ``both`` are not read)."""
        if layout is not None and BLOCK_AGGREGATORS.issuperset(self.aggregators):
            return self._forward_blocks(x, edge_attr, layout)
        h, e = self.node_norm(x), self.edge_norm(edge_attr)
        if both is None:
            both = both_directions(edge_index)
        # FiLM is linear in the edge: film(e + d) = film(e) + W d. Each direction's W d joins
        # the bias, and one batched matmul writes both directions' (2E, 2H) parameters
        # (adding the rows to one product and concatenating cost 1.7x as much).
        w = self.film.weight.t()
        bias = (self.direction @ w + self.film.bias)[:, None, :]
        film = torch.baddbmm(bias, e.expand(2, *e.shape), w.expand(2, *w.shape))
        film = film.view(-1, film.shape[-1])
        agg = self.propagate(both, a=self.msg_dst(h), b=self.msg_src(h), film=film)
        x = x + self.update_mlp(torch.cat([h, agg], dim=-1))
        if not self.update_edges:
            return x, edge_attr
        src, dst = edge_index
        e_new = self.edge_in(e) + self.edge_src(h)[src] + self.edge_dst(h)[dst]
        return x, edge_attr + self.edge_mlp(e_new)

    def message(self, a_i: Tensor, b_j: Tensor, film: Tensor) -> Tensor:
        scale, shift = film.chunk(2, dim=-1)
        return torch.addcmul(shift, scale, nn.functional.silu(a_i + b_j))

    def _checkpointing(self) -> bool:
        return bool(self.checkpoint_messages) and torch.is_grad_enabled()

    def _forward_blocks(self, x: Tensor, edge_attr: Tensor,
                        layout: GraphLayout) -> tuple[Tensor, Tensor]:
        g, n, m = layout.num_graphs, layout.num_nodes, layout.num_edges
        hid, k = self.hidden, self.edge_hidden
        h = self.node_norm(x)
        recv = self.msg_dst(h).view(g, n, hid)
        send = self.msg_src(h).view(g, n, hid)
        weight = self.film.weight
        direction = self.direction @ weight.t()  # (2, 2H): FiLM is linear in the edge
        aggs = set(self.aggregators)
        stats = (bool(aggs & {"sum", "mean", "var", "std"}), bool(aggs & {"var", "std"}),
                 "max" in aggs, "min" in aggs)
        kinds = [i for i in range(4) if stats[i]]
        acc = [x.new_zeros(g, n, hid) if i < 2 else
               x.new_full((g, n, hid), -math.inf if i == 2 else math.inf) for i in kinds]
        if torch.is_grad_enabled():
            agg, e = self._blocks_autograd(edge_attr, layout, recv, send, direction, stats,
                                           kinds, acc)
            x = x + self.update_mlp(torch.cat([h, agg.view(g * n, -1)], dim=-1))
            if not self.update_edges:
                return x, edge_attr
            e_new = self.edge_in(e).view(g, m, k)
            hs, hd = self.edge_src(h).view(g, n, k), self.edge_dst(h).view(g, n, k)
            for b in layout.blocks:
                _add_endpoints(e_new[:, b.e0:b.e0 + b.size], hs, hd, b)
            return x, edge_attr + self.edge_mlp(e_new.view(g * m, k))
        # float32 under autocast too: the statistics are written into float32 buffers, and
        # sums of squares of bfloat16 messages lose the variance (as in _LayerMessages)
        with torch.autocast(x.device.type, enabled=False):
            agg, e_out = self._blocks_chunked(h.float(), edge_attr.float(), layout,
                                              recv.float(), send.float(), direction.float(),
                                              stats, kinds, [a.float() for a in acc])
        x = x + self.update_mlp(torch.cat([h, agg.view(g * n, -1)], dim=-1))
        return x, e_out

    def _blocks_autograd(self, edge_attr: Tensor, layout: GraphLayout,
                         recv: Tensor, send: Tensor, direction: Tensor,
                         stats: tuple[bool, bool, bool, bool], kinds: list[int],
                         acc: list[Tensor]) -> tuple[Tensor, Tensor]:
        """The aggregated messages and the normalised edges: with ``checkpoint_messages``
        through :class:`_LayerMessages`, else whole blocks through autograd."""
        g, m, k = layout.num_graphs, layout.num_edges, self.edge_hidden
        e = self.edge_norm(edge_attr)
        if self._checkpointing():
            acc = list(_LayerMessages.apply(e, self.film.weight, self.film.bias, direction,
                                            recv, send, layout, stats))
            return self._finish(dict(zip(kinds, acc, strict=True)), layout.in_degree), e
        e3 = e.view(g, m, k)
        nstats = len(kinds)
        for b in layout.blocks:
            edges = e3[:, b.e0:b.e0 + b.size]
            ranges = _receivers(b)
            out = _block_stats(edges, self.film.weight, self.film.bias, direction, recv, send,
                               b, stats)
            # out of place (node-sized copies): max/min keep their inputs for backward
            for i, o in enumerate(out):
                j, kind, rng = i % nstats, kinds[i % nstats], ranges[i // nstats]
                old = acc[j][:, rng]
                new = (old + o if kind < 2 else torch.maximum(old, o) if kind == 2
                       else torch.minimum(old, o))
                acc[j] = acc[j].slice_scatter(new, 1, rng.start, rng.stop)
        return self._finish(dict(zip(kinds, acc, strict=True)), layout.in_degree), e

    def _blocks_chunked(self, h: Tensor, edge_attr: Tensor, layout: GraphLayout,
                        recv: Tensor, send: Tensor, direction: Tensor,
                        stats: tuple[bool, bool, bool, bool], kinds: list[int],
                        acc: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Without autograd: a few graphs of one block at a time, the whole per-edge path
        (edge norm, FiLM, messages, their reduction, the edge update) while the chunk is in
        cache, reductions accumulated in place, updated edges written into one buffer."""
        g, n, m = layout.num_graphs, layout.num_nodes, layout.num_edges
        hid, k = self.hidden, self.edge_hidden
        e3 = edge_attr.view(g, m, k)
        if self.update_edges:
            e_out = torch.empty_like(edge_attr)
            out3 = e_out.view(g, m, k)
            hs, hd = self.edge_src(h).view(g, n, k), self.edge_dst(h).view(g, n, k)
        w_scale, w_shift = self.film.weight[:hid].t(), self.film.weight[hid:].t()
        b_scale = self.film.bias[:hid] + direction[:, :hid]  # (2, H): per direction
        for b in layout.blocks:
            ranges = _receivers(b)
            # raw (unshifted) statistics of each direction, written chunk by chunk
            raw_stats = [[h.new_empty(g, r.stop - r.start, hid) for _ in kinds] for r in ranges]
            for c in _chunks(g, b, hid, edge_attr.device):
                raw = e3[c, b.e0:b.e0 + b.size]
                edges = self.edge_norm(raw)
                _block_stats_into(edges, w_scale, w_shift, b_scale, recv[c], send[c], b, kinds,
                                  [[t[c] for t in d] for d in raw_stats])
                if self.update_edges:
                    upd = self.edge_in(edges)
                    _add_endpoints(upd, hs[c], hd[c], b)
                    torch.add(raw, self.edge_mlp(upd), out=out3[c, b.e0:b.e0 + b.size])
            _accumulate(acc, kinds, raw_stats, b, direction[:, hid:] + self.film.bias[hid:])
        agg = self._finish(dict(zip(kinds, acc, strict=True)), layout.in_degree)
        return agg, e_out if self.update_edges else edge_attr

    def fusable(self) -> bool:
        """Whether :meth:`forward_fused` computes this layer's function: block aggregators
        and no active dropout (it folds the edge MLP's first layer into one product)."""
        return BLOCK_AGGREGATORS.issuperset(self.aggregators) and not (
            self.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in self.modules()))

    @torch.no_grad()
    def forward_fused(self, x: Tensor, edges: Tensor,
                      layout: GraphLayout) -> tuple[Tensor, Tensor]:
        """Inference with edge features in :func:`block_order` (returned in that order too,
        updated in place: ``edges`` is consumed): the function of :meth:`forward` on a
        layout, up to float rounding.

        Every per-edge linear map is folded into one ``K x (2H + K)`` product per chunk: the
        edge norm's affine into FiLM and ``edge_in``, ``edge_in`` and the endpoint terms into
        the edge MLP's first layer (whose node-level parts are computed per node), the
        direction vectors into per-direction constants. Per edge that is 40% fewer
        multiply-adds than FiLM, ``edge_in`` and the MLP apart, one edge norm instead of
        one per direction-and-use, and no strided copy of a block (bench/metanet_speed).
        """
        g, n = layout.num_graphs, layout.num_nodes
        hid, k = self.hidden, self.edge_hidden
        with torch.autocast(x.device.type, enabled=False):
            x, edges = x.float(), edges.float()
            h = self.node_norm(x)
            recv = self.msg_dst(h).view(g, n, hid)
            send = self.msg_src(h).view(g, n, hid)
            gamma, beta = self.edge_norm.weight, self.edge_norm.bias
            wf = self.film.weight
            film_b = wf @ beta + self.film.bias  # (2H,)
            dirs = self.direction @ wf.t()  # (2, 2H): FiLM of each direction's vector
            parts, biases = [wf * gamma], [film_b[:hid] + dirs[0, :hid], x.new_zeros(hid)]
            edge_terms = None
            if self.update_edges:
                l1, l2 = self.edge_mlp[0], self.edge_mlp[-1]
                parts.append(l1.weight @ (self.edge_in.weight * gamma))
                biases.append(x.new_zeros(k))
                b_in = self.edge_in.weight @ beta + self.edge_in.bias
                hs = (h @ (l1.weight @ self.edge_src.weight).t()).view(g, n, k)
                hd = torch.addmm(l1.weight @ b_in + l1.bias, h,
                                 (l1.weight @ self.edge_dst.weight).t()).view(g, n, k)
                edge_terms = (hs, hd, l2.weight.t(), l2.bias)
            w_cat = torch.cat(parts).t().contiguous()
            b_cat = torch.cat(biases)
            delta = dirs[1, :hid] - dirs[0, :hid]
            shifts = film_b[hid:] + dirs[:, hid:]  # (2, H): per direction, after reducing
            aggs = set(self.aggregators)
            stats = (bool(aggs & {"sum", "mean", "var", "std"}), bool(aggs & {"var", "std"}),
                     "max" in aggs, "min" in aggs)
            kinds = [i for i in range(4) if stats[i]]
            acc = [x.new_zeros(g, n, hid) if i < 2 else
                   x.new_full((g, n, hid), -math.inf if i == 2 else math.inf) for i in kinds]
            start = 0
            for b in layout.blocks:
                rows = g * b.size
                block_in = edges[start:start + rows].view(g, b.size, k)
                start += rows
                raw_stats = [[x.new_empty(g, r.stop - r.start, hid) for _ in kinds]
                             for r in _receivers(b)]
                for c in _chunks(g, b, hid, x.device):
                    _fused_chunk(block_in[c], self.edge_norm.eps, w_cat, b_cat, delta,
                                 recv[c], send[c], b, kinds,
                                 [[t[c] for t in d] for d in raw_stats],
                                 None if edge_terms is None else
                                 (edge_terms[0][c], edge_terms[1][c], *edge_terms[2:]))
                _accumulate(acc, kinds, raw_stats, b, shifts)
            # the update MLP's first layer as one product per input part: no (nodes, width)
            # concatenation of h and the aggregators (two copies of every node row per layer)
            parts = self._aggregates(dict(zip(kinds, acc, strict=True)), layout.in_degree)
            first = self.update_mlp[0]
            w = first.weight
            z = torch.addmm(first.bias, h, w[:, :hid].t())
            for i, part in enumerate(parts, start=1):
                z.addmm_(part.reshape(g * n, hid), w[:, i * hid:(i + 1) * hid].t())
            x = x + self.update_mlp[1:](z)
        return x, edges

    def _finish(self, acc: dict[int, Tensor], degree: Tensor) -> Tensor:
        """The aggregators from the accumulated statistics, as torch_geometric defines them
        (empty neighbourhoods give 0; std clamps the variance at 1e-5 and zeroes it there),
        side by side in the aggregators' order."""
        return torch.cat(self._aggregates(acc, degree), dim=-1)

    def _aggregates(self, acc: dict[int, Tensor], degree: Tensor) -> list[Tensor]:
        """:meth:`_finish`'s parts, one per aggregator."""
        cnt = degree.to(acc[next(iter(acc))].dtype)[None, :, None]
        has = cnt > 0
        mean = acc[0] / cnt.clamp(min=1) if 0 in acc else None
        outs: list[Tensor] = []
        for name in self.aggregators:
            if name == "sum":
                outs.append(acc[0])
            elif name == "mean":
                outs.append(mean)
            elif name in ("var", "std"):
                var = acc[1] / cnt.clamp(min=1) - mean * mean
                if name == "var":
                    outs.append(var)
                else:
                    std = var.clamp(min=1e-5).sqrt()
                    outs.append(std.masked_fill(std <= math.sqrt(1e-5), 0.0))
            elif name == "max":
                outs.append(torch.where(has, acc[2], 0.0))
            else:
                outs.append(torch.where(has, acc[3], 0.0))
        return outs

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden}, edge={self.edge_hidden})"
