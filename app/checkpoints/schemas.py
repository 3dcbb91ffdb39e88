"""Checkpoint resources as the API shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CheckpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sha256: str = Field(description="sha256 of the uploaded bytes (the deduplication key)")
    size: int = Field(description="uploaded size in bytes")
    format: str = Field(description="format as uploaded: safetensors or pytorch")
    filename: str | None
    blob_sha256: str = Field(description="sha256 of the stored safetensors file")
    blob_size: int
    tensor_count: int
    parameter_count: int
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
    created_at: dt.datetime
