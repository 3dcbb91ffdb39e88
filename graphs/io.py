"""Checkpoints: tensors plus their architecture, read and written as self-describing safetensors.

Files are only ever read through :func:`graphs.safe_io.read_checkpoint` (the hardened reader).
The op graph travels in the safetensors header metadata under :data:`ARCH_KEY`, and how it
was obtained under :data:`PROVENANCE_KEY`; other metadata (labels, lineage,
hyperparameters) is kept as ``Checkpoint.metadata``.

**Provenance.** Every architecture is ``traced`` (:func:`graphs.describe` of a live module,
as :func:`save` does), ``declared`` (given by the caller as ``arch``, or carried by a file
that does not say how it was made) or ``inferred`` (from tensor names and shapes by
:func:`graphs.infer.infer`, with the assumptions it made). It is kept beside the op graph,
not inside it, so two checkpoints of the same network have the same architecture (and
digest) however it was obtained.

**Same network, same bytes.** The architecture is written as canonical JSON (sorted keys,
compact) and the safetensors header is canonical (:func:`graphs.safe_io.to_safetensors_bytes`),
so saving the same network twice gives identical bytes and the service's sha256 dedupe works.

**Wrapper prefixes** (``module.``, ``_orig_mod.``, ``model.``: :mod:`graphs.layouts`) are
stripped when that is what makes the names fit: always before inference, and for a declared
architecture only when the names do not fit it as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from graphs.architecture import Architecture
from graphs.errors import ArchitectureError, CheckpointError
from graphs.infer import infer
from graphs.layouts import split_prefix, strip_prefix
from graphs.safe_io import RawCheckpoint, read_checkpoint, to_safetensors_bytes
from graphs.trace import describe

__all__ = [
    "ARCH_KEY",
    "PROVENANCE_KEY",
    "Checkpoint",
    "Loaded",
    "Provenance",
    "canonical_json",
    "checkpoint_bytes",
    "load",
    "load_checkpoint",
    "save",
    "save_checkpoint",
]

ARCH_KEY = "weightscope.architecture"
PROVENANCE_KEY = "weightscope.provenance"
Source = Literal["declared", "traced", "inferred"]
SOURCES: tuple[str, ...] = ("declared", "traced", "inferred")


@dataclass(frozen=True)
class Provenance:
    """How an architecture was obtained and, if inferred, what inference assumed."""

    source: Source
    assumptions: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return canonical_json({"source": self.source, "assumptions": self.assumptions})


TRACED = Provenance("traced")
DECLARED = Provenance("declared")


@dataclass
class Checkpoint:
    """State-dict tensors, the op graph that wires them, and free-form string metadata.

    ``provenance`` is written to the file when known (``None``: a checkpoint built by hand,
    read back as ``declared``)."""

    tensors: dict[str, torch.Tensor]
    architecture: Architecture
    metadata: dict[str, str] = field(default_factory=dict)
    provenance: Provenance | None = None


@dataclass
class Loaded:
    """A checkpoint as read from a user's file, with everything the reading decided.

    ``ignored_keys`` (dotted paths of training extras left aside), ``nested_under`` (keys
    descended through to the state dict), ``prefix_stripped`` (``""`` if none) and, for an
    inferred architecture, ``assumptions``/``notes`` are what the service should tell the user.
    """

    tensors: dict[str, torch.Tensor]
    architecture: Architecture
    provenance: Source
    assumptions: dict[str, Any]
    notes: tuple[str, ...]
    ignored_keys: tuple[str, ...]
    prefix_stripped: str
    nested_under: tuple[str, ...]
    metadata: dict[str, str]
    format: Literal["safetensors", "pytorch"]

    @property
    def arch(self) -> Architecture:
        return self.architecture

    @property
    def checkpoint(self) -> Checkpoint:
        """The plain :class:`Checkpoint` (same tensors, no copy)."""
        return Checkpoint(self.tensors, self.architecture, dict(self.metadata),
                          Provenance(self.provenance, dict(self.assumptions)))


def canonical_json(value: object) -> str:
    """Sorted keys, no spaces, ASCII only, no NaN: one text per value, so equal content
    gives equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def _metadata(checkpoint: Checkpoint) -> dict[str, str]:
    for key in (ARCH_KEY, PROVENANCE_KEY):
        if key in checkpoint.metadata:
            raise CheckpointError(f"metadata key {key!r} is reserved for the architecture")
    metadata = {**checkpoint.metadata,
                ARCH_KEY: canonical_json(checkpoint.architecture.to_dict())}
    if checkpoint.provenance is not None:
        metadata[PROVENANCE_KEY] = checkpoint.provenance.to_json()
    return metadata


def checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    """The checkpoint as self-describing safetensors bytes."""
    checkpoint.architecture.check_tensors(checkpoint.tensors)
    return to_safetensors_bytes(checkpoint.tensors, _metadata(checkpoint))


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike[str]) -> None:
    """Write the checkpoint as a self-describing safetensors file."""
    Path(path).write_bytes(checkpoint_bytes(checkpoint))


