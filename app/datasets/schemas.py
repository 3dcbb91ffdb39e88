"""Dataset resources as the API shows them."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sha256: str
    size: int
    filename: str | None
    num_samples: int
    x_shape: list[int] = Field(description="shape of x, samples first")
    y_shape: list[int]
    num_classes: int = Field(description="1 + the largest class index in y")
    created_at: dt.datetime
