"""Merged checkpoints: align, interpolate, fix BatchNorm, record lineage.

:func:`merge` makes one checkpoint between A and B; :func:`merge_many` averages several
networks after aligning all of them to a common reference (first model, then the running
mean, re-aligned until no permutation changes); :func:`fuse` runs OT fusion or CLAFusion on
two or more networks of different widths / depths. Results are ordinary self-describing
checkpoints whose metadata carries ``weightscope.lineage``. :func:`check_method` validates a
request (method, architectures, data) before any work, raising the errors of
:mod:`merging.errors`.

Methods: ``"weight"``, ``"activation"``, ``"ste"`` (Git Re-Basin's three; permutations of one
architecture), ``"none"`` (plain averaging), ``"ot"`` (OT fusion, any widths), ``"clafusion"``
(MLPs of any depths and widths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from graphs import Architecture, Checkpoint
from merging.activation_matching import activation_matching
from merging.assignment import best_device
from merging.batchnorm import has_batchnorm, reset_bn
from merging.clafusion import ClaFusionResult, check_clafusion, clafusion
from merging.errors import MergeInputError, UnsupportedMergeError
from merging.forward import load_module
from merging.interpolation import BnMode, merged_module
from merging.lineage import checkpoint_sha256, with_lineage
from merging.ot_fusion import FusionResult, check_fusable, ot_fusion
from merging.ste import ste_matching
from merging.weight_matching import MatchResult, weight_matching

__all__ = ["METHODS", "ManyMergeResult", "MergeResult", "Method", "align", "check_method",
           "fuse", "merge", "merge_many"]

Method = Literal["weight", "activation", "ste", "none", "ot", "clafusion"]
METHODS: tuple[str, ...] = ("weight", "activation", "ste", "none", "ot", "clafusion")
_PERMUTATION = ("weight", "activation", "ste", "none")
_FUSION = ("ot", "clafusion")


@dataclass
class MergeResult:
    """``match`` for permutation methods; ``fusion`` for ``"ot"``/``"clafusion"``, whose
    ``fusion.aligned[1]`` (``fusion.fusion.aligned[1]`` for CLAFusion) is B carried into
    A's basis, the other end of a meaningful interpolation curve."""

    checkpoint: Checkpoint
    match: MatchResult | None
    bn_stats: str
    fusion: FusionResult | ClaFusionResult | None = None


def check_method(method: str, architectures: list[Architecture], *, has_data: bool = False
                 ) -> None:
    """Raise :class:`MergeInputError` (or its :class:`UnsupportedMergeError`) unless
    ``method`` can merge networks of these architectures, with or without data.

    Meant for request-time validation (a 422) before a job is queued:

    * ``weight``/``none``: one architecture (permutations only relate equal layouts);
    * ``activation``/``ste``: the same, and data (``ste`` needs labels);
    * ``ot``: one layout in which only widths differ, equal inputs/outputs, no attention;
    * ``clafusion``: MLP chains; different depths only with ReLU.
    """
    if method not in METHODS:
        raise MergeInputError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
    if len(architectures) < 2:
        raise MergeInputError("a merge needs at least two checkpoints")
    if method in ("activation", "ste") and not has_data:
        raise MergeInputError(f"method {method!r} needs data")
    if method in _PERMUTATION:
        first = architectures[0]
        if any(a != first for a in architectures[1:]):
            raise UnsupportedMergeError(
                f"method {method!r} merges checkpoints of one architecture (networks of "
                "different widths: method 'ot'; of different depths: method 'clafusion')")
        if method in ("activation", "ste") and len(architectures) > 2:
            raise UnsupportedMergeError(f"method {method!r} merges two checkpoints; more are "
                                        "merged by 'weight', 'ot' or 'clafusion'")
    elif method == "ot":
        check_fusable(architectures)
    else:
        check_clafusion(architectures)


@dataclass
class ManyMergeResult:
    checkpoint: Checkpoint
    matches: list[MatchResult]  # per input model, aligning it to the final mean
    rounds: int


