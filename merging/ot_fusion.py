"""Model fusion by optimal transport (Singh & Jaggi, "Model Fusion via Optimal Transport",
NeurIPS 2020), on the neuron map: networks of one layout, any widths.

A permutation is a hard one-to-one match; it cannot relate a 128-unit layer to a 256-unit
one. OT fusion matches neurons *softly*: per neuron group, a transport plan ``T`` (target
neurons × source neurons, row masses μ, column masses ν) moves each source network's neurons
onto the target's, and the aligned networks are averaged.

* **Ground cost** per group, squared Euclidean between neurons: ``"weights"`` — their
  incoming weights (rows of every tensor whose axis 0 is the group), with the input axes
  already carried into the target's basis (as below) by the plans of the groups before
  (groups are taken in neuron-map order, i.e. topologically; tensors whose other axes are not
  aligned yet, such as a residual block's inner conv for the stream group, are left out of
  the cost); ``"activations"`` — their values over data (every op-graph value in the group).
* **Plans**: exact (``ot.emd``) or entropic (``ot.sinkhorn``, log-stabilized, on the cost
  scaled to max 1); masses uniform or by neuron importance (ℓ1 norm of the incoming weights).
* **Carrying a network into the target basis**: a neuron's own parameters (axis 0: weight
  rows, bias, norm parameters and statistics) become ``diag(1/μ)·T`` averages of the source
  neurons sent to it (the paper's barycentric map); the weights that *read* the group (axes
  ≥ 1) use ``T·diag(1/ν)``, which splits a source neuron's outgoing weights over the target
  neurons it is sent to, or sums those of source neurons merged into one — so the function is
  kept exactly when a layer is widened by duplication or narrowed by merging duplicates
  (Net2Net's rule; ``fan_in="average"`` gives the paper's plain average instead). With equal
  widths, uniform masses and EMD, ``T`` is a permutation and fusion is a re-basin merge.
* The fused network is the weighted average of the carried networks, in the target's
  architecture (``target``: which input sets the widths; default the first); BatchNorm
  statistics are reset on data when given. :class:`FusionResult` carries the plans, the
  carried inputs (for barriers) and a :class:`~merging.finetune.FinetuneRecipe`.

Refused (:class:`~merging.errors.UnsupportedMergeError`): layouts that differ in more than
widths (see ``method="clafusion"`` for depths), different input or output sizes, attention.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import ot
import torch

from graphs import Architecture, Checkpoint, NeuronMap, neuron_map
from merging.assignment import best_device
from merging.batchnorm import has_batchnorm, reset_bn
from merging.errors import MergeInputError, UnsupportedMergeError
from merging.finetune import FinetuneRecipe, finetune
from merging.forward import activation_values, features, load_module, run_values
from merging.weight_matching import matched_views

__all__ = ["FusionResult", "check_fusable", "ot_fusion"]

Mode = Literal["weights", "activations"]
Solver = Literal["emd", "sinkhorn"]
Masses = Literal["uniform", "importance"]
FanIn = Literal["preserve", "average"]

# Attributes that are widths: they may differ between fused networks, nothing else may.
_WIDTH_ATTRS = {"linear": ("in_features", "out_features"),
                "conv1d": ("in_channels", "out_channels"),
                "conv2d": ("in_channels", "out_channels"),
                "batchnorm1d": ("num_features",), "batchnorm2d": ("num_features",),
                "layernorm": ("normalized_shape",)}


@dataclass
class FusionResult:
    """The one-shot fused network and how it was made.

    ``aligned[j]``: input ``j`` carried into the target's basis (``aligned[target]`` is the
    target itself); ``plans[j][group]``: the transport plan (target × input ``j`` neurons).
    """

    checkpoint: Checkpoint
    aligned: list[Checkpoint]
    plans: list[dict[str, torch.Tensor]]
    target: int
    weights: list[float]
    options: dict[str, Any]
    seconds: float
    bn_stats: str
    recipe: FinetuneRecipe = field(default_factory=FinetuneRecipe)

    def finetune(self, data: tuple[torch.Tensor, torch.Tensor],
                 recipe: FinetuneRecipe | None = None,
                 device: torch.device | str | None = None) -> Checkpoint:
        """The fused network after a short training run (``recipe`` or the default one)."""
        return finetune(self.checkpoint, data, recipe or self.recipe, device=device)


def _skeleton(arch: Architecture) -> dict[str, Any]:
    d = arch.to_dict()
    for node in d["nodes"]:
        for key in _WIDTH_ATTRS.get(node["op"], ()):
            node["attrs"].pop(key, None)
    return d


def check_fusable(architectures: Sequence[Architecture]) -> None:
    """Raise :class:`UnsupportedMergeError` unless OT fusion can fuse these layouts."""
    if len(architectures) < 2:
        raise MergeInputError("fusion needs at least two checkpoints")
    first = architectures[0]
    for node in first.nodes:
        if node.op == "self_attention":
            raise UnsupportedMergeError(
                f"OT fusion does not support attention (node {node.name!r}): its head "
                "structure has no transport plan; use method 'weight' for equal widths")
    blocked = [g.id for g in neuron_map(first).groups.values() if g.blocks is not None]
    if blocked:  # hand-written attention heads, grouped-conv blocks: a plan would mix blocks
        raise UnsupportedMergeError(
            f"OT fusion does not support block-structured neurons (group {blocked[0]!r}: "
            "attention heads or grouped-convolution blocks); use method 'weight' for equal "
            "widths")
    base = _skeleton(first)
    for i, arch in enumerate(architectures[1:], 1):
        other = _skeleton(arch)
        if other == base:
            continue
        if len(other["nodes"]) != len(base["nodes"]):
            raise UnsupportedMergeError(
                f"checkpoint {i} has {len(arch.nodes)} ops, checkpoint 0 has {len(first.nodes)}:"
                " OT fusion needs one layout (networks of different depths: method "
                "'clafusion')")
        for n0, n1 in zip(base["nodes"], other["nodes"], strict=True):
            if n0 != n1:
                raise UnsupportedMergeError(
                    f"checkpoint {i} differs from checkpoint 0 at node {n0['name']!r} in more "
                    "than its width; OT fusion needs one layout with any widths")
        raise UnsupportedMergeError(f"checkpoint {i}: inputs or outputs differ from checkpoint 0")
    maps = [neuron_map(a) for a in architectures]
    for gid, g in maps[0].groups.items():
        for i, m in enumerate(maps[1:], 1):
            if not g.permutable and m.groups[gid].size != g.size:
                raise UnsupportedMergeError(
                    f"checkpoint {i}: the {g.kind} {gid!r} has {m.groups[gid].size} features, "
                    f"checkpoint 0 has {g.size}")


def _along(t: torch.Tensor, axis: int, r: torch.Tensor) -> torch.Tensor:
    """``r`` (n_target × n_source) applied to ``t``'s ``axis`` (of size n_source)."""
    moved = t.movedim(axis, 0)
    out = (r @ moved.reshape(moved.shape[0], -1)).reshape(r.shape[0], *moved.shape[1:])
    return out.movedim(0, axis)


