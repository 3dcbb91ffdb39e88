"""Keyset pagination over descending integer ids with opaque cursors: ``paginate`` is the
one way every list route pages."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.ids import in_id_range
from app.problems import ProblemError

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T] = Field(description="this page's records, newest first")
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null on the last page"
    )


@dataclass(frozen=True)
class PageRequest:
    limit: int
    cursor: str | None


def page_request(
    limit: Annotated[int, Query(ge=1, le=200, description="page size")] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> PageRequest:
    return PageRequest(limit, cursor)


PageDep = Annotated[PageRequest, Depends(page_request)]


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
        before = None
    if not in_id_range(before):
        raise ProblemError(422, "cursor is not one this service issued", slug="bad-cursor")
    return before


def matching(model: Any, **equal: object) -> Select[Any]:
    """``select(model)`` filtered on each column given a value (None: not filtered)."""
    query = select(model)
    for name, value in equal.items():
        if value is not None:
            query = query.where(getattr(model, name) == value)
    return query


def paginate(
    session: Session,
    query: Select[Any],
    page: PageRequest,
    out: Callable[[Sequence[Any]], list[Any]],
) -> Page[Any]:
    """Newest first, below the cursor's id. One row more than the page is read: when it
    exists there is a next page."""
    id_column = query.column_descriptions[0]["entity"].id
    before = decode_cursor(page.cursor)
    if before is not None:
        query = query.where(id_column < before)
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(page.limit + 1)))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page[Any](items=out(rows), next_cursor=encode_cursor(rows[-1].id) if more else None)


@dataclass(frozen=True)
class Created:
    """The ``created_after``/``created_before`` filters of a list; a naive time is UTC."""

    after: dt.datetime | None
    before: dt.datetime | None

    def within(self, query: Select[Any], column: Any) -> Select[Any]:
        if self.after is not None:
            query = query.where(column > _aware(self.after))
        if self.before is not None:
            query = query.where(column < _aware(self.before))
        return query


def created_range(
    created_after: dt.datetime | None = None, created_before: dt.datetime | None = None
) -> Created:
    return Created(created_after, created_before)


CreatedDep = Annotated[Created, Depends(created_range)]


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
