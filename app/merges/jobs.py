"""The ``merge`` job kind: align checkpoints modulo permutations (Git Re-Basin) and
average them into a new checkpoint with lineage, through ``merging``.

Two checkpoints are merged at ``lam`` (θ = (1−λ)·θ_A + λ·π(θ_B), ``merging.merge``); more
are averaged after weight matching to a common mean (``merging.merge_many``). With a
dataset the job also resets BatchNorm statistics on it, scores the merged network and, for
two inputs, measures loss/accuracy curves along the naive and the aligned path and the
loss barrier. The merged file is written to the
content-addressed blob store at the end of ``run`` (a retry writes the same bytes); its
checkpoint row and the merge row are inserted in ``persist``, in the transaction that marks
the job succeeded, so a merge yields exactly one of each.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.blobs import BlobStore
from app.checkpoints.architecture import architecture_digest
from app.jobs.kind import JobContext, JobKind
from app.merges.checks import check_merge
from app.models import Checkpoint, Dataset, Merge, MergeInput
from app.settings import Settings
from graphs.safe_io import DTYPES

MAX_INPUTS = 8


class MergeParams(BaseModel):
    checkpoints: list[int] = Field(min_length=2, max_length=MAX_INPUTS)
    method: Literal["weight", "activation"] = "weight"
    lam: float = Field(default=0.5, ge=0.0, le=1.0, description="weight of B (two inputs)")
    dataset_id: int | None = None
    curve_points: int = Field(default=11, ge=2, le=101)

    @model_validator(mode="after")
    def _many_are_averaged(self) -> MergeParams:
        if len(self.checkpoints) > 2 and self.lam != 0.5:
            raise ValueError("lam applies to two checkpoints; more are averaged uniformly")
        if len(self.checkpoints) > 2 and self.method != "weight":
            raise ValueError("more than two checkpoints are merged by weight matching only")
        return self


def _perm_summary(perms: dict[str, torch.Tensor]) -> dict[str, Any]:
    groups = {}
    for group, perm in sorted(perms.items()):
        moved = int((perm != torch.arange(len(perm))).sum())
        groups[group] = {"size": len(perm), "moved": moved}
    return {
        "groups": groups,
        "neurons": sum(g["size"] for g in groups.values()),
        "moved": sum(g["moved"] for g in groups.values()),
    }


def _match_summary(match: Any) -> dict[str, Any]:
    return {
        "method": match.method,
        "objective_before": match.objective_before,
        "objective_after": match.objective_after,
        "sweeps": match.sweeps,
        "seconds": match.seconds,
        "permutations": _perm_summary(match.perms),
    }


def _path(path: Any) -> dict[str, Any]:
    return {
        "lambdas": path.lambdas,
        "losses": path.losses,
        "accuracies": path.accuracies,
        "bn": path.bn,
        "distance": path.distance,
        "barrier": path.barrier,
        "accuracy_barrier": path.accuracy_barrier,
    }


def run_merge(ctx: JobContext) -> dict[str, Any]:
    import graphs
    import merging
    from app.datasets.data import read_eval_set
    from app.device import worker_device
    from merging.forward import load_module

    params = MergeParams.model_validate(ctx.params)
    timings: dict[str, float] = {}
    started = clock = time.perf_counter()
    blobs = BlobStore(ctx.settings.blob_dir)
    with ctx.session_factory() as session:
        rows = {
            row.id: (row.blob_sha256, row.sha256)
            for row in session.scalars(
                select(Checkpoint).where(Checkpoint.id.in_(params.checkpoints))
            )
        }
        dataset = session.get(Dataset, params.dataset_id) if params.dataset_id else None
        dataset_blob = dataset.blob_sha256 if dataset is not None else None
    missing = [i for i in params.checkpoints if i not in rows]
    if missing:
        raise ValueError(f"checkpoint {', '.join(map(str, missing))} no longer exists")
    if params.dataset_id is not None and dataset_blob is None:
        raise ValueError(f"dataset {params.dataset_id} no longer exists")
    ckpts = [graphs.load(blobs.path(rows[i][0])) for i in params.checkpoints]
    data = None
    if dataset_blob is not None:
        eval_set = read_eval_set(blobs.path(dataset_blob))
        data = (eval_set.x, eval_set.y)
    device = worker_device(ctx.settings)
    parents = [rows[i][1] for i in params.checkpoints]
    timings["load_ms"] = (time.perf_counter() - clock) * 1000
    ctx.progress(0.1)

    clock = time.perf_counter()
    result: dict[str, Any] = {
        "checkpoints": params.checkpoints,
        "method": params.method,
        "lam": params.lam if len(ckpts) == 2 else None,
        "dataset_id": params.dataset_id,
    }
    if len(ckpts) == 2:
        merged = merging.merge(
            ckpts[0],
            ckpts[1],
            method=params.method,
            lam=params.lam,
            data=data,
            parents=parents,
            device=device,
        )
        matches = [merged.match] if merged.match is not None else []
        bn_stats = merged.bn_stats
    else:
        many = merging.merge_many(ckpts, data=data, parents=parents, device=device)
        merged, matches, bn_stats = many, many.matches[1:], "reset" if data else "stale"
        result["rounds"] = many.rounds
    result["matches"] = [_match_summary(m) for m in matches]
    result["bn_stats"] = bn_stats
    timings["merge_ms"] = (time.perf_counter() - clock) * 1000
    ctx.progress(0.5)

    if data is not None:
        clock = time.perf_counter()
        module = load_module(merged.checkpoint, device)
        loss, accuracy = merging.evaluate(module, data)
        result["merged"] = {"loss": loss, "accuracy": accuracy}
        if len(ckpts) == 2:
            curves = merging.interpolate(
                ckpts[0],
                ckpts[1],
                params.curve_points,
                data,
                match=matches[0],
                device=device,
            )
            result["curves"] = {
                "naive": _path(curves.naive),
                "aligned": _path(curves.aligned) if curves.aligned else None,
            }
            result["barrier"] = curves.aligned.barrier if curves.aligned else None
            result["naive_barrier"] = curves.naive.barrier
        timings["evaluate_ms"] = (time.perf_counter() - clock) * 1000
    ctx.progress(0.9)

    checkpoint = merged.checkpoint
    data_bytes = graphs.checkpoint_bytes(checkpoint)
    blob_sha256 = blobs.put_bytes(data_bytes)
    timings["total_ms"] = (time.perf_counter() - started) * 1000
    lineage = {
        "parents": params.checkpoints,
        "parent_sha256": parents,
        "method": params.method,
        "lam": result["lam"],
        "dataset_id": params.dataset_id,
        "bn_stats": bn_stats,
        "job_id": ctx.job_id,
    }
    dtype_names = {dtype: name for name, dtype in DTYPES.items()}
    dtype_summary: dict[str, int] = {}
    for tensor in checkpoint.tensors.values():
        name = dtype_names[tensor.dtype]
        dtype_summary[name] = dtype_summary.get(name, 0) + tensor.numel()
    result["merged_checkpoint"] = {
        "sha256": hashlib.sha256(data_bytes).hexdigest(),
        "blob_sha256": blob_sha256,
        "size": len(data_bytes),
        "architecture": json.loads(json.dumps(checkpoint.architecture.summary(), default=str)),
        "architecture_digest": architecture_digest(checkpoint.architecture),
        "tensor_count": len(checkpoint.tensors),
        "parameter_count": sum(t.numel() for t in checkpoint.tensors.values()),
        "dtype_summary": dict(sorted(dtype_summary.items())),
        "lineage": lineage,
    }
    result["timings"] = timings | {"device": device.type}
    return result


def persist_merge(session: Session, job_id: int, result: dict[str, Any]) -> None:
    info = result["merged_checkpoint"]
    checkpoint = session.scalars(
        select(Checkpoint).where(Checkpoint.sha256 == info["sha256"])
    ).first()
    if checkpoint is None:
        checkpoint = Checkpoint(
            sha256=info["sha256"],
            size=info["size"],
            format="safetensors",
            filename=f"merge-{job_id}.safetensors",
            blob_sha256=info["blob_sha256"],
            blob_size=info["size"],
            architecture=info["architecture"],
            architecture_digest=info["architecture_digest"],
            tensor_count=info["tensor_count"],
            parameter_count=info["parameter_count"],
            dtype_summary=info["dtype_summary"],
            lineage=info["lineage"],
        )
        session.add(checkpoint)
        session.flush()
    ids = result["checkpoints"]
    merge = Merge(
        job_id=job_id,
        checkpoint_a_id=ids[0],
        checkpoint_b_id=ids[1],
        result_checkpoint_id=checkpoint.id,
        method=result["method"],
        lam=result["lam"],
        dataset_id=result["dataset_id"],
        barrier=result.get("barrier"),
        timings=result["timings"],
        result={k: v for k, v in result.items() if k != "merged_checkpoint"},
    )
    session.add(merge)
    session.flush()
    session.add_all(
        MergeInput(merge_id=merge.id, position=position, checkpoint_id=checkpoint_id)
        for position, checkpoint_id in enumerate(ids)
    )


def check_merge_params(session: Session, params: MergeParams, settings: Settings) -> None:
    check_merge(session, params.checkpoints, params.method, params.dataset_id)


MERGE = JobKind(
    name="merge",
    params_model=MergeParams,
    run=run_merge,
    check=check_merge_params,
    persist=persist_merge,
    description="align checkpoints (weight or activation matching) and merge them",
    queue="compute",
)
