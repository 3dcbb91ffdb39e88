"""Dataset resources as the API shows them."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="dataset id")
    sha256: str = Field(description="sha256 of the uploaded bytes (the deduplication key)")
    size: int = Field(description="uploaded size in bytes")
    filename: str | None = Field(description="file name given at upload")
    num_samples: int = Field(description="samples in x and y")
    x_shape: list[int] = Field(description="shape of x, samples first")
    y_shape: list[int] = Field(description="shape of y (class indices)")
    num_classes: int = Field(description="1 + the largest class index in y")
    created_at: dt.datetime = Field(description="when it was first uploaded (UTC)")
