"""Checkpoints: tensors plus their architecture, read and written as self-describing safetensors.

Files are only ever read through :func:`graphs.safe_io.read_checkpoint` (the hardened reader).
The op graph travels in the safetensors header metadata under :data:`ARCH_KEY`; other
metadata (labels, lineage, hyperparameters) is kept as ``Checkpoint.metadata``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graphs.architecture import Architecture
from graphs.errors import ArchitectureError, CheckpointError
from graphs.infer import infer_architecture
from graphs.safe_io import read_checkpoint, to_safetensors_bytes
from graphs.trace import describe

__all__ = ["ARCH_KEY", "Checkpoint", "checkpoint_bytes", "load", "save", "save_checkpoint"]

ARCH_KEY = "weightscope.architecture"


@dataclass
class Checkpoint:
    """State-dict tensors, the op graph that wires them, and free-form string metadata."""

    tensors: dict[str, torch.Tensor]
    architecture: Architecture
    metadata: dict[str, str] = field(default_factory=dict)


def _metadata(checkpoint: Checkpoint) -> dict[str, str]:
    if ARCH_KEY in checkpoint.metadata:
        raise CheckpointError(f"metadata key {ARCH_KEY!r} is reserved for the architecture")
    return {**checkpoint.metadata, ARCH_KEY: checkpoint.architecture.to_json()}


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
    save_checkpoint(Checkpoint(tensors, arch, dict(metadata or {})), path)
    return arch


def load(source: bytes | str | os.PathLike[str],
         arch: Architecture | dict[str, Any] | str | None = None) -> Checkpoint:
    """Read a checkpoint safely and attach its architecture.

    Tensors come in the op graph's order (safetensors files store them sorted by name).
    The architecture is the ``arch`` argument if given, else the file's own metadata, else
    inferred from tensor names and shapes (plain ``nn.Sequential`` MLPs/CNNs, SIREN INRs,
    torchvision-style ResNets); failing all three a ``MissingArchitectureError`` says how to
    attach one.
    """
    raw = read_checkpoint(source)
    metadata = dict(raw.metadata)
    embedded = metadata.pop(ARCH_KEY, None)
    if arch is not None:
        architecture = Architecture.from_json(arch)
    elif embedded is not None:
        try:
            architecture = Architecture.from_json(embedded)
        except ArchitectureError as exc:
            raise ArchitectureError(f"architecture in the file metadata: {exc}") from None
    else:
        architecture = infer_architecture(raw.tensors)
    architecture.check_tensors(raw.tensors)
    tensors = {name: raw.tensors[name] for name in architecture.param_shapes()}
    return Checkpoint(tensors, architecture, metadata)


def from_module(module: nn.Module, example_input: torch.Tensor,
                metadata: dict[str, str] | None = None) -> Checkpoint:
    """A checkpoint of a live module (its state dict, detached and cloned) without a file."""
    arch = describe(module, example_input)
    tensors = {k: v.detach().clone() for k, v in arch.stored(module.state_dict()).items()}
    return Checkpoint(tensors, arch, dict(metadata or {}))
