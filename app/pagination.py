"""Keyset pagination over descending integer ids with opaque cursors."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, select

from app.problems import ProblemError

Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id to continue below, or None for the first page."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        before = json.loads(raw)["before"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ProblemError(
            422, "cursor is not one this service issued", slug="bad-cursor"
        ) from None
    if type(before) is not int:
        raise ProblemError(422, "cursor is not one this service issued", slug="bad-cursor")
    return before


def next_cursor(ids: list[int], limit: int) -> str | None:
    """Callers fetch ``limit + 1`` rows; a full extra row means there is a next page."""
    return encode_cursor(ids[limit - 1]) if len(ids) > limit else None


def newest_first(model: Any, limit: int, cursor: str | None) -> Select[Any]:
    """The page query every list route starts from: newest first, below the cursor's id,
    ``limit + 1`` rows (the extra one tells :func:`next_cursor` there is a next page)."""
    query = select(model).order_by(model.id.desc()).limit(limit + 1)
    before = decode_cursor(cursor)
    return query if before is None else query.where(model.id < before)


def created_within(
    query: Select[Any], column: Any, after: dt.datetime | None, before: dt.datetime | None
) -> Select[Any]:
    """``created_after``/``created_before`` filters; a naive time is taken as UTC."""
    if after is not None:
        query = query.where(column > _aware(after))
    if before is not None:
        query = query.where(column < _aware(before))
    return query


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
