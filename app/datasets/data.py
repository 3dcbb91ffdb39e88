"""Evaluation sets: a safetensors file with ``x`` (float, one row per sample) and ``y``
(class indices). Read with the same hardened reader as checkpoints; shared by the API
(validation at upload) and by merge workers (loading)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from graphs import CheckpointError
from graphs.safe_io import read_checkpoint

MAX_SAMPLES = 100_000


@dataclass
class EvalSet:
    x: torch.Tensor
    y: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1


def read_eval_set(source: Path | bytes) -> EvalSet:
    """Validate and load; raises ``CheckpointError`` (a ``ValueError``) naming the problem."""
    raw = read_checkpoint(source)
    missing = {"x", "y"} - raw.tensors.keys()
    if missing:
        raise CheckpointError(
            f"a dataset needs tensors 'x' and 'y'; missing: {', '.join(sorted(missing))}"
        )
    extra = sorted(raw.tensors.keys() - {"x", "y"})
    if extra:
        raise CheckpointError(f"a dataset holds only 'x' and 'y'; unexpected: {', '.join(extra)}")
    x, y = raw.tensors["x"], raw.tensors["y"]
    if not x.is_floating_point() or x.dim() < 2:
        raise CheckpointError(
            f"'x' must be a float tensor of shape (samples, *input shape); got {x.dtype} "
            f"{list(x.shape)}"
        )
    if y.is_floating_point() or y.dtype == torch.bool or y.dim() != 1:
        raise CheckpointError(
            f"'y' must be a 1-d integer tensor of class indices; got {y.dtype} {list(y.shape)}"
        )
    if len(y) != len(x) or len(x) == 0:
        raise CheckpointError(
            f"'x' and 'y' must hold the same, non-zero number of samples; got {len(x)} and {len(y)}"
        )
    if len(x) > MAX_SAMPLES:
        raise CheckpointError(f"at most {MAX_SAMPLES} samples; got {len(x)}")
    if int(y.min()) < 0:
        raise CheckpointError("'y' holds negative class indices")
    return EvalSet(x.float(), y.long())
