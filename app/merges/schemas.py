"""Merge resources as the API shows them; ``MergeCreate`` is also the merge job's params."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from app.ids import RecordId

MAX_INPUTS = 8


PERMUTATION_METHODS = ("weight", "activation", "ste")
FUSION_METHODS = ("ot", "clafusion")


class MergeCreate(BaseModel):
    checkpoints: list[RecordId] = Field(min_length=2, max_length=MAX_INPUTS, examples=[[1, 2]])
    method: Literal["weight", "activation", "ste", "ot", "clafusion"] = Field(
        default="weight",
        description="weight / activation matching, ste (straight-through estimator, needs a "
        "dataset): one architecture; ot (optimal-transport fusion: networks of different "
        "widths) and clafusion (MLPs of different depths) fuse into one input's shape",
    )
    lam: float = Field(default=0.5, ge=0.0, le=1.0, description="weight of B (two inputs)")
    dataset_id: RecordId | None = Field(
        default=None, description="evaluation set: curves, barrier, BatchNorm reset"
    )
    curve_points: int = Field(default=11, ge=2, le=101)
    canonical: bool = Field(
        default=False,
        description="weight matching of canonical forms (ReLU neurons' scales and odd "
        "activations' signs fixed first)",
    )
    solver: Literal["emd", "sinkhorn"] = Field(
        default="emd", description="transport solver of ot / clafusion: exact or entropic"
    )
    target: int = Field(
        default=0, ge=0, description="fusions: index of the input whose widths the result takes"
    )

    @model_validator(mode="after")
    def _options_fit_the_method(self) -> MergeCreate:
        many = len(self.checkpoints) > 2
        if many and self.lam != 0.5:
            raise ValueError("lam applies to two checkpoints; more are averaged uniformly")
        if many and self.method not in ("weight", *FUSION_METHODS):
            raise ValueError("more than two checkpoints are merged by weight, ot or clafusion")
        if self.canonical and self.method != "weight":
            raise ValueError("canonical applies to weight matching only")
        if self.target >= len(self.checkpoints):
            raise ValueError("target must index one of the checkpoints")
        if self.target and self.method not in FUSION_METHODS:
            raise ValueError("target applies to fusions (ot, clafusion); permutation merges "
                             "align to the first checkpoint")
        return self


class MergeOut(BaseModel):
    id: int
    job_id: int | None
    checkpoints: list[int]
    result_checkpoint_id: int | None
    method: str | None
    lam: float | None
    dataset_id: int | None
    barrier: float | None = Field(description="loss barrier of the aligned path (with data)")
    timings: dict[str, Any] | None
    result: dict[str, Any] | None = Field(
        description="permutation summary per input, curves (naive and aligned), merged "
        "network's loss and accuracy (the merge job's result)"
    )
    created_at: dt.datetime
