"""Merged checkpoints: align, interpolate, fix BatchNorm, record lineage.

:func:`merge` makes one checkpoint between A and B; :func:`merge_many` averages several
networks after aligning all of them to a common reference (first model, then the running
mean, re-aligned until no permutation changes). Results are ordinary self-describing
checkpoints whose metadata carries ``weightscope.lineage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from graphs import Checkpoint
from merging.activation_matching import activation_matching
from merging.assignment import best_device
from merging.batchnorm import has_batchnorm, reset_bn
from merging.forward import load_module
from merging.interpolation import BnMode, merged_module
from merging.lineage import checkpoint_sha256, with_lineage
from merging.weight_matching import MatchResult, weight_matching

__all__ = ["ManyMergeResult", "MergeResult", "Method", "align", "merge", "merge_many"]

Method = Literal["weight", "activation", "none"]


@dataclass
class MergeResult:
    checkpoint: Checkpoint
    match: MatchResult | None
    bn_stats: str


@dataclass
class ManyMergeResult:
    checkpoint: Checkpoint
    matches: list[MatchResult]  # per input model, aligning it to the final mean
    rounds: int


def align(a: Checkpoint, b: Checkpoint, method: Method = "weight",
          data: tuple[torch.Tensor, ...] | torch.Tensor | None = None,
          device: torch.device | str | None = None) -> MatchResult | None:
    """Permutations that align B to A (``None`` for ``method="none"``)."""
    if method == "weight":
        return weight_matching(a, b, device=device)
    if method == "activation":
        if data is None:
            raise ValueError("activation matching needs data")
        return activation_matching(a, b, data, device=device)
    if method == "none":
        return None
    raise ValueError(f"unknown method {method!r} (weight, activation or none)")


def _bn_mode(checkpoint: Checkpoint, data: object, bn: BnMode | None) -> BnMode:
    if bn is not None:
        if bn != "stale" and data is None:
            raise ValueError(f"bn={bn!r} needs data")
        return bn
    return "reset" if data is not None and has_batchnorm(checkpoint.architecture) else "stale"


def _bn_label(checkpoint: Checkpoint, mode: BnMode) -> str:
    if mode == "repair":
        return "repair"
    return mode if has_batchnorm(checkpoint.architecture) else "none"


def _module_checkpoint(module: torch.nn.Module, like: Checkpoint) -> Checkpoint:
    state = module.state_dict()
    tensors = {k: state[k].detach().to("cpu").clone() for k in like.tensors}
    return Checkpoint(tensors, like.architecture, {})


def merge(a: Checkpoint, b: Checkpoint, *, method: Method = "weight", lam: float = 0.5,
          data: tuple[torch.Tensor, torch.Tensor] | None = None, bn: BnMode | None = None,
          parents: list[str] | None = None,
          device: torch.device | str | None = None) -> MergeResult:
    """θ = (1−λ)·θ_A + λ·π(θ_B), BatchNorm statistics reset (or repaired) when data is given.

    ``parents`` names the inputs in the lineage (default: their sha256).
    """
    dev = torch.device(device) if device is not None else best_device()
    match = align(a, b, method, data, dev)
    b_aligned = match.apply(b) if match is not None else b
    mode = _bn_mode(a, data, bn)
    x = None if data is None else data[0]
    module = merged_module(a, b_aligned, lam, mode, x, dev)
    merged = _module_checkpoint(module, a)
    label = _bn_label(a, mode)
    extra = {} if match is None else {"objective_before": match.objective_before,
                                      "objective_after": match.objective_after,
                                      "sweeps": match.sweeps}
    merged = with_lineage(merged, parents or [checkpoint_sha256(a), checkpoint_sha256(b)],
                          method, lam, label, **extra)
    return MergeResult(merged, match, label)


def _mean(checkpoints: list[Checkpoint]) -> Checkpoint:
    first = checkpoints[0]
    tensors = {k: (torch.stack([c.tensors[k].double() for c in checkpoints]).mean(0)
                   .to(v.dtype) if v.is_floating_point() else v.clone())
               for k, v in first.tensors.items()}
    return Checkpoint(tensors, first.architecture, {})


def merge_many(checkpoints: list[Checkpoint], *, rounds: int = 5,
               data: tuple[torch.Tensor, torch.Tensor] | None = None,
               parents: list[str] | None = None,
               device: torch.device | str | None = None) -> ManyMergeResult:
    """Average several networks modulo permutations (weight matching to a common mean).

    Round 1 aligns every model to the first; each later round re-aligns every model to the
    mean of the aligned models (starting from its previous permutations) and stops early
    when no permutation changes. BatchNorm statistics are reset on ``data`` if given.
    """
    if len(checkpoints) < 2:
        raise ValueError("merge_many needs at least two checkpoints")
    dev = torch.device(device) if device is not None else best_device()
    reference = checkpoints[0]
    matches: list[MatchResult] = []
    done = 0
    for done in range(1, rounds + 1):  # noqa: B007 - the count is reported
        new = [weight_matching(reference, c, device=dev,
                               init=matches[i].perms if matches else None)
               for i, c in enumerate(checkpoints)]
        changed = not matches or any(
            not torch.equal(m.perms[g], old.perms[g])
            for m, old in zip(new, matches, strict=True) for g in m.perms)
        matches = new
        reference = _mean([m.apply(c) for m, c in zip(matches, checkpoints, strict=True)])
        if not changed:
            break
    mode = _bn_mode(reference, data, None)
    merged = reference
    if mode == "reset" and data is not None:
        module = load_module(reference, dev)
        reset_bn(module, data[0])
        merged = _module_checkpoint(module, reference)
    label = _bn_label(reference, mode)
    names = parents or [checkpoint_sha256(c) for c in checkpoints]
    weights = [1 / len(checkpoints)] * len(checkpoints)
    merged = with_lineage(merged, names, "weight", weights, label, rounds=done)
    return ManyMergeResult(merged, matches, done)
