"""Listing and reading merges (they are written only by ``merge`` jobs)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.merges.schemas import MergeOut
from app.models import Merge, MergeInput
from app.pagination import newest_first
from app.problems import ProblemError


def to_out(session: Session, merges: list[Merge]) -> list[MergeOut]:
    inputs: dict[int, list[int]] = {merge.id: [] for merge in merges}
    if merges:
        for row in session.scalars(
            select(MergeInput)
            .where(MergeInput.merge_id.in_(inputs))
            .order_by(MergeInput.merge_id, MergeInput.position)
        ):
            inputs[row.merge_id].append(row.checkpoint_id)
    return [
        MergeOut(
            id=merge.id,
            job_id=merge.job_id,
            checkpoints=inputs[merge.id] or [merge.checkpoint_a_id, merge.checkpoint_b_id],
            result_checkpoint_id=merge.result_checkpoint_id,
            method=merge.method,
            lam=merge.lam,
            dataset_id=merge.dataset_id,
            barrier=merge.barrier,
            timings=merge.timings,
            result=merge.result,
            created_at=merge.created_at,
        )
        for merge in merges
    ]


def get_merge(session: Session, merge_id: int) -> MergeOut:
    merge = session.get(Merge, merge_id)
    if merge is None:
        raise ProblemError(404, f"merge {merge_id} does not exist", slug="not-found")
    return to_out(session, [merge])[0]


def list_merges(
    session: Session,
    *,
    limit: int,
    cursor: str | None,
    checkpoint_id: int | None = None,
    job_id: int | None = None,
) -> list[Merge]:
    """Newest first, up to ``limit + 1``; ``checkpoint_id`` matches any input or the result."""
    query = newest_first(Merge, limit, cursor)
    if job_id is not None:
        query = query.where(Merge.job_id == job_id)
    if checkpoint_id is not None:
        used = select(MergeInput.merge_id).where(MergeInput.checkpoint_id == checkpoint_id)
        query = query.where(Merge.id.in_(used) | (Merge.result_checkpoint_id == checkpoint_id))
    return list(session.scalars(query))
