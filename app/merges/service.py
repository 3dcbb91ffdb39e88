"""Merges: what a request can be refused for, running one in a worker (load, merge,
evaluate, stage), the rows a finished merge leaves, reading them back, and deleting them.

A merge is written so that a failure at any point leaves neither blob nor rows: the
worker stages the merged file as a temp blob; ``persist``, in the transaction that marks
the job succeeded, adds the checkpoint (through the upload path's ``store``) and merge
rows and only then moves the blob into place; should anything after that fail, the blob
is removed again unless another checkpoint already had those bytes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import event
from sqlalchemy.orm import Session

from app import blob_refs
from app.blobs import BlobStore, TempBlob
from app.checkpoints import repository as checkpoints
from app.checkpoints import service as checkpoint_service
from app.db import read_session
from app.jobs import repository as jobs
from app.jobs.kind import JobContext
from app.merges import repository
from app.merges.schemas import FUSION_METHODS, MergeCreate, MergeOut
from app.models import Dataset, Merge
from app.owned import owned_or_404
from app.pagination import Page, PageRequest, matching, paginate
from app.problems import ProblemError
from app.settings import Settings


def check(session: Session, params: MergeCreate, settings: Settings, tenant_id: int) -> None:
    """404 for a missing checkpoint or dataset (or another tenant's); 422 for checkpoints
    without an architecture
    or with different ones, activation matching without data, and data that does not fit
    the architecture's input or output."""
    ids = params.checkpoints
    if len(set(ids)) != len(ids):
        raise ProblemError(422, "merge the same checkpoint only once", slug="validation")
    rows = checkpoints.by_ids(session, tenant_id, ids)
    missing = [i for i in ids if i not in rows]
    if missing:
        raise ProblemError(
            404, f"checkpoint {', '.join(map(str, missing))} does not exist", slug="not-found"
        )
    first = rows[ids[0]]
    for checkpoint_id in ids:
        if rows[checkpoint_id].architecture_digest is None:
            raise ProblemError(
                422,
                f"checkpoint {checkpoint_id} has no known architecture, so it cannot be "
                "aligned; upload it as a self-describing safetensors file (graphs.save)",
                slug="missing-architecture",
            )
    if params.method in FUSION_METHODS:
        _check_fusable(params, [rows[i] for i in ids], settings)
    else:
        for checkpoint_id in ids:
            if rows[checkpoint_id].architecture_digest != first.architecture_digest:
                raise ProblemError(
                    422,
                    f"checkpoints {first.id} and {checkpoint_id} have different "
                    f"architectures; method {params.method!r} merges networks with the same "
                    "op graph (different widths: method 'ot'; different depths: "
                    "'clafusion')",
                    slug="incompatible-architectures",
                )
    if params.method in ("activation", "ste") and params.dataset_id is None:
        raise ProblemError(
            422, f"method {params.method!r} needs a dataset (dataset_id)", slug="validation"
        )
    if params.dataset_id is not None:
        _check_dataset(session, tenant_id, params.dataset_id, first.architecture or {})


def _check_fusable(params: MergeCreate, rows: list[Any], settings: Settings) -> None:
    """Fusions take networks of different shapes, so the op graphs themselves are checked
    (the merging library says what each method refuses)."""
    import merging
    from app.checkpoints.architecture import find_architecture

    blobs = BlobStore(settings.blob_dir)
    architectures = [find_architecture(blobs.path(row.blob_sha256)) for row in rows]
    try:
        merging.check_method(
            params.method, [a for a in architectures if a is not None],
            has_data=params.dataset_id is not None,
        )
    except merging.MergeInputError as error:
        raise ProblemError(422, str(error), slug="incompatible-architectures") from error


def _check_dataset(
    session: Session, tenant_id: int, dataset_id: int, summary: dict[str, Any]
) -> None:
    dataset = owned_or_404(session, Dataset, dataset_id, tenant_id, "dataset")
    inputs = list(summary.get("inputs", {}).values())
    if len(inputs) != 1 or not _fits(inputs[0], dataset.x_shape[1:]):
        raise ProblemError(
            422,
            f"dataset {dataset_id} has samples of shape {dataset.x_shape[1:]}, the "
            f"architecture takes {_shape_text(inputs[0]) if len(inputs) == 1 else inputs}"
            f"{_unknown_sizes_note(inputs)}",
            slug="dataset-mismatch",
        )
    outputs = list(summary.get("outputs", {}).values())
    if len(outputs) != 1 or not outputs[0] or outputs[0][-1] < dataset.num_classes:
        raise ProblemError(
            422,
            f"dataset {dataset_id} has {dataset.num_classes} classes, the architecture's "
            f"output has shape {outputs[0] if len(outputs) == 1 else outputs}",
            slug="dataset-mismatch",
        )


def _fits(expected: list[int | None], sample: list[int]) -> bool:
    """A sample shape fits an input shape where every known size is equal (None, a size
    inference could not tell, takes the data's)."""
    return len(expected) == len(sample) and all(
        e is None or e == s for e, s in zip(expected, sample, strict=True)
    )


def _shape_text(shape: list[int | None]) -> str:
    return "[" + ", ".join("any" if d is None else str(d) for d in shape) + "]"


def _unknown_sizes_note(inputs: list[list[int | None]]) -> str:
    if not any(d is None for shape in inputs for d in shape):
        return ""
    return (
        " (an 'any' size was not decided by the checkpoint's inferred architecture and "
        "is taken from the data; the known sizes must match)"
    )


# --- the worker side ---------------------------------------------------------------------


@dataclass
class Inputs:
    checkpoints: list[Any]  # graphs.Checkpoint
    parents: list[str]  # the inputs' sha256, as the lineage names them
    data: tuple[torch.Tensor, torch.Tensor] | None


class Stopwatch:
    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = (now - self.last) * 1000
        self.last = now


def run(ctx: JobContext) -> dict[str, Any]:
    import merging
    from app.device import worker_device

    params = MergeCreate.model_validate(ctx.params)
    clock = Stopwatch()
    blobs = BlobStore(ctx.settings.blob_dir)
    inputs = _load(ctx, params, blobs)
    device = worker_device(ctx.settings)
    clock.lap("load_ms")
    ctx.progress(0.1)

    two = len(inputs.checkpoints) == 2
    result: dict[str, Any] = {
        "checkpoints": params.checkpoints,
        "method": params.method,
        "lam": params.lam if two else None,
        "dataset_id": params.dataset_id,
    }
    fusion = None
    if params.method in FUSION_METHODS:
        fused = merging.fuse(
            inputs.checkpoints, method=params.method, data=inputs.data,
            weights=[1 - params.lam, params.lam] if two else None, target=params.target,
            parents=inputs.parents, device=device, solver=params.solver,
        )
        fusion = fused.fusion if isinstance(fused, merging.ClaFusionResult) else fused
        merged_checkpoint, matches = fused.checkpoint, []
        result["fusion"] = {"target": params.target, "solver": params.solver,
                            "seconds": fusion.seconds}
    elif two:
        merged = merging.merge(
            *inputs.checkpoints, method=params.method, lam=params.lam, data=inputs.data,
            parents=inputs.parents, device=device, canonical=params.canonical,
        )
        merged_checkpoint = merged.checkpoint
        matches = [merged.match] if merged.match is not None else []
    else:
        many = merging.merge_many(
            inputs.checkpoints, data=inputs.data, parents=inputs.parents, device=device
        )
        merged_checkpoint, matches = many.checkpoint, many.matches[1:]
        result["rounds"] = many.rounds
    reference = inputs.checkpoints[params.target if params.method in FUSION_METHODS else 0]
    merged_checkpoint = _in_dtypes_of(merged_checkpoint, reference)
    result["dtypes"] = {
        "inputs": [_dtype_name(c.tensors) for c in inputs.checkpoints],
        "result": _dtype_name(merged_checkpoint.tensors),
    }
    lineage = merging.lineage(merged_checkpoint)
    assert lineage is not None
    result["matches"] = [_match_summary(m) for m in matches]
    result["bn_stats"] = lineage["bn_stats"]  # "none" for a network without BatchNorm
    clock.lap("merge_ms")
    ctx.progress(0.5)

    if inputs.data is not None:
        result |= _evaluate(params, inputs, merged_checkpoint, matches, fusion, device)
        clock.lap("evaluate_ms")
    ctx.progress(0.9)

    result["merged_checkpoint"] = _stage(ctx.job_id, blobs, merged_checkpoint, lineage)
    clock.timings["total_ms"] = (time.perf_counter() - clock.started) * 1000
    result["timings"] = clock.timings | {"device": device.type}
    return result


def _in_dtypes_of(merged: Any, reference: Any) -> Any:
    """The merged checkpoint with each floating tensor in the dtype of the reference's
    tensor of the same name (merging computes in float32, whatever the inputs hold): an
    fp16 reference gives an fp16 result, whatever the other inputs' dtypes."""
    tensors = {}
    for name, tensor in merged.tensors.items():
        like = reference.tensors.get(name)
        if like is not None and like.is_floating_point() and tensor.is_floating_point():
            tensor = tensor.to(like.dtype)
        tensors[name] = tensor
    return dataclasses.replace(merged, tensors=tensors)


def _dtype_name(tensors: dict[str, torch.Tensor]) -> str:
    """The floating dtype (safetensors name) holding most of the elements."""
    summary = checkpoint_service.dtype_summary(
        {k: t for k, t in tensors.items() if t.is_floating_point()} or tensors
    )
    return max(summary, key=lambda name: summary[name])


def _load(ctx: JobContext, params: MergeCreate, blobs: BlobStore) -> Inputs:
    import graphs
    from app.datasets.data import read_eval_set

    with read_session(ctx.session_factory) as session:
        tenant_id = jobs.tenants_of(session, [ctx.job_id])[ctx.job_id]
        rows = checkpoints.by_ids(session, tenant_id, params.checkpoints)
        dataset_blob = (
            repository.dataset_blob(session, params.dataset_id) if params.dataset_id else None
        )
    missing = [i for i in params.checkpoints if i not in rows]
    if missing:
        raise ValueError(f"checkpoint {', '.join(map(str, missing))} no longer exists")
    if params.dataset_id is not None and dataset_blob is None:
        raise ValueError(f"dataset {params.dataset_id} no longer exists")
    data = None
    if dataset_blob is not None:
        eval_set = read_eval_set(blobs.path(dataset_blob))
        data = (eval_set.x, eval_set.y)
    return Inputs(
        [graphs.load(blobs.path(rows[i].blob_sha256)) for i in params.checkpoints],
        [rows[i].sha256 for i in params.checkpoints],
        data,
    )


def _evaluate(
    params: MergeCreate, inputs: Inputs, merged: Any, matches: list[Any], fusion: Any,
    device: torch.device,
) -> dict[str, Any]:
    """The merged network's loss and accuracy; for two inputs, the interpolation curves and
    their loss barriers: naive (same architecture only) and aligned (B permuted to A, or
    for a fusion B carried into the target's basis)."""
    import merging
    from merging.forward import load_module

    assert inputs.data is not None
    loss, accuracy = merging.evaluate(load_module(merged, device), inputs.data)
    found: dict[str, Any] = {"merged": {"loss": loss, "accuracy": accuracy}}
    if len(inputs.checkpoints) != 2:
        return found
    a, b = inputs.checkpoints
    naive = aligned = None
    if a.architecture == b.architecture:
        curves = merging.interpolate(
            a, b, params.curve_points, inputs.data, match=matches[0] if matches else None,
            device=device,
        )
        naive, aligned = curves.naive, curves.aligned
    if fusion is not None:
        carried = merging.interpolate(
            fusion.aligned[0], fusion.aligned[1], params.curve_points, inputs.data,
            device=device,
        )
        aligned = carried.naive
    found["curves"] = {
        "naive": _path(naive) if naive else None,
        "aligned": _path(aligned) if aligned else None,
    }
    found["barrier"] = aligned.barrier if aligned else None
    found["naive_barrier"] = naive.barrier if naive else None
    return found


def _match_summary(match: Any) -> dict[str, Any]:
    groups = {
        group: {"size": len(perm), "moved": int((perm != torch.arange(len(perm))).sum())}
        for group, perm in sorted(match.perms.items())
    }
    return {
        "method": match.method,
        "objective_before": match.objective_before,
        "objective_after": match.objective_after,
        "sweeps": match.sweeps,
        "seconds": match.seconds,
        "permutations": {
            "groups": groups,
            "neurons": sum(g["size"] for g in groups.values()),
            "moved": sum(g["moved"] for g in groups.values()),
        },
    }


def _path(path: Any) -> dict[str, Any]:
    names = ("lambdas", "losses", "accuracies", "bn", "distance", "barrier", "accuracy_barrier")
    return {name: getattr(path, name) for name in names}


# Merged files staged by ``run`` for ``persist``, which the runner calls next in the same
# process; a staged file that never gets there is a temp file, not a blob.
_staged: dict[int, tuple[TempBlob, dict[str, Any]]] = {}
_staged_lock = threading.Lock()


def _stage(job_id: int, blobs: BlobStore, merged: Any, lineage: dict[str, Any]) -> dict:
    import graphs

    temp = blobs.temp()
    try:
        temp.write(graphs.checkpoint_bytes(merged))
        sha256 = temp.close()
    except BaseException:
        temp.discard()
        raise
    with _staged_lock:
        previous = _staged.pop(job_id, None)
        _staged[job_id] = (temp, lineage)
    if previous is not None:
        previous[0].discard()
    return {"sha256": sha256, "size": temp.size}


def persist(session: Session, finished: list[tuple[int, dict[str, Any]]]) -> None:
    tenants = jobs.tenants_of(session, [job_id for job_id, _ in finished])
    for job_id, result in finished:
        _persist_one(session, tenants[job_id], job_id, result)


def _persist_one(session: Session, tenant_id: int, job_id: int, result: dict[str, Any]) -> None:
    """The merge and its merged checkpoint, the job's tenant's (an earlier checkpoint of
    the tenant with the same bytes is the result; another tenant's never is)."""
    with _staged_lock:
        temp, lineage = _staged.pop(job_id)
    blobs = BlobStore(temp.path.parent)
    sha256 = result["merged_checkpoint"]["sha256"]
    try:
        checkpoint = checkpoints.by_sha256(session, tenant_id, sha256)
        if checkpoint is None:
            _forget_blob_on_rollback(session, blobs, sha256)
            checkpoint = checkpoint_service.store(
                session, blobs, tenant_id, temp, sha256, f"merge-{job_id}.safetensors", lineage
            )
            session.flush()
        merge = Merge(
            tenant_id=tenant_id,
            job_id=job_id,
            result_checkpoint_id=checkpoint.id,
            method=result["method"],
            lam=result["lam"],
            dataset_id=result["dataset_id"],
            barrier=result.get("barrier"),
            timings=result["timings"],
        )
        repository.add_merge(session, merge, result["checkpoints"])
    finally:
        temp.discard()  # moved into place, or not needed


def _forget_blob_on_rollback(session: Session, blobs: BlobStore, blob_sha256: str) -> None:
    """``store`` moves the blob into place before the transaction commits: should the
    transaction roll back instead, remove it again unless a committed row uses it."""
    engine = session.get_bind()

    def forget(_: Session) -> None:
        with Session(engine) as fresh:
            blob_refs.collect_all(fresh, blobs, [blob_sha256])

    event.listen(session, "after_rollback", forget, once=True)


# --- reading ---------------------------------------------------------------------------


def to_out(session: Session, merges: list[Merge]) -> list[MergeOut]:
    inputs = repository.inputs_of(session, [m.id for m in merges])
    results = repository.results_of(session, [m.job_id for m in merges if m.job_id])
    return [
        MergeOut(
            id=merge.id,
            job_id=merge.job_id,
            checkpoints=inputs[merge.id],
            result_checkpoint_id=merge.result_checkpoint_id,
            method=merge.method,
            lam=merge.lam,
            dataset_id=merge.dataset_id,
            barrier=merge.barrier,
            timings=merge.timings,
            result=_without_staging(results.get(merge.job_id) if merge.job_id else None),
            created_at=merge.created_at,
        )
        for merge in merges
    ]


def _without_staging(result: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if result is None else {k: v for k, v in result.items() if k != "merged_checkpoint"}


def get_merge(session: Session, tenant_id: int, merge_id: int) -> MergeOut:
    return to_out(session, [owned_or_404(session, Merge, merge_id, tenant_id, "merge")])[0]


def list_merges(
    session: Session,
    tenant_id: int,
    page: PageRequest,
    checkpoint_id: int | None,
    job_id: int | None,
) -> Page[MergeOut]:
    query = repository.with_checkpoint(
        matching(Merge, tenant_id=tenant_id, job_id=job_id), checkpoint_id
    )
    return paginate(session, query, page, lambda rows: to_out(session, list(rows)))


def delete_merge(session: Session, tenant_id: int, merge_id: int) -> list[int]:
    """Delete the merge with the job that produced it (its id is returned); its inputs and
    the merged checkpoint stay."""
    owned_or_404(session, Merge, merge_id, tenant_id, "merge", for_update=True)
    job_ids = repository.delete_with_jobs(session, [merge_id])
    session.commit()
    return job_ids
