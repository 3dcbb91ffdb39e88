"""Activation matching: per-group assignment on activation correlations over data.

Both networks are rebuilt with ``graphs.build_module`` and run on the same inputs. Every
op-graph value that lives in a permutable group (pre- and post-activation outputs, residual
stream values, norm outputs) adds the correlation matrix of A's and B's features to the
group's cost. Attention's ``:qk``/``:vo`` groups have no op-graph value of their own: their
features are the Q, K (resp. V) projections of the attention input, computed from each
network's own weights through the op's q/k/v pieces (``nn.MultiheadAttention``'s packed
``in_proj``, a fused ``qkv`` Linear or separate q/k/v Linears alike). A structured unit
(attention heads, grouped-conv blocks) is solved as blocks: an assignment over block-to-block
costs (each the best within-block assignment), then the dims within the matched blocks
(:func:`merging.assignment.solve_unit`). One assignment per unit, no iteration (the costs do
not depend on other groups' permutations).
"""

from __future__ import annotations

import time

import torch

from graphs import Checkpoint, check_permutations
from graphs.ops import OPS
from graphs.ops.base import Node
from merging.assignment import assignment_value, best_device, solve_unit, units
from merging.forward import activation_values, batches, features, load_module, run_values
from merging.weight_matching import MatchResult, _check_pair

__all__ = ["activation_matching"]


class _Correlation:
    """Streaming Pearson correlation between A's and B's features of one group."""

    def __init__(self) -> None:
        self.count = 0
        self.sa = self.sb = self.saa = self.sbb = self.sab = torch.zeros(())

    def add(self, fa: torch.Tensor, fb: torch.Tensor) -> None:
        fa, fb = fa.double(), fb.double()
        self.count += fa.shape[0]
        self.sa = self.sa + fa.sum(0)
        self.sb = self.sb + fb.sum(0)
        self.saa = self.saa + (fa * fa).sum(0)
        self.sbb = self.sbb + (fb * fb).sum(0)
        self.sab = self.sab + fa.T @ fb

    def matrix(self) -> torch.Tensor:
        n = self.count
        ma, mb = self.sa / n, self.sb / n
        cov = self.sab / n - ma[:, None] * mb[None, :]
        sa = (self.saa / n - ma * ma).clamp_min(1e-12).sqrt()
        sb = (self.sbb / n - mb * mb).clamp_min(1e-12).sqrt()
        return cov / (sa[:, None] * sb[None, :])


def _attention_features(ckpt_views: dict[str, torch.Tensor], node: Node,
                        x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Q, K and V projections of an attention input, from one network's own weights."""
    op = OPS[node.op]
    biases = op.pieces(node, "bias")  # type: ignore[attr-defined]
    out = {}
    for part, piece in op.pieces(node, "weight").items():  # type: ignore[attr-defined]
        y = x @ ckpt_views[piece.view].to(x).T
        if part in biases:
            y = y + ckpt_views[biases[part].view].to(x)
        out[part] = y
    return out


@torch.no_grad()
def activation_matching(a: Checkpoint, b: Checkpoint,
                        data: torch.Tensor | tuple[torch.Tensor, ...], *,
                        batch_size: int = 512,
                        device: torch.device | str | None = None) -> MatchResult:
    """Align B to A on the correlations of their activations over ``data`` (x or (x, y))."""
    start = time.perf_counter()
    nmap = _check_pair(a, b)
    arch = a.architecture
    dev = torch.device(device) if device is not None else best_device()
    x = data[0] if isinstance(data, tuple | list) else data
    ma, mb = load_module(a, dev), load_module(b, dev)
    va, vb = nmap.split(a.tensors), nmap.split(b.tensors)
    permutable = {g.id for g in nmap.permutable_groups()}
    values = activation_values(arch, nmap, permutable)
    attention = [n for n in arch.nodes if OPS[n.op].family == "attention"]
    wanted = set(values) | {n.inputs[0] for n in attention}
    corr = {gid: _Correlation() for gid in permutable if nmap.groups[gid].tensors}
    for xb in batches(x, batch_size, dev):
        ea, eb = run_values(ma, xb, wanted), run_values(mb, xb, wanted)
        for v, gid in values.items():
            size = nmap.groups[gid].size
            corr[gid].add(features(nmap, v, ea[v], size), features(nmap, v, eb[v], size))
        for node in attention:
            pa = _attention_features(va, node, ea[node.inputs[0]])
            pb = _attention_features(vb, node, eb[node.inputs[0]])
            for part, gid in (("q", f"{node.name}:qk"), ("k", f"{node.name}:qk"),
                              ("v", f"{node.name}:vo")):
                size = nmap.groups[gid].size
                corr[gid].add(pa[part].reshape(-1, size), pb[part].reshape(-1, size))
    costs = {gid: c.matrix() for gid, c in corr.items() if c.count}
    perms: dict[str, torch.Tensor] = {}
    before = after = 0.0
    for unit in units(nmap):
        if not all(g in costs for g in unit.groups):
            continue  # a group no value reaches keeps its order
        new = solve_unit(nmap, unit, {g: costs[g] for g in unit.groups})
        perms.update(new)
        for g in unit.groups:
            before += assignment_value(costs[g], torch.arange(nmap.groups[g].size))
            after += assignment_value(costs[g], new[g])
    check_permutations(nmap, perms)
    return MatchResult(perms, before, after, 1, time.perf_counter() - start, "activation",
                       [before, after])