def _incoming(nmap: NeuronMap, views: dict[str, torch.Tensor], names: set[str], gid: str,
              carry: dict[str, torch.Tensor] | None, done: set[str], fixed: set[str]
              ) -> torch.Tensor | None:
    """(neurons, incoming weights) of a group, the other axes carried by ``carry``.

    ``carry=None`` for the target (nothing to carry). Tensors with another axis in a group
    not processed yet (``done``) are left out: they cannot be compared across networks.
    """
    rows = []
    for view, axis in nmap.groups[gid].tensors:
        if axis != 0 or view not in names:
            continue
        others = [(ax, h) for ax, h in enumerate(nmap.axes[view]) if ax > 0 and h is not None]
        if any(h == gid or (h not in fixed and h not in done) for _, h in others):
            continue
        t = views[view].double()
        if carry is not None:
            for ax, h in others:
                if h not in fixed:
                    t = _along(t, ax, carry[h])
        rows.append(t.reshape(t.shape[0], -1))
    return torch.cat(rows, 1) if rows else None


def _masses(kind: Masses, incoming: torch.Tensor | None, n: int) -> np.ndarray:
    if kind == "uniform" or incoming is None:
        return np.full(n, 1.0 / n)
    w = incoming.abs().sum(1).numpy() + 1e-12
    return w / w.sum()


