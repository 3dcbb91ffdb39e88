"""Lineage of merged checkpoints, kept in the safetensors header metadata.

``"weightscope.lineage"`` holds JSON ``{parents, method, lam, bn_stats, ...}``: the parents'
sha256 (of their self-describing safetensors bytes) or names, how B was aligned, the
interpolation weight, and whether the BatchNorm statistics were ``"stale"`` (lerped, not
valid for the merged weights), ``"reset"`` on data or ``"repair"``-ed. Networks without
BatchNorm say ``"none"``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from graphs import Checkpoint, checkpoint_bytes

__all__ = ["LINEAGE_KEY", "checkpoint_sha256", "lineage", "with_lineage"]

LINEAGE_KEY = "weightscope.lineage"


def checkpoint_sha256(checkpoint: Checkpoint) -> str:
    """sha256 of the checkpoint's self-describing safetensors bytes."""
    return hashlib.sha256(checkpoint_bytes(checkpoint)).hexdigest()


def with_lineage(checkpoint: Checkpoint, parents: list[str], method: str,
                 lam: float | list[float], bn_stats: str, **extra: Any) -> Checkpoint:
    """The checkpoint with its lineage written into its metadata (other keys kept)."""
    record = {"parents": parents, "method": method, "lam": lam, "bn_stats": bn_stats, **extra}
    metadata = {**checkpoint.metadata, LINEAGE_KEY: json.dumps(record, sort_keys=True)}
    return Checkpoint(checkpoint.tensors, checkpoint.architecture, metadata)


def lineage(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """The lineage record of a merged checkpoint, or ``None`` for an original one."""
    raw = checkpoint.metadata.get(LINEAGE_KEY)
    return None if raw is None else json.loads(raw)
