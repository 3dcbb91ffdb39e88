"""Git Re-Basin over the neuron map: align, interpolate and merge checkpoints."""

from merging.weight_matching import MatchResult, weight_matching

__all__ = ["MatchResult", "weight_matching"]
