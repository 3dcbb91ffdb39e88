"""Queries on checkpoints."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.models import Checkpoint

_TABLE = Checkpoint.__table__
# two columns, not the whole row; built once (no cache key to walk per request)
_ARCHITECTURE = select(_TABLE.c.architecture, _TABLE.c.reading).where(
    _TABLE.c.id == bindparam("id"), _TABLE.c.tenant_id == bindparam("tenant_id")
)
_BLOBS = select(_TABLE.c.id, _TABLE.c.blob_sha256).where(
    _TABLE.c.id.in_(bindparam("ids", expanding=True))
)


def by_sha256(session: Session, tenant_id: int, sha256: str) -> Checkpoint | None:
    """The tenant's checkpoint of these uploaded bytes (another tenant's never counts)."""
    return session.scalars(
        select(Checkpoint).where(Checkpoint.tenant_id == tenant_id, Checkpoint.sha256 == sha256)
    ).first()


def by_ids(session: Session, tenant_id: int, ids: list[int]) -> dict[int, Checkpoint]:
    """Those of ``ids`` that are the tenant's checkpoints."""
    rows = session.scalars(
        select(Checkpoint).where(Checkpoint.tenant_id == tenant_id, Checkpoint.id.in_(ids))
    )
    return {c.id: c for c in rows}


def blobs_of(session: Session, ids: list[int]) -> dict[int, str]:
    """checkpoint id -> stored blob's sha256, for those that exist (workers: a job's
    checkpoints were checked to be its tenant's when it was submitted)."""
    return dict(session.execute(_BLOBS, {"ids": sorted(set(ids))}).all())


def architecture_of(
    session: Session, tenant_id: int, checkpoint_id: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None] | None:
    """``(architecture, reading)`` of the tenant's checkpoint, None if it has none such."""
    row = session.execute(_ARCHITECTURE, {"id": checkpoint_id, "tenant_id": tenant_id}).first()
    return None if row is None else (row[0], row[1])
