"""Graph metanetworks: learn from a network's weights alone, modulo permutation symmetry.

Public surface:

* :class:`MetanetConfig`, :class:`TrainConfig` (dataclasses); :class:`GraphMetanet` (the
  model) built from :class:`NGConv` layers, with optional probe features
  (:mod:`models.probes`: neuron values on learned inputs, for INRs);
* :class:`StatNN`, the per-tensor statistics baseline;
* :func:`train_on_zoo` / :func:`ship` (zoo directory -> trained metanetwork + card);
* built-ins: :func:`available`, :func:`load_metanetwork`, :func:`predict` (batched, GPU when
  present) -> :class:`Prediction`; :class:`OutOfDomainError` for checkpoints unlike the
  training zoo.
"""

from models.config import MetanetConfig, TrainConfig
from models.fit import ship, train_on_zoo
from models.layers import NGConv
from models.metanet import GraphMetanet
from models.registry import (
    Metanetwork,
    MetanetworkError,
    OutOfDomainError,
    Prediction,
    available,
    load_metanetwork,
    predict,
)
from models.statnn import StatNN

__all__ = [
    "GraphMetanet",
    "MetanetConfig",
    "Metanetwork",
    "MetanetworkError",
    "NGConv",
    "OutOfDomainError",
    "Prediction",
    "StatNN",
    "TrainConfig",
    "available",
    "load_metanetwork",
    "predict",
    "ship",
    "train_on_zoo",
]