def _plan(cost: np.ndarray, mu: np.ndarray, nu: np.ndarray, solver: Solver, reg: float
          ) -> np.ndarray:
    if solver == "emd":
        return ot.emd(mu, nu, cost, numItermax=10_000_000)
    scale = cost.max() if cost.max() > 0 else 1.0
    # Marginals to 1e-6 of their unit total: far below what changes the fused weights.
    return ot.sinkhorn(mu, nu, cost / scale, reg, method="sinkhorn_stabilized",
                       numItermax=20_000, stopThr=1e-6)


def _activation_features(checkpoints: Sequence[Checkpoint], data: torch.Tensor,
                         groups: list[str], device: torch.device, max_samples: int
                         ) -> list[dict[str, torch.Tensor]]:
    """Per checkpoint and group: (neurons, samples) of every op-graph value in the group."""
    x = data[:max_samples].to(device)
    out = []
    for ckpt in checkpoints:
        arch = ckpt.architecture
        nmap = neuron_map(arch)
        values = activation_values(arch, nmap, groups)
        module = load_module(ckpt, device)
        env = run_values(module, x, values)
        feats: dict[str, list[torch.Tensor]] = {}
        for v, gid in values.items():
            f = features(nmap, v, env[v], nmap.groups[gid].size)
            feats.setdefault(gid, []).append(f.detach().to("cpu", torch.float64))
        out.append({g: torch.cat(fs, 0).T for g, fs in feats.items()})
    return out


Plans = list[dict[str, torch.Tensor]]


def _transport(maps: list[NeuronMap], views: list[dict[str, torch.Tensor]], target: int,
               names: set[str], order: list[str], fixed: set[str],
               acts: list[dict[str, torch.Tensor]] | None, solver: Solver, reg: float,
               masses: Masses, fan_in: FanIn) -> tuple[Plans, Plans, Plans]:
    """Per input and group: ``diag(1/μ)·T`` (own), ``T·diag(1/ν)`` (fan) and ``T``.

    Groups go in ``order``; a group's weight cost sees the earlier groups' ``fan`` carrying.
    """
    n = len(maps)
    nmap0 = maps[target]
    own: Plans = [{} for _ in range(n)]
    fan: Plans = [{} for _ in range(n)]
    plans: Plans = [{} for _ in range(n)]
    done: set[str] = set()
    for gid in order:
        x0 = _incoming(nmap0, views[target], names, gid, None, done, fixed)
        n0 = nmap0.groups[gid].size
        for j in range(n):
            size = maps[j].groups[gid].size
            if j == target:
                eye = torch.eye(size, dtype=torch.float64)
                own[j][gid] = fan[j][gid] = eye
                plans[j][gid] = eye / size
                continue
            xj = _incoming(maps[j], views[j], names, gid, fan[j], done, fixed)
            if acts is not None:
                cost = ot.dist(acts[target][gid].numpy(), acts[j][gid].numpy())
            elif x0 is not None and xj is not None:
                cost = ot.dist(x0.numpy(), xj.numpy())
            else:  # nothing aligned feeds this group: no preference
                cost = np.zeros((n0, size))
            mu, nu = _masses(masses, x0, n0), _masses(masses, xj, size)
            t = torch.from_numpy(np.asarray(_plan(cost, mu, nu, solver, reg), dtype=np.float64))
            plans[j][gid] = t
            own[j][gid] = t / t.sum(1).clamp_min(1e-300)[:, None]  # rows: μ (Sinkhorn: ≈ μ)
            fan[j][gid] = (t / t.sum(0).clamp_min(1e-300)[None, :] if fan_in == "preserve"
                           else own[j][gid])  # columns: ν
        done.add(gid)
    return own, fan, plans


def _carry(nmap: NeuronMap, views: dict[str, torch.Tensor], own: dict[str, torch.Tensor],
           fan: dict[str, torch.Tensor], fixed: set[str]) -> dict[str, torch.Tensor]:
    """A network's views in the target's basis: axis 0 by ``own``, reader axes by ``fan``."""
    carried = {}
    for view, t in views.items():
        if t.is_floating_point():
            for ax, h in enumerate(nmap.axes[view]):
                if h is not None and h not in fixed:
                    t = _along(t, ax, (own if ax == 0 else fan)[h])
        carried[view] = t
    return carried


