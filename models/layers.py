"""Message passing on parameter graphs: node and edge updates with edge-modulated messages."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import MultiAggregation


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
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.LayerNorm)):
                m.reset_parameters()
        nn.init.normal_(self.direction, std=0.1)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor,
                both: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``both``: :func:`both_directions` of ``edge_index``, when the caller has it (it is
        the same for every layer)."""
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

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.hidden}, edge={self.edge_hidden})"
