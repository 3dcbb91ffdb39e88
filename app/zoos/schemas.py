"""Zoo resources as the API takes and shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models import ID_MAX

Task = Literal["classification", "regression"]
SplitName = Literal["train", "val", "test"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class ZooItemIn(BaseModel):
    """One item: a checkpoint with a label (classification) or a target (regression)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint_id: int = Field(ge=1, le=ID_MAX)
    label: str | int | None = Field(default=None, description="class (classification)")
    target: Any = Field(default=None, description="number to predict (regression)")
    group: str | int | None = Field(
        default=None, description="items of one group always land in the same split"
    )


class SplitFractions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: float = Field(default=0.7, gt=0, lt=1)
    val: float = Field(default=0.15, gt=0, lt=1)
    test: float = Field(default=0.15, gt=0, lt=1)


class ZooIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    task: Task
    items: list[ZooItemIn] = Field(max_length=100_000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    split_fractions: SplitFractions = Field(default_factory=SplitFractions)
    classes: list[str] | None = Field(
        default=None,
        description="class order (classification); default: sorted (numerically when every "
        "label is an integer)",
    )


class ArchitecturePresent(BaseModel):
    digest: str
    items: int
    description: str = Field(description="ops, parameters, inputs and outputs in one line")


class ZooOut(BaseModel):
    id: int
    name: str
    task: Task
    size: int
    classes: list[str] | None = Field(description="label order (classification), else null")
    seed: int
    split_fractions: dict[str, float]
    label_counts: dict[str, int] | None = Field(description="items per class (classification)")
    target_quantiles: dict[str, float] | None = Field(
        description="q00 ... q100 of the targets (regression)"
    )
    architectures: list[ArchitecturePresent]
    splits: dict[str, Any] = Field(
        description="per split: items, groups, and items per class (classification)"
    )
    created_at: dt.datetime


class ZooItemOut(BaseModel):
    position: int
    checkpoint_id: int
    label: str | None
    target: float | None
    group: str | None
    split: SplitName
