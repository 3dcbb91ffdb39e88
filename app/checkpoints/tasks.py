"""The ``inspect`` job kind: per-tensor statistics of a stored checkpoint."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from app.blobs import BlobStore
from app.checkpoints import repository
from app.checkpoints.service import DTYPE_NAMES
from app.db import read_session
from app.ids import RecordId
from app.jobs.kind import JobContext, JobKind, register
from app.settings import Settings
from graphs.safe_io import read_checkpoint


class InspectParams(BaseModel):
    checkpoint_id: RecordId = Field(description="the stored checkpoint to inspect")


def tensor_statistics(tensor: torch.Tensor) -> dict[str, Any]:
    stats: dict[str, Any] = {"shape": list(tensor.shape), "numel": tensor.numel()}
    if tensor.numel() == 0:
        return stats | dict.fromkeys(("mean", "std", "min", "max", "abs_max", "frac_zero"))
    values = tensor.to(torch.float64)
    return stats | {
        "mean": values.mean().item(),
        "std": values.std(correction=0).item(),
        "min": values.min().item(),
        "max": values.max().item(),
        "abs_max": values.abs().max().item(),
        "frac_zero": (values == 0).double().mean().item(),
    }


def run_inspect(ctx: JobContext) -> dict[str, Any]:
    params = InspectParams.model_validate(ctx.params)
    with read_session(ctx.session_factory) as session:
        blob = repository.blobs_of(session, [params.checkpoint_id]).get(params.checkpoint_id)
    if blob is None:
        raise ValueError(f"checkpoint {params.checkpoint_id} no longer exists")
    loaded = read_checkpoint(BlobStore(ctx.settings.blob_dir).path(blob))
    tensors = []
    items = sorted(loaded.tensors.items())
    for index, (name, tensor) in enumerate(items):
        ctx.progress(index / max(len(items), 1))
        dtype = DTYPE_NAMES[tensor.dtype]
        tensors.append({"name": name, "dtype": dtype} | tensor_statistics(tensor))
    return {
        "checkpoint_id": params.checkpoint_id,
        "tensor_count": len(tensors),
        "parameter_count": sum(t["numel"] for t in tensors),
        "tensors": tensors,
    }


def check_inspect(
    session: Session, params: InspectParams, settings: Settings, tenant_id: int
) -> None:
    if repository.architecture_of(session, tenant_id, params.checkpoint_id) is None:
        raise ValueError(f"checkpoint {params.checkpoint_id} does not exist")


INSPECT = register(
    JobKind(
        name="inspect",
        params_model=InspectParams,
        run=run_inspect,
        check=check_inspect,
        description="per-tensor statistics: shape, dtype, mean, std, min, max, abs-max, zeros",
    )
)
