"""Checkpoint resources as the API shows them; ``InspectResult`` is the ``inspect`` job's
result."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.jobs.schemas import register_result


class CheckpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="checkpoint id")
    sha256: str = Field(description="sha256 of the uploaded bytes (the deduplication key)")
    size: int = Field(description="uploaded size in bytes")
    format: str = Field(description="format as uploaded: safetensors or pytorch")
    filename: str | None = Field(description="file name given at upload")
    blob_sha256: str = Field(description="sha256 of the stored safetensors file")
    blob_size: int = Field(description="size of the stored safetensors file in bytes")
    tensor_count: int = Field(description="tensors in the state dict")
    parameter_count: int = Field(description="elements in all tensors")
    dtype_summary: dict[str, int] = Field(description="dtype -> number of elements")
    architecture: dict[str, Any] | None = Field(
        description="architecture op graph, or null when none is attached or inferable"
    )
    lineage: dict[str, Any] | None = Field(
        default=None,
        description="for merged checkpoints, the lineage the file carries: parents (sha256),"
        " method, lam, BatchNorm statistics",
    )
    reading: dict[str, Any] | None = Field(
        default=None,
        description="what reading the file decided: provenance of the architecture "
        "(declared, traced or inferred), assumptions inference made (e.g. activation, "
        "input_shape) with notes, what the upload settled (settled), training extras "
        "ignored (ignored_keys), the key the state dict was nested under and the wrapper "
        "prefix stripped",
    )
    created_at: dt.datetime = Field(description="when it was first uploaded (UTC)")


class TensorStatistics(BaseModel):
    name: str = Field(description="the tensor's name in the state dict")
    dtype: str = Field(description="its dtype, e.g. float32")
    shape: list[int] = Field(description="its shape")
    numel: int = Field(description="its number of elements")
    mean: float | None = Field(description="mean (null for an empty tensor)")
    std: float | None = Field(description="standard deviation (population)")
    min: float | None = Field(description="smallest element")
    max: float | None = Field(description="largest element")
    abs_max: float | None = Field(description="largest magnitude")
    frac_zero: float | None = Field(description="fraction of elements that are exactly 0")


class InspectResult(BaseModel):
    """Per-tensor statistics of a stored checkpoint (the ``inspect`` job's result)."""

    checkpoint_id: int = Field(description="the checkpoint inspected")
    tensor_count: int = Field(description="tensors in the state dict")
    parameter_count: int = Field(description="elements in all tensors")
    tensors: list[TensorStatistics] = Field(description="one entry per tensor, by name")


register_result("inspect", InspectResult)
