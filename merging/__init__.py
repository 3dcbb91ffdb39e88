"""Merging networks modulo their symmetries, over the neuron map.

* Git Re-Basin (Ainsworth et al., ICLR 2023): :func:`weight_matching` (optionally on
  canonical forms), :func:`activation_matching`, :func:`ste_matching` -> :class:`MatchResult`
  (``perms``, objective before/after, sweeps, seconds; ``.apply(b)``, ``.endpoints(a, b)``);
* :func:`interpolate` -> naive and aligned loss/accuracy curves and barriers;
* :func:`reset_bn`, :func:`repair` for BatchNorm statistics after merging;
* OT fusion (Singh & Jaggi, NeurIPS 2020): :func:`ot_fusion` for networks of one layout and
  different widths; CLAFusion (Nguyen et al.): :func:`clafusion` for MLPs of different
  depths; both -> a one-shot fused network plus a :class:`FinetuneRecipe` (:func:`finetune`);
* :func:`merge`, :func:`merge_many`, :func:`fuse` -> checkpoints with ``weightscope.lineage``
  metadata; :func:`check_method` validates a request up front.

Errors for inputs a method cannot take are :class:`MergeInputError` and its subclass
:class:`UnsupportedMergeError` (both ``ValueError``; the service answers 422).

The permutation spec is ``graphs.neuron_map``: every architecture the op graph describes
(MLPs, CNNs with flatten, ResNets with shortcuts, attention) is handled by the same code.
"""

from merging.activation_matching import activation_matching
from merging.batchnorm import repair, reset_bn
from merging.clafusion import ClaFusionResult, clafusion, layer_alignment
from merging.errors import MergeInputError, UnsupportedMergeError
from merging.finetune import FinetuneRecipe, finetune
from merging.interpolation import InterpolationResult, Path, evaluate, interpolate
from merging.lineage import LINEAGE_KEY, checkpoint_sha256, lineage
from merging.merge import (
    METHODS,
    ManyMergeResult,
    MergeResult,
    align,
    check_method,
    fuse,
    merge,
    merge_many,
)
from merging.ot_fusion import FusionResult, ot_fusion
from merging.ste import ste_matching
from merging.weight_matching import MatchResult, weight_matching

__all__ = [
    "LINEAGE_KEY",
    "METHODS",
    "ClaFusionResult",
    "FinetuneRecipe",
    "FusionResult",
    "InterpolationResult",
    "ManyMergeResult",
    "MatchResult",
    "MergeInputError",
    "MergeResult",
    "Path",
    "UnsupportedMergeError",
    "activation_matching",
    "align",
    "check_method",
    "checkpoint_sha256",
    "clafusion",
    "evaluate",
    "finetune",
    "fuse",
    "interpolate",
    "layer_alignment",
    "lineage",
    "merge",
    "merge_many",
    "ot_fusion",
    "repair",
    "reset_bn",
    "ste_matching",
    "weight_matching",
]
