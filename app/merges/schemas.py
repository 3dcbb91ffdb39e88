"""Merge resources as the API shows them; ``MergeCreate`` is also the merge job's params and
``MergeResult`` its result."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from app.ids import RecordId
from app.jobs.schemas import register_result

MAX_INPUTS = 8


PERMUTATION_METHODS = ("weight", "activation", "ste")
FUSION_METHODS = ("ot", "clafusion")


class MergeCreate(BaseModel):
    checkpoints: list[RecordId] = Field(
        min_length=2,
        max_length=MAX_INPUTS,
        examples=[[1, 2]],
        description="checkpoint ids; the first is the reference the others are aligned to "
        "(the merged file takes its dtype; a fusion's takes the target's)",
    )
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
    curve_points: int = Field(
        default=11, ge=2, le=101, description="λ values on each interpolation curve"
    )
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


class GroupMoves(BaseModel):
    size: int = Field(description="neurons in the group")
    moved: int = Field(description="neurons the permutation moved")


class Permutations(BaseModel):
    groups: dict[str, GroupMoves] = Field(description="neuron group -> its permutation's size")
    neurons: int = Field(description="permutable neurons in all groups")
    moved: int = Field(description="neurons moved in all groups")


class MatchSummary(BaseModel):
    """How one input was aligned to the reference."""

    method: str = Field(description="matching method: weight, activation or ste")
    objective_before: float = Field(description="matching objective before aligning")
    objective_after: float = Field(description="matching objective after aligning")
    sweeps: int = Field(description="coordinate-descent sweeps run")
    seconds: float = Field(description="time the matching took")
    permutations: Permutations = Field(description="what the permutations moved")


class FusionSummary(BaseModel):
    target: int = Field(description="index of the input whose widths the result takes")
    solver: str = Field(description="transport solver: emd or sinkhorn")
    seconds: float = Field(description="time the fusion took")


class MergedScores(BaseModel):
    loss: float = Field(description="cross-entropy of the merged network on the dataset")
    accuracy: float = Field(description="its accuracy on the dataset, 0 to 1")


class CurvePath(BaseModel):
    """Loss and accuracy along λ on one interpolation path."""

    lambdas: list[float] = Field(description="interpolation weights of B, 0 to 1")
    losses: list[float] | None = Field(description="loss at each λ")
    accuracies: list[float] | None = Field(description="accuracy at each λ, 0 to 1")
    bn: str = Field(description="BatchNorm statistics on the path: stale, reset or repair")
    distance: float = Field(description="‖θA − θB‖ of the path's endpoints")
    barrier: float | None = Field(description="loss barrier: the largest rise above the line")
    accuracy_barrier: float | None = Field(description="accuracy barrier (the largest drop)")


class Curves(BaseModel):
    naive: CurvePath | None = Field(description="A to B as uploaded (same architecture)")
    aligned: CurvePath | None = Field(description="A to B aligned to A")


class StagedFile(BaseModel):
    sha256: str = Field(description="sha256 of the merged safetensors file")
    size: int = Field(description="its size in bytes")


class MergeDtypes(BaseModel):
    """Which dtypes went in and which one the merged file holds: the merge computes in
    float32 and stores the result in the reference's dtype (the first input's; a fusion's
    target's), so inputs of other dtypes are converted."""

    inputs: list[str] = Field(description="each input's floating dtype (F16, BF16, F32 ...)")
    result: str = Field(description="the merged file's floating dtype: the reference's")


class MergeResult(BaseModel):
    """What a merge found (the ``merge`` job's result); curves, barriers and scores need a
    dataset."""

    checkpoints: list[int] = Field(description="the inputs, reference first")
    method: str = Field(description="the merge method")
    lam: float | None = Field(default=None, description="weight of B (two inputs)")
    dataset_id: int | None = Field(default=None, description="the evaluation set")
    matches: list[MatchSummary] = Field(
        default_factory=list, description="one alignment per input after the first"
    )
    bn_stats: str | None = Field(
        default=None, description="how BatchNorm statistics were set (none without BatchNorm)"
    )
    fusion: FusionSummary | None = Field(default=None, description="fusions (ot, clafusion)")
    rounds: int | None = Field(default=None, description="rounds of a many-input merge")
    dtypes: MergeDtypes | None = Field(
        default=None, description="the inputs' dtypes and the merged file's (the reference's)"
    )
    merged: MergedScores | None = Field(default=None, description="the merged network's scores")
    curves: Curves | None = Field(default=None, description="interpolation curves (two inputs)")
    barrier: float | None = Field(default=None, description="loss barrier of the aligned path")
    naive_barrier: float | None = Field(default=None, description="loss barrier, naive path")
    merged_checkpoint: StagedFile | None = Field(
        default=None, description="the merged file (in the job's result only)"
    )
    timings: dict[str, Any] = Field(
        default_factory=dict, description="milliseconds per step (load, merge, evaluate, total)"
    )


register_result("merge", MergeResult)


class MergeOut(BaseModel):
    id: int = Field(description="merge id")
    job_id: int | None = Field(description="the merge job")
    checkpoints: list[int] = Field(description="the inputs, reference first")
    result_checkpoint_id: int | None = Field(description="the merged checkpoint")
    method: str | None = Field(description="the merge method")
    lam: float | None = Field(description="weight of B (two inputs)")
    dataset_id: int | None = Field(description="the evaluation set")
    barrier: float | None = Field(description="loss barrier of the aligned path (with data)")
    timings: dict[str, Any] | None = Field(description="milliseconds per step")
    result: MergeResult | None = Field(
        description="permutation summary per input, curves (naive and aligned), merged "
        "network's loss and accuracy (the merge job's result)"
    )
    created_at: dt.datetime = Field(description="when it was stored (UTC)")