def save(module: nn.Module, path: str | os.PathLike[str], example_input: torch.Tensor,
         metadata: dict[str, str] | None = None) -> Architecture:
    """Describe ``module`` by tracing and write its state dict with the op graph attached."""
    arch = describe(module, example_input)
    tensors = {k: v.detach() for k, v in arch.stored(module.state_dict()).items()}
    save_checkpoint(Checkpoint(tensors, arch, dict(metadata or {}), TRACED), path)
    return arch


def load(source: bytes | str | os.PathLike[str],
         arch: Architecture | dict[str, Any] | str | None = None, *,
         activation: str | None = None,
         input_shape: Sequence[int] | None = None) -> Checkpoint:
    """Read a checkpoint safely and attach its architecture (:func:`load_checkpoint`, less
    the report of what was decided; ``Checkpoint.provenance`` keeps how it was obtained)."""
    return load_checkpoint(source, arch, activation=activation,
                           input_shape=input_shape).checkpoint


def load_checkpoint(source: bytes | str | os.PathLike[str] | RawCheckpoint,
                    arch: Architecture | Mapping[str, Any] | str | None = None, *,
                    activation: str | None = None,
                    input_shape: Sequence[int] | None = None) -> Loaded:
    """Read a checkpoint safely, attach its architecture and say how both were found.

    Tensors come in the op graph's order (safetensors files store them sorted by name).
    The architecture is the ``arch`` argument if given (``declared``), else the file's own
    (with the provenance the file claims, ``declared`` if none), else inferred from tensor
    names and shapes (``inferred``: plain ``nn.Sequential`` MLPs/CNNs, SIREN INRs, torchvision-style
    ResNets), where ``activation``/``input_shape`` settle what the tensors cannot say; they
    are refused for a declared or traced architecture, which already says it. Failing all
    three a ``MissingArchitectureError`` says how to attach one.

    ``source`` may be a :class:`RawCheckpoint` already read (the file is then not read
    again). Raises :class:`CheckpointError` (unreadable or unsafe file) or
    :class:`ArchitectureError` (bad ``arch``, tensors that do not fit, no architecture).
    """
    raw = source if isinstance(source, RawCheckpoint) else read_checkpoint(source)
    metadata = dict(raw.metadata)
    embedded = metadata.pop(ARCH_KEY, None)
    recorded = metadata.pop(PROVENANCE_KEY, None)
    declared = arch is not None or embedded is not None
    if declared and (activation is not None or input_shape is not None):
        raise ArchitectureError(
            "activation= and input_shape= settle an inferred architecture only; this "
            "checkpoint's architecture is given (arch or file metadata) and already fixes both")
    notes: tuple[str, ...] = ()
    if arch is not None:
        architecture, provenance = Architecture.from_json(arch), DECLARED
        tensors, prefix = _fit_names(raw.tensors, architecture)
    elif embedded is not None:
        architecture, provenance = _embedded(embedded, recorded)
        tensors, prefix = _fit_names(raw.tensors, architecture)
    else:
        prefix = split_prefix(raw.tensors)
        tensors = strip_prefix(raw.tensors, prefix)
        inferred = infer(tensors, activation=activation, input_shape=input_shape)
        architecture, notes = inferred.architecture, inferred.notes
        provenance = Provenance("inferred", inferred.assumptions)
    ordered = {name: tensors[name] for name in architecture.param_shapes()}
    return Loaded(ordered, architecture, provenance.source, dict(provenance.assumptions),
                  notes, raw.ignored_keys, prefix, raw.nested_under, metadata, raw.format)


def _embedded(embedded: str, recorded: str | None) -> tuple[Architecture, Provenance]:
    try:
        architecture = Architecture.from_json(embedded)
    except ArchitectureError as exc:
        raise ArchitectureError(f"architecture in the file metadata: {exc}") from None
    return architecture, _provenance(recorded)


def _provenance(recorded: str | None) -> Provenance:
    """The provenance a file records; ``declared`` when it records none (hand-written)."""
    if recorded is None:
        return DECLARED
    try:
        value = json.loads(recorded)
    except (ValueError, RecursionError):
        value = None
    if not (isinstance(value, dict) and set(value) == {"source", "assumptions"}
            and value["source"] in SOURCES and isinstance(value["assumptions"], dict)):
        raise ArchitectureError(
            f"provenance in the file metadata must be {{\"source\": one of "
            f"{', '.join(SOURCES)}, \"assumptions\": {{...}}}}")
    return Provenance(value["source"], value["assumptions"])


def _fit_names(tensors: dict[str, torch.Tensor],
               architecture: Architecture) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors as the architecture names them: as they are, or without the wrapper
    prefix if that is what makes them fit; otherwise the architecture's own error."""
    expected = architecture.param_shapes().keys()
    if tensors.keys() != expected:
        prefix = split_prefix(tensors)
        stripped = strip_prefix(tensors, prefix)
        if prefix and stripped.keys() == expected:
            architecture.check_tensors(stripped)
            return stripped, prefix
    architecture.check_tensors(tensors)
    return dict(tensors), ""


def from_module(module: nn.Module, example_input: torch.Tensor,
                metadata: dict[str, str] | None = None) -> Checkpoint:
    """A checkpoint of a live module (its state dict, detached and cloned) without a file."""
    arch = describe(module, example_input)
    tensors = {k: v.detach().clone() for k, v in arch.stored(module.state_dict()).items()}
    return Checkpoint(tensors, arch, dict(metadata or {}), TRACED)
