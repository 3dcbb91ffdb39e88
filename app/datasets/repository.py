"""Queries on datasets."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Dataset


def by_sha256(session: Session, sha256: str) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.sha256 == sha256)).first()
