"""Weightscope's Python client: ``weightscope.Client(url, api_key=None)``.

The client and its errors live in ``app.client``; the records it returns are the API's own
models. The service itself is ``app`` (``weightscope serve``)."""

from app.checkpoints.schemas import CheckpointOut, InspectResult
from app.client import (
    ApiError,
    Client,
    Conflict,
    Forbidden,
    InvalidRequest,
    JobCanceled,
    JobFailed,
    NotFound,
    OutOfDomain,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    Unreachable,
    UnsupportedMediaType,
    WeightscopeError,
)
from app.datasets.schemas import DatasetOut
from app.jobs.schemas import JobOut
from app.merges.schemas import MergeOut, MergeResult
from app.metanetworks.schemas import MetanetworkDetail, MetanetworkOut
from app.predictions.schemas import PredictionOut, PredictionResult

__all__ = [
    "ApiError",
    "CheckpointOut",
    "Client",
    "Conflict",
    "DatasetOut",
    "Forbidden",
    "InspectResult",
    "InvalidRequest",
    "JobCanceled",
    "JobFailed",
    "JobOut",
    "MergeOut",
    "MergeResult",
    "MetanetworkDetail",
    "MetanetworkOut",
    "NotFound",
    "OutOfDomain",
    "PayloadTooLarge",
    "PredictionOut",
    "PredictionResult",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "Unreachable",
    "UnsupportedMediaType",
    "WeightscopeError",
]
