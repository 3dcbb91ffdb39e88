"""Prediction resources as the API shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.ids import RecordId


class PredictionCreate(BaseModel):
    checkpoint_id: RecordId
    metanetwork: str = Field(min_length=1, max_length=128)
    force: bool = Field(
        default=False, description="answer even outside the domain (flagged in_domain=false)"
    )


class PredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_id: int | None
    checkpoint_id: int
    metanetwork: str | None
    metanetwork_version: str | None
    task: str | None = Field(description="classification or generalization")
    label: str | None
    probabilities: dict[str, float] | None
    value: float | None = Field(description="predicted test accuracy (generalization)")
    interval_low: float | None
    interval_high: float | None
    coverage: float | None = Field(description="target coverage of the conformal interval")
    in_domain: bool | None
    domain_issues: list[str] | None
    timings: dict[str, Any] | None
    created_at: dt.datetime
