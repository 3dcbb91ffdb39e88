"""Keyset pagination over descending integer ids with opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

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
