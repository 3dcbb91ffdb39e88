"""Metanetwork resources and training requests as the API shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.ids import RecordId
from app.metanetworks.service import NAME_PATTERN


class MetanetworkOut(BaseModel):
    name: str = Field(description="the name to ask it by")
    task: str = Field(description="classification or generalization")
    labels: list[str] = Field(description="class labels (classification)")
    domain: dict[str, Any] = Field(description="the networks it was trained on")
    metrics: dict[str, Any] = Field(description="measured on held-out zoo splits")
    version: str = Field(description="card version + sha256 prefix of the weights")
    version_number: int = Field(description="N of name@N; `name` alone is the latest")
    builtin: bool = Field(description="shipped with the service (seen by every tenant)")
    status: str
    zoo_id: int | None = Field(description="the zoo it was trained on (trained ones)")
    job_id: int | None = Field(description="the train job that made it (trained ones)")
    created_at: dt.datetime


class MetanetworkDetail(MetanetworkOut):
    card: dict[str, Any] = Field(description="the whole card")


class TrainingConfig(BaseModel):
    """The metanetwork's size and its training; every knob has a range."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(default=32, ge=4, le=256)
    edge_hidden: int = Field(default=16, ge=2, le=128)
    layers: int = Field(default=3, ge=1, le=8)
    max_kernel: int = Field(default=9, ge=1, le=49, description="kernel entries per edge")
    fourier: int = Field(default=16, ge=1, le=64)
    dropout: float = Field(default=0.1, ge=0.0, le=0.5)
    layer_stats: bool = True
    scale_invariant: bool = False
    batch_size: int = Field(default=64, ge=1, le=1024)
    lr: float = Field(default=1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0)
    warmup_epochs: int = Field(default=3, ge=0, le=100)
    patience: int = Field(default=20, ge=1, le=1000)
    noise: float = Field(default=0.02, ge=0.0, le=1.0)
    weight_dropout: float = Field(default=0.05, ge=0.0, le=0.9)
    rank_loss: float = Field(default=1.0, ge=0.0, le=10.0)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    coverage: float = Field(default=0.9, ge=0.5, le=0.99)


class TrainRequest(BaseModel):
    """``POST /v1/metanetworks``: train metanetwork ``name`` (a new version when it exists)
    on zoo ``zoo_id``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, max_length=128, examples=["my-classifier"])
    zoo_id: RecordId
    epochs: int = Field(default=50, ge=1, le=1000)
    time_budget_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    config: TrainingConfig = Field(default_factory=TrainingConfig)


class TrainParams(TrainRequest):
    """The ``train`` job's params: the request and the tenant that made it."""

    tenant_id: RecordId


class DeletedOut(BaseModel):
    name: str
    versions: list[int]
