"""Queries on predictions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.models import Prediction


def insert_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """One Core INSERT (an executemany for a batch), no ORM unit of work."""
    session.execute(insert(Prediction.__table__), rows)
