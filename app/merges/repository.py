"""Queries on merges and their inputs. A merge's result document is its job's result
(stored once, in ``jobs.result``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from app.jobs import repository as jobs
from app.models import Dataset, Job, Merge, MergeInput


def with_checkpoint(query: Select[Any], checkpoint_id: int | None) -> Select[Any]:
    """Merges that have the checkpoint as an input or as their result."""
    if checkpoint_id is not None:
        used = select(MergeInput.merge_id).where(MergeInput.checkpoint_id == checkpoint_id)
        query = query.where(Merge.id.in_(used) | (Merge.result_checkpoint_id == checkpoint_id))
    return query


def inputs_of(session: Session, merge_ids: list[int]) -> dict[int, list[int]]:
    inputs: dict[int, list[int]] = {merge_id: [] for merge_id in merge_ids}
    rows = session.execute(
        select(MergeInput.merge_id, MergeInput.checkpoint_id)
        .where(MergeInput.merge_id.in_(merge_ids))
        .order_by(MergeInput.merge_id, MergeInput.position)
    )
    for merge_id, checkpoint_id in rows:
        inputs[merge_id].append(checkpoint_id)
    return inputs


def results_of(session: Session, job_ids: list[int]) -> dict[int, dict[str, Any] | None]:
    return dict(session.execute(select(Job.id, Job.result).where(Job.id.in_(job_ids))).all())


def dataset_blob(session: Session, dataset_id: int) -> str | None:
    return session.scalar(select(Dataset.blob_sha256).where(Dataset.id == dataset_id))


def add_merge(session: Session, merge: Merge, inputs: list[int]) -> None:
    session.add(merge)
    session.flush()
    session.add_all(
        MergeInput(merge_id=merge.id, position=position, checkpoint_id=checkpoint_id)
        for position, checkpoint_id in enumerate(inputs)
    )
    session.flush()


def of_checkpoint(session: Session, tenant_id: int, checkpoint_id: int) -> list[int]:
    """The tenant's merges with the checkpoint as an input or as their result."""
    query = with_checkpoint(select(Merge.id), checkpoint_id).where(Merge.tenant_id == tenant_id)
    return list(session.scalars(query.order_by(Merge.id)))


def of_dataset(session: Session, tenant_id: int, dataset_id: int) -> list[int]:
    query = select(Merge.id).where(Merge.dataset_id == dataset_id, Merge.tenant_id == tenant_id)
    return list(session.scalars(query.order_by(Merge.id)))


def delete_with_jobs(session: Session, merge_ids: list[int]) -> list[int]:
    """Delete merges (their inputs' rows too) and the jobs that produced them (a merge's
    result document is its job's result). The merged checkpoints stay: they are
    checkpoints like any other. Returns those jobs' ids."""
    if not merge_ids:
        return []
    session.execute(delete(MergeInput).where(MergeInput.merge_id.in_(merge_ids)))
    job_ids = session.scalars(
        delete(Merge).where(Merge.id.in_(merge_ids)).returning(Merge.job_id)
    ).all()
    return jobs.delete_jobs(session, [job_id for job_id in job_ids if job_id is not None])


def delete_of_jobs(session: Session, job_ids: list[int]) -> None:
    """The merges these jobs produced (the ``merge`` kind's ``forget``)."""
    merge_ids = list(session.scalars(select(Merge.id).where(Merge.job_id.in_(job_ids))))
    if merge_ids:
        session.execute(delete(MergeInput).where(MergeInput.merge_id.in_(merge_ids)))
        session.execute(delete(Merge).where(Merge.id.in_(merge_ids)))