def align(a: Checkpoint, b: Checkpoint, method: Method = "weight",
          data: tuple[torch.Tensor, ...] | torch.Tensor | None = None,
          device: torch.device | str | None = None, canonical: bool = False,
          **ste_options: Any) -> MatchResult | None:
    """Permutations that align B to A (``None`` for ``method="none"``).

    ``canonical`` applies to weight matching (see :func:`merging.weight_matching`),
    ``ste_options`` (``epochs``, ``steps_per_epoch``, ``lr``, ...) to STE matching.
    """
    if ste_options and method != "ste":
        raise MergeInputError(f"method {method!r} takes no options {sorted(ste_options)}")
    if method == "weight":
        return weight_matching(a, b, device=device, canonical=canonical)
    if method == "activation":
        if data is None:
            raise MergeInputError("activation matching needs data")
        return activation_matching(a, b, data, device=device)
    if method == "ste":
        if not isinstance(data, tuple | list) or len(data) != 2:
            raise MergeInputError("STE matching needs labelled data (x, y)")
        return ste_matching(a, b, (data[0], data[1]), device=device, **ste_options)
    if method == "none":
        return None
    if method in _FUSION:
        raise UnsupportedMergeError(f"method {method!r} fuses networks instead of aligning "
                                    "them: use merging.fuse")
    raise MergeInputError(f"unknown method {method!r} (one of {', '.join(METHODS)})")


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
          parents: list[str] | None = None, canonical: bool = False,
          device: torch.device | str | None = None, **options: Any) -> MergeResult:
    """θ = (1−λ)·θ_A + λ·π(θ_B), BatchNorm statistics reset (or repaired) when data is given.

    ``parents`` names the inputs in the lineage (default: their sha256). ``"ot"`` and
    ``"clafusion"`` fuse A and B with weights (1−λ, λ) into A's widths (:func:`fuse`;
    ``options`` go to it); the others align B to A by permutations first (``options`` go to
    :func:`merging.ste_matching` for ``"ste"``; STE learns on ``data``).
    """
    if canonical and method != "weight":
        raise MergeInputError("canonical applies to weight matching only")
    if method in _FUSION:
        if bn not in (None, "reset", "stale"):
            raise MergeInputError(f"fusion resets BatchNorm statistics on data; bn={bn!r} "
                                  "is for permutation merges")
        if not 0 <= lam <= 1:
            raise MergeInputError("lam must lie in [0, 1] for a fusion")
        fused = fuse([a, b], method=method, data=data, weights=[1 - lam, lam],
                     parents=parents, device=device, **options)
        result = fused.fusion if isinstance(fused, ClaFusionResult) else fused
        return MergeResult(fused.checkpoint, None, result.bn_stats, fused)
    dev = torch.device(device) if device is not None else best_device()
    match = align(a, b, method, data, dev, canonical=canonical, **options)
    a_end, b_aligned = match.endpoints(a, b) if match is not None else (a, b)
    mode = _bn_mode(a, data, bn)
    x = None if data is None else data[0]
    module = merged_module(a_end, b_aligned, lam, mode, x, dev)
    merged = _module_checkpoint(module, a)
    label = _bn_label(a, mode)
    extra = {} if match is None else {"objective_before": match.objective_before,
                                      "objective_after": match.objective_after,
                                      "sweeps": match.sweeps}
    if match is not None and match.canonical:
        extra["canonical"] = True
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


def fuse(checkpoints: list[Checkpoint], *, method: Literal["ot", "clafusion"] = "ot",
         data: tuple[torch.Tensor, ...] | torch.Tensor | None = None,
         weights: list[float] | None = None, target: int = 0,
         parents: list[str] | None = None, device: torch.device | str | None = None,
         **options: Any) -> FusionResult | ClaFusionResult:
    """Fuse two or more networks into ``checkpoints[target]``'s widths (and, for CLAFusion,
    the deepest depth); the result's checkpoint carries the lineage.

    ``options`` go to :func:`merging.ot_fusion` / :func:`merging.clafusion` (``mode``,
    ``solver``, ``reg``, ``masses``, ``fan_in`` (OT only), ``max_samples``, ``recipe``).
    """
    if method == "ot":
        result: FusionResult | ClaFusionResult = ot_fusion(
            checkpoints, target=target, weights=weights, data=data, device=device, **options)
        fusion = result
    elif method == "clafusion":
        result = clafusion(checkpoints, target=target, weights=weights, data=data,
                           device=device, **options)
        fusion = result.fusion
    else:
        raise MergeInputError(f"unknown fusion method {method!r} (ot or clafusion)")
    names = parents or [checkpoint_sha256(c) for c in checkpoints]
    extra: dict[str, Any] = {"target": target, **fusion.options}
    if isinstance(result, ClaFusionResult):
        extra["layer_mappings"] = result.mappings
    fusion.checkpoint = with_lineage(fusion.checkpoint, names, method, fusion.weights,
                                     fusion.bn_stats, **extra)
    return result
