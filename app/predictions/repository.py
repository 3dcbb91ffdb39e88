"""Queries on predictions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session

from app.models import Prediction


def insert_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """One Core INSERT (an executemany for a batch), no ORM unit of work."""
    session.execute(insert(Prediction.__table__), rows)


def list_query(checkpoint_id: int | None, metanetwork: str | None) -> Select[Any]:
    query = select(Prediction)
    if checkpoint_id is not None:
        query = query.where(Prediction.checkpoint_id == checkpoint_id)
    if metanetwork is not None:
        query = query.where(Prediction.metanetwork == metanetwork)
    return query
