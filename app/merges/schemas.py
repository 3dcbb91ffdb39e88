"""Merge resources as the API shows them; ``MergeCreate`` is also the merge job's params."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

MAX_INPUTS = 8


class MergeCreate(BaseModel):
    checkpoints: list[int] = Field(min_length=2, max_length=MAX_INPUTS, examples=[[1, 2]])
    method: Literal["weight", "activation"] = "weight"
    lam: float = Field(default=0.5, ge=0.0, le=1.0, description="weight of B (two inputs)")
    dataset_id: int | None = Field(
        default=None, description="evaluation set: curves, barrier, BatchNorm reset"
    )
    curve_points: int = Field(default=11, ge=2, le=101)

    @model_validator(mode="after")
    def _many_are_averaged(self) -> MergeCreate:
        if len(self.checkpoints) > 2 and self.lam != 0.5:
            raise ValueError("lam applies to two checkpoints; more are averaged uniformly")
        if len(self.checkpoints) > 2 and self.method != "weight":
            raise ValueError("more than two checkpoints are merged by weight matching only")
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
