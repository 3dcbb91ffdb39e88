"""Prediction resources as the API shows them; ``PredictionResult`` is the ``predict`` job's
result."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.ids import RecordId
from app.jobs.schemas import register_result


class PredictionCreate(BaseModel):
    checkpoint_id: RecordId = Field(description="the stored checkpoint to ask about")
    metanetwork: str = Field(
        min_length=1, max_length=128, description="the metanetwork to ask (its name)"
    )
    force: bool = Field(
        default=False, description="answer even outside the domain (flagged in_domain=false)"
    )


class PredictionResult(BaseModel):
    """A metanetwork's answer for one checkpoint (the ``predict`` job's result)."""

    checkpoint_id: int = Field(description="the checkpoint asked about")
    metanetwork: str = Field(description="the metanetwork that answered")
    metanetwork_version: str = Field(description="card version + sha256 prefix of its weights")
    task: str = Field(description="classification or generalization")
    in_domain: bool = Field(description="the checkpoint is like the networks it was trained on")
    domain_issues: list[str] = Field(
        default_factory=list, description="why it is outside the domain (empty inside)"
    )
    label: str | None = Field(default=None, description="predicted class (classification)")
    probabilities: dict[str, float] | None = Field(
        default=None, description="label -> probability (classification)"
    )
    value: float | None = Field(
        default=None, description="predicted test accuracy (generalization)"
    )
    interval: list[float] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="[low, high] conformal interval around value (generalization)",
    )
    coverage: float | None = Field(
        default=None, description="target coverage of the interval, e.g. 0.9"
    )
    assumptions: dict[str, Any] = Field(
        default_factory=dict,
        description="what reading an inferred architecture assumed (activation, input shape)",
    )
    timings: dict[str, Any] = Field(
        default_factory=dict,
        description="milliseconds per step (load_ms, graph_ms, forward_ms, job_ms), the batch "
        "size and device",
    )


register_result("predict", PredictionResult)


class PredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="prediction id")
    job_id: int | None = Field(description="the predict job that answered")
    checkpoint_id: int = Field(description="the checkpoint asked about")
    metanetwork: str | None = Field(description="the metanetwork that answered")
    metanetwork_version: str | None = Field(
        description="card version + sha256 prefix of its weights"
    )
    task: str | None = Field(description="classification or generalization")
    label: str | None = Field(description="predicted class (classification)")
    probabilities: dict[str, float] | None = Field(
        description="label -> probability (classification)"
    )
    value: float | None = Field(description="predicted test accuracy (generalization)")
    interval_low: float | None = Field(description="lower end of the conformal interval")
    interval_high: float | None = Field(description="upper end of the conformal interval")
    coverage: float | None = Field(description="target coverage of the conformal interval")
    in_domain: bool | None = Field(
        description="the checkpoint is like the networks the metanetwork was trained on"
    )
    domain_issues: list[str] | None = Field(description="why it is outside the domain")
    timings: dict[str, Any] | None = Field(description="milliseconds per step, batch, device")
    created_at: dt.datetime = Field(description="when it was answered (UTC)")
