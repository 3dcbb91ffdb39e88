"""Weightscope's core library: one representation of a network's permutation symmetry.

Public surface:

* op graph: :class:`Architecture` (``to_json``/``from_json``/``summary``), :func:`describe`
  (torch.fx tracing), :func:`build_module` (rebuild without user code), :class:`Sine`,
  :class:`Cosine`; :data:`OPS`, the op registry (one module per op under ``graphs.ops``);
* checkpoints: :class:`Checkpoint`, :func:`save`, :func:`save_checkpoint`,
  :func:`checkpoint_bytes`, :func:`load` (metadata, ``arch`` argument or inference);
* user files: :func:`load_checkpoint` -> :class:`Loaded` (tensors, architecture, provenance,
  assumptions, ignored training extras, stripped prefix); :func:`infer` -> :class:`Inferred`;
* neuron map: :func:`neuron_map` -> :class:`NeuronMap` (groups, per-axis group ids, views);
* symmetry: :func:`sample_permutations`, :func:`apply_permutation`,
  :func:`random_permutation`, :func:`check_permutations`;
* parameter graph: :func:`to_graph`, :func:`from_graph`; :func:`summary_text` for the CLI.

Errors are :mod:`graphs.errors` ``ValueError`` subclasses with one-line messages.
"""

from graphs.architecture import Architecture
from graphs.canonical import canonical_groups, canonicalize, scale_invariant_input  # noqa: F401
from graphs.domain import io_fits, io_signature
from graphs.errors import (
    ArchitectureError,
    CheckpointError,
    GraphsError,
    MissingArchitectureError,
    UnsupportedOpError,
)
from graphs.infer import Inferred, infer, infer_architecture
from graphs.interpreter import OpGraphModule, build_module
from graphs.io import (
    ARCH_KEY,
    PROVENANCE_KEY,
    Checkpoint,
    Loaded,
    Provenance,
    checkpoint_bytes,
    from_module,
    load,
    load_checkpoint,
    save,
    save_checkpoint,
)
from graphs.modules import Cosine, Sine
from graphs.neuron_map import NeuronGroup, NeuronMap, View, neuron_map
from graphs.ops import OPS
from graphs.parameter_graph import (
    ACTIVATION_IDS,
    DEFAULT_MAX_KERNEL,
    EDGE_TYPES,
    FUNCTION_IDS,
    NODE_FEATURES,
    NODE_TYPES,
    edge_features,
    from_graph,
    graph_bytes,
    kernel_shapes,
    kernels_by_shape,
    to_graph,
)
from graphs.permutation import (
    PermutationError,
    apply_permutation,
    check_permutations,
    random_permutation,
    sample_permutations,
)
from graphs.summary import summary_text
from graphs.trace import describe

__all__ = [
    "ACTIVATION_IDS",
    "ARCH_KEY",
    "DEFAULT_MAX_KERNEL",
    "EDGE_TYPES",
    "FUNCTION_IDS",
    "NODE_FEATURES",
    "NODE_TYPES",
    "OPS",
    "PROVENANCE_KEY",
    "Architecture",
    "ArchitectureError",
    "Checkpoint",
    "CheckpointError",
    "Cosine",
    "GraphsError",
    "Inferred",
    "Loaded",
    "MissingArchitectureError",
    "NeuronGroup",
    "NeuronMap",
    "OpGraphModule",
    "PermutationError",
    "Provenance",
    "Sine",
    "UnsupportedOpError",
    "View",
    "apply_permutation",
    "build_module",
    "check_permutations",
    "checkpoint_bytes",
    "describe",
    "edge_features",
    "from_graph",
    "from_module",
    "graph_bytes",
    "infer",
    "infer_architecture",
    "io_fits",
    "io_signature",
    "kernel_shapes",
    "kernels_by_shape",
    "load",
    "load_checkpoint",
    "neuron_map",
    "random_permutation",
    "sample_permutations",
    "save",
    "save_checkpoint",
    "summary_text",
    "to_graph",
]
