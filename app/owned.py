"""Reading a record the caller owns: another tenant's record is a 404, exactly like a
missing one (no existence leak)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.problems import ProblemError

Row = TypeVar("Row")


def owned_or_404(
    session: Session,
    model: type[Row],
    row_id: int,
    tenant_id: int,
    what: str,
    *,
    for_update: bool = False,
) -> Row:
    """The tenant's row with this id, or a 404 naming what is missing. ``for_update`` locks
    it until the transaction ends (PostgreSQL; SQLite's writer is alone anyway)."""
    table: Any = model
    query = select(model).where(table.id == row_id, table.tenant_id == tenant_id)
    if for_update:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        raise ProblemError(404, f"{what} {row_id} does not exist", slug="not-found")
    return row


def counted(ids: list[int], noun: str, shown: int = 10) -> str:
    """``2 merges (ids 4, 7)``: what uses a record, for a 409's detail."""
    listed = ", ".join(map(str, ids[:shown])) + (", ..." if len(ids) > shown else "")
    plural = "s" if len(ids) != 1 else ""
    return f"{len(ids)} {noun}{plural} (id{plural} {listed})"
