"""Queries on datasets."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.models import Checkpoint, Dataset


def by_sha256(session: Session, tenant_id: int, sha256: str) -> Dataset | None:
    """The tenant's dataset of these bytes (another tenant's never counts)."""
    return session.scalars(
        select(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.sha256 == sha256)
    ).first()


def blob_in_use(session: Session, blob_sha256: str) -> bool:
    """Whether any row of any tenant, dataset or checkpoint, holds this blob."""
    return bool(
        session.scalar(
            select(
                exists().where(Dataset.blob_sha256 == blob_sha256)
                | exists().where(Checkpoint.blob_sha256 == blob_sha256)
            )
        )
    )
