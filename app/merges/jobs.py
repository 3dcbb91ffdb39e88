"""The ``merge`` job kind: align checkpoints modulo permutations (Git Re-Basin) and
average them into a new checkpoint with lineage.

Two checkpoints are merged at ``lam`` (θ = (1−λ)·θ_A + λ·π(θ_B)); with a dataset the job
also measures loss/accuracy curves along the naive and the aligned path and the loss
barrier, and resets BatchNorm statistics of the merged network on the data. More than two
are each aligned to the first and averaged uniformly. The merged file is written to the
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

LINEAGE_KEY = "weightscope.lineage"
MAX_INPUTS = 8


class MergeParams(BaseModel):
    checkpoints: list[int] = Field(min_length=2, max_length=MAX_INPUTS)
    method: Literal["weight", "activation"] = "weight"
    lam: float = Field(default=0.5, ge=0.0, le=1.0, description="weight of B (two inputs)")
    dataset_id: int | None = None
    curve_points: int = Field(default=11, ge=2, le=101)

    @model_validator(mode="after")
    def _lam_for_two(self) -> MergeParams:
        if len(self.checkpoints) > 2 and self.lam != 0.5:
            raise ValueError("lam applies to two checkpoints; more are averaged uniformly")
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
    from app.datasets.data import read_eval_set
    from app.device import worker_device
    from merging.activation_matching import activation_matching
    from merging.batchnorm import has_batchnorm
    from merging.interpolation import evaluate, interpolate, lerp_tensors, merged_module
    from merging.weight_matching import weight_matching

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
    timings["load_ms"] = (time.perf_counter() - clock) * 1000
    ctx.progress(0.1)

    a, others = ckpts[0], ckpts[1:]
    clock = time.perf_counter()
    matches = []
    for index, b in enumerate(others):
        if params.method == "activation":
            assert data is not None  # checked at request time
            match = activation_matching(a, b, data, device=device)
        else:
            match = weight_matching(a, b, device=device)
        matches.append(match)
        ctx.progress(0.1 + 0.4 * (index + 1) / len(others))
    timings["match_ms"] = (time.perf_counter() - clock) * 1000
    aligned = [match.apply(b) for match, b in zip(matches, others, strict=True)]

    result: dict[str, Any] = {
        "checkpoints": params.checkpoints,
        "method": params.method,
        "lam": params.lam if len(ckpts) == 2 else None,
        "dataset_id": params.dataset_id,
        "matches": [_match_summary(m) for m in matches],
    }
    bn = "reset" if data is not None and has_batchnorm(a.architecture) else "stale"
    clock = time.perf_counter()
    if len(ckpts) == 2:
        if data is not None:
            curves = interpolate(
                a, others[0], params.curve_points, data, match=matches[0], bn=bn, device=device
            )
            result["curves"] = {
                "naive": _path(curves.naive),
                "aligned": _path(curves.aligned) if curves.aligned else None,
            }
            result["barrier"] = curves.aligned.barrier if curves.aligned else None
            result["naive_barrier"] = curves.naive.barrier
        module = merged_module(a, aligned[0], params.lam, bn, data[0] if data else None, device)
    else:
        tensors = a.tensors
        for count, b in enumerate(aligned, start=2):  # running mean of all inputs
            tensors = lerp_tensors(tensors, b.tensors, 1.0 / count)
        module = merged_module(
            a,
            graphs.Checkpoint(tensors, a.architecture),
            0.0,
            bn,
            data[0] if data else None,
            device,
        )
    result["bn"] = bn
    if data is not None:
        loss, accuracy = evaluate(module, data)
        result["merged"] = {"loss": loss, "accuracy": accuracy}
    timings["interpolate_ms"] = (time.perf_counter() - clock) * 1000
    ctx.progress(0.9)

    lineage = {
        "parents": params.checkpoints,
        "parent_sha256": [rows[i][1] for i in params.checkpoints],
        "method": params.method,
        "lam": result["lam"],
        "dataset_id": params.dataset_id,
        "job_id": ctx.job_id,
    }
    merged_tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    merged = graphs.Checkpoint(merged_tensors, a.architecture, {LINEAGE_KEY: json.dumps(lineage)})
    data_bytes = graphs.checkpoint_bytes(merged)
    blob_sha256 = blobs.put_bytes(data_bytes)
    timings["total_ms"] = (time.perf_counter() - started) * 1000

    dtype_names = {dtype: name for name, dtype in DTYPES.items()}
    dtype_summary: dict[str, int] = {}
    for tensor in merged_tensors.values():
        name = dtype_names[tensor.dtype]
        dtype_summary[name] = dtype_summary.get(name, 0) + tensor.numel()
    result["merged_checkpoint"] = {
        "sha256": hashlib.sha256(data_bytes).hexdigest(),
        "blob_sha256": blob_sha256,
        "size": len(data_bytes),
        "architecture": json.loads(json.dumps(a.architecture.summary(), default=str)),
        "architecture_digest": architecture_digest(a.architecture),
        "tensor_count": len(merged_tensors),
        "parameter_count": sum(t.numel() for t in merged_tensors.values()),
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
