"""Metanetwork resources as the API shows them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class MetanetworkOut(BaseModel):
    name: str = Field(description="the name to ask it by")
    task: str = Field(description="classification or generalization")
    labels: list[str] = Field(description="class labels (classification)")
    domain: dict[str, Any] = Field(description="the networks it was trained on")
    metrics: dict[str, Any] = Field(description="measured on held-out zoo splits")
    version: str = Field(description="card version + sha256 prefix of the weights")


class MetanetworkDetail(MetanetworkOut):
    card: dict[str, Any] = Field(description="the whole card")
