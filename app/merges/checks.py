"""What a merge request can be refused for before any work is queued."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Checkpoint, Dataset
from app.problems import ProblemError


def check_merge(
    session: Session, checkpoint_ids: list[int], method: str, dataset_id: int | None
) -> None:
    """404 for a missing checkpoint or dataset; 422 for checkpoints without an architecture
    or with different ones, activation matching without data, and data that does not fit
    the architecture's input or output."""
    if len(set(checkpoint_ids)) != len(checkpoint_ids):
        raise ProblemError(422, "merge the same checkpoint only once", slug="validation")
    rows = {
        row.id: row
        for row in session.scalars(select(Checkpoint).where(Checkpoint.id.in_(checkpoint_ids)))
    }
    missing = [i for i in checkpoint_ids if i not in rows]
    if missing:
        raise ProblemError(
            404, f"checkpoint {', '.join(map(str, missing))} does not exist", slug="not-found"
        )
    first = rows[checkpoint_ids[0]]
    for checkpoint_id in checkpoint_ids:
        if rows[checkpoint_id].architecture_digest is None:
            raise ProblemError(
                422,
                f"checkpoint {checkpoint_id} has no known architecture, so it cannot be "
                "aligned; upload it as a self-describing safetensors file (graphs.save)",
                slug="missing-architecture",
            )
        if rows[checkpoint_id].architecture_digest != first.architecture_digest:
            raise ProblemError(
                422,
                f"checkpoints {first.id} and {checkpoint_id} have different architectures; "
                "only networks with the same op graph can be merged",
                slug="incompatible-architectures",
            )
    if method == "activation" and dataset_id is None:
        raise ProblemError(
            422, "activation matching needs a dataset (dataset_id)", slug="validation"
        )
    if dataset_id is None:
        return
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise ProblemError(404, f"dataset {dataset_id} does not exist", slug="not-found")
    summary = first.architecture or {}
    inputs = list(summary.get("inputs", {}).values())
    if len(inputs) != 1 or list(inputs[0]) != list(dataset.x_shape[1:]):
        raise ProblemError(
            422,
            f"dataset {dataset_id} has samples of shape {dataset.x_shape[1:]}, the "
            f"architecture takes {inputs[0] if len(inputs) == 1 else inputs}",
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
