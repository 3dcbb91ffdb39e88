"""BatchNorm after a merge: reset the statistics on data, or REPAIR the activations.

Interpolated weights do not produce interpolated activations: the merged network's channels
have shrunken variance, and lerped running statistics no longer describe them.

* :func:`reset_bn` recomputes every BatchNorm's running mean/var on data (train-mode forward
  passes, ``momentum=None`` = cumulative average, no other module in train mode).
* :func:`repair` (Jordan et al., "REPAIR", ICLR 2023) rescales each channel so that its
  pre-activation mean and std equal the interpolation of the endpoints' statistics. It
  applies to the output of every linear and conv node in a permutable group through its
  weight rows and bias (without a bias only the std is matched). A linear/conv that feeds only
  BatchNorms is left to them: for BatchNorm layers REPAIR reduces to resetting the statistics
  with the interpolated affine parameters (as in the paper), which :func:`repair` also does.
  LayerNorm and attention outputs are left alone.
"""

from __future__ import annotations

import torch
from torch import nn

from graphs import Architecture, OpGraphModule, neuron_map
from merging.forward import batches, features, run_values

__all__ = ["has_batchnorm", "layer_stats", "repair", "repair_targets", "reset_bn"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_AFFINE = ("linear", "conv1d", "conv2d")


def has_batchnorm(arch: Architecture) -> bool:
    return any(n.op.startswith("batchnorm") for n in arch.nodes)


@torch.no_grad()
def reset_bn(module: OpGraphModule, x: torch.Tensor, batch_size: int = 512) -> None:
    """Recompute BatchNorm running statistics of ``module`` on ``x``; leaves it in eval mode."""
    bns = [m for m in module.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not bns:
        return
    module.eval()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    device = next(module.parameters()).device
    for xb in batches(x, batch_size, device):
        module(xb)
    for m, momentum in zip(bns, saved, strict=True):
        m.momentum = momentum
    module.eval()


def repair_targets(arch: Architecture) -> list[str]:
    """Nodes whose outputs REPAIR rescales, in topological order."""
    nmap = neuron_map(arch)
    consumers = arch.consumers()
    out = []
    for node in arch.nodes:
        if node.op not in _AFFINE or "weight" not in node.params:
            continue
        if not nmap.groups[nmap.value_groups[node.name]].permutable:
            continue
        uses = consumers[node.name]
        if uses and all(c.op.startswith("batchnorm") for c in uses):
            continue
        out.append(node.name)
    return out


@torch.no_grad()
def layer_stats(module: OpGraphModule, x: torch.Tensor, nodes: list[str],
                batch_size: int = 512) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and std of each node's output over ``x`` (eval mode)."""
    arch = module.architecture
    nmap = neuron_map(arch)
    sums: dict[str, list[torch.Tensor | int]] = {}
    device = next(module.parameters()).device
    for xb in batches(x, batch_size, device):
        values = run_values(module, xb, nodes)
        for n in nodes:
            f = features(nmap, n, values[n], nmap.groups[nmap.value_groups[n]].size).double()
            s = sums.setdefault(n, [0, 0.0, 0.0])
            s[0] = s[0] + f.shape[0]
            s[1] = s[1] + f.sum(0)
            s[2] = s[2] + (f * f).sum(0)
    out = {}
    for n, (count, s1, s2) in sums.items():
        mean = s1 / count
        out[n] = (mean, (s2 / count - mean * mean).clamp_min(0).sqrt())
    return out


@torch.no_grad()
def repair(module: OpGraphModule, x: torch.Tensor,
           stats_a: dict[str, tuple[torch.Tensor, torch.Tensor]],
           stats_b: dict[str, tuple[torch.Tensor, torch.Tensor]], lam: float,
           batch_size: int = 512) -> None:
    """Rescale ``module`` (the merged network at ``lam``) in place, layer by layer.

    ``stats_a``/``stats_b`` come from :func:`layer_stats` on the endpoints (B aligned). Each
    layer is measured after the layers before it are repaired and BatchNorm statistics are
    reset, so the corrections compose.
    """
    arch = module.architecture
    for name in repair_targets(arch):
        reset_bn(module, x, batch_size)
        mean, std = layer_stats(module, x, [name], batch_size)[name]
        (ma, sa), (mb, sb) = stats_a[name], stats_b[name]
        target_mean, target_std = (1 - lam) * ma + lam * mb, (1 - lam) * sa + lam * sb
        scale = torch.where(std > 1e-6, target_std / std.clamp_min(1e-6), 1.0)  # dead: keep
        sub = module.get_submodule(arch.node(name).module_path)
        w = sub.weight
        w.mul_(scale.to(w).reshape(-1, *[1] * (w.dim() - 1)))
        if getattr(sub, "bias", None) is not None:
            b = sub.bias
            b.copy_(((b.double() - mean) * scale + target_mean).to(b))
    reset_bn(module, x, batch_size)
