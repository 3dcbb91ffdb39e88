"""Zoo resources as the API takes and shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.ids import RecordId

Task = Literal["classification", "regression"]
SplitName = Literal["train", "val", "test"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class ZooItemIn(BaseModel):
    """One item: a checkpoint with a label (classification) or a target (regression)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint_id: RecordId = Field(description="one of the caller's checkpoints")
    label: str | int | None = Field(default=None, description="class (classification)")
    target: Any = Field(default=None, description="number to predict (regression)")
    group: str | int | None = Field(
        default=None, description="items of one group always land in the same split"
    )


class SplitFractions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: float = Field(default=0.7, gt=0, lt=1, description="share of items to train on")
    val: float = Field(
        default=0.15, gt=0, lt=1, description="share for validation (early stopping, intervals)"
    )
    test: float = Field(default=0.15, gt=0, lt=1, description="share held out for the card")


class ZooIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=NAME_PATTERN,
        description="unique among the caller's zoos",
    )
    task: Task = Field(description="classification (labels) or regression (numeric targets)")
    items: list[ZooItemIn] = Field(
        max_length=100_000, description="at least 20 checkpoints, each with its label or target"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="seed of the split")
    split_fractions: SplitFractions = Field(
        default_factory=SplitFractions, description="train/val/test shares of the split"
    )
    classes: list[str] | None = Field(
        default=None,
        description="class order (classification); default: sorted (numerically when every "
        "label is an integer)",
    )


class ArchitecturePresent(BaseModel):
    digest: str = Field(description="sha256 of the architecture (its op graph)")
    items: int = Field(description="items with this architecture")
    description: str = Field(description="ops, parameters, inputs and outputs in one line")


class ZooOut(BaseModel):
    id: int = Field(description="zoo id")
    name: str = Field(description="the zoo's name")
    task: Task = Field(description="classification or regression")
    size: int = Field(description="items")
    classes: list[str] | None = Field(description="label order (classification), else null")
    seed: int = Field(description="seed the split was made with")
    split_fractions: dict[str, float] = Field(description="train/val/test shares asked for")
    label_counts: dict[str, int] | None = Field(description="items per class (classification)")
    target_quantiles: dict[str, float] | None = Field(
        description="q00 ... q100 of the targets (regression)"
    )
    architectures: list[ArchitecturePresent] = Field(description="architectures present")
    splits: dict[str, Any] = Field(
        description="per split: items, groups, and items per class (classification)"
    )
    created_at: dt.datetime = Field(description="when it was made (UTC)")


class ZooItemOut(BaseModel):
    position: int = Field(description="the item's place in the zoo, from 0")
    checkpoint_id: int = Field(description="its checkpoint")
    label: str | None = Field(description="its class (classification)")
    target: float | None = Field(description="its target (regression)")
    group: str | None = Field(description="its group, if given")
    split: SplitName = Field(description="the split it was given at creation")