def ot_fusion(checkpoints: Sequence[Checkpoint], *, target: int = 0, mode: Mode = "weights",
              solver: Solver = "emd", reg: float = 0.01, masses: Masses = "uniform",
              fan_in: FanIn = "preserve", weights: Sequence[float] | None = None,
              data: tuple[torch.Tensor, ...] | torch.Tensor | None = None,
              max_samples: int = 512, recipe: FinetuneRecipe | None = None,
              device: torch.device | str | None = None) -> FusionResult:
    """Fuse networks of one layout and any widths into ``checkpoints[target]``'s widths.

    ``data`` (x or (x, y)) is needed for ``mode="activations"``; given in either mode it also
    resets BatchNorm statistics of the fused network. ``weights`` default to uniform.
    """
    start = time.perf_counter()
    if mode not in ("weights", "activations") or solver not in ("emd", "sinkhorn") or \
            masses not in ("uniform", "importance") or fan_in not in ("preserve", "average"):
        raise MergeInputError(f"unknown OT fusion option in mode={mode!r}, solver={solver!r}, "
                              f"masses={masses!r}, fan_in={fan_in!r}")
    if solver == "sinkhorn" and not reg > 0:
        raise MergeInputError("sinkhorn needs reg > 0")
    check_fusable([c.architecture for c in checkpoints])
    n = len(checkpoints)
    if not 0 <= target < n:
        raise MergeInputError(f"target {target} is not one of the {n} checkpoints")
    w = [1.0 / n] * n if weights is None else [float(v) for v in weights]
    if len(w) != n or any(v < 0 for v in w) or not sum(w) > 0:
        raise MergeInputError("weights must be one non-negative number per checkpoint")
    w = [v / sum(w) for v in w]
    x = data[0] if isinstance(data, tuple | list) else data
    if mode == "activations" and x is None:
        raise MergeInputError("OT fusion on activations needs data")
    dev = torch.device(device) if device is not None else best_device()

    tgt = checkpoints[target]
    nmap0 = neuron_map(tgt.architecture)
    maps = [neuron_map(c.architecture) for c in checkpoints]
    views = [m.split({k: v.double() if v.is_floating_point() else v
                      for k, v in c.tensors.items()}) for m, c in zip(maps, checkpoints,
                                                                      strict=True)]
    names = set(matched_views(tgt))
    fixed = {g.id for g in nmap0.groups.values() if not g.permutable}
    order = [g.id for g in nmap0.groups.values() if g.permutable]
    acts = (_activation_features(checkpoints, x, order, dev, max_samples)
            if mode == "activations" else None)

    own, fan, plans = _transport(maps, views, target, names, order, fixed, acts, solver, reg,
                                 masses, fan_in)
    aligned: list[Checkpoint] = []
    fused_views: dict[str, torch.Tensor] = {}
    for j in range(n):
        carried = _carry(maps[j], views[j], own[j], fan[j], fixed)
        aligned.append(_to_checkpoint(nmap0, carried, tgt))
        for view, t in carried.items():
            if t.is_floating_point():
                fused_views[view] = fused_views.get(view, 0) + w[j] * t
    fused = _to_checkpoint(nmap0, {**views[target], **fused_views}, tgt)
    bn = "none"
    if has_batchnorm(tgt.architecture):
        bn = "stale"
        if x is not None:
            module = load_module(fused, dev)
            reset_bn(module, x)
            state = module.state_dict()
            fused = Checkpoint({k: state[k].detach().to("cpu", v.dtype).clone()
                                for k, v in fused.tensors.items()}, fused.architecture, {})
            bn = "reset"
    options = {"mode": mode, "solver": solver, "reg": reg, "masses": masses, "fan_in": fan_in}
    return FusionResult(fused, aligned, plans, target, w, options,
                        time.perf_counter() - start, bn, recipe or FinetuneRecipe())


def _to_checkpoint(nmap: NeuronMap, views: dict[str, torch.Tensor], like: Checkpoint
                   ) -> Checkpoint:
    tensors = nmap.join(views)
    return Checkpoint({k: tensors[k].to(v.dtype) for k, v in like.tensors.items()},
                      like.architecture, {})
