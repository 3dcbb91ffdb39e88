"""Queries on predictions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from app.jobs import repository as jobs
from app.models import Prediction


def insert_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """One Core INSERT (an executemany for a batch), no ORM unit of work."""
    session.execute(insert(Prediction.__table__), rows)


def of_checkpoint(session: Session, tenant_id: int, checkpoint_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Prediction.id)
            .where(Prediction.checkpoint_id == checkpoint_id, Prediction.tenant_id == tenant_id)
            .order_by(Prediction.id)
        )
    )


def delete_with_jobs(session: Session, prediction_ids: list[int]) -> list[int]:
    """Delete predictions and the jobs that produced them (a job's result repeats its
    prediction: one goes with the other); returns those jobs' ids."""
    if not prediction_ids:
        return []
    job_ids = session.scalars(
        delete(Prediction)
        .where(Prediction.id.in_(prediction_ids))
        .returning(Prediction.job_id)
    ).all()
    return jobs.delete_jobs(session, [job_id for job_id in job_ids if job_id is not None])


def delete_of_jobs(session: Session, job_ids: list[int]) -> None:
    """The predictions these jobs produced (the ``predict`` kind's ``forget``)."""
    session.execute(delete(Prediction).where(Prediction.job_id.in_(job_ids)))
