"""Git Re-Basin over the neuron map: align, interpolate and merge checkpoints.

* :func:`weight_matching`, :func:`activation_matching` -> :class:`MatchResult`
  (``perms``, objective before/after, sweeps, seconds; ``.apply(b)``);
* :func:`interpolate` -> naive and aligned loss/accuracy curves and barriers;
* :func:`reset_bn`, :func:`repair` for BatchNorm statistics after merging;
* :func:`merge`, :func:`merge_many` -> checkpoints with ``weightscope.lineage`` metadata.

The permutation spec is ``graphs.neuron_map``: every architecture the op graph describes
(MLPs, CNNs with flatten, ResNets with shortcuts, attention) is handled by the same code.
"""

from merging.activation_matching import activation_matching
from merging.batchnorm import repair, reset_bn
from merging.interpolation import InterpolationResult, Path, evaluate, interpolate
from merging.lineage import LINEAGE_KEY, checkpoint_sha256, lineage
from merging.merge import ManyMergeResult, MergeResult, align, merge, merge_many
from merging.weight_matching import MatchResult, weight_matching

__all__ = [
    "LINEAGE_KEY",
    "InterpolationResult",
    "ManyMergeResult",
    "MatchResult",
    "MergeResult",
    "Path",
    "activation_matching",
    "align",
    "checkpoint_sha256",
    "evaluate",
    "interpolate",
    "lineage",
    "merge",
    "merge_many",
    "repair",
    "reset_bn",
    "weight_matching",
]
