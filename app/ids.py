"""The one id type of the API: an integer from 1 to ``ID_MAX`` (the largest id either
database stores), refused with a 422 problem when outside that range, wherever an id
arrives (path, query filter, JSON body, cursor) - never passed on to the database, where
it would overflow the column (issue 16, defect 3).

``tests/app/lifecycle/test_ids.py`` walks every route and body model, so a new id
parameter without one of these types fails the suite.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

from app.models import ID_MAX

ID_MIN = 1

IdPath = Annotated[int, Path(ge=ID_MIN, le=ID_MAX, description="a record's id")]
IdQuery = Annotated[int | None, Query(ge=ID_MIN, le=ID_MAX, description="only this id")]
# A record's id in a request body (pydantic field).
RecordId = Annotated[int, Field(ge=ID_MIN, le=ID_MAX)]


def in_id_range(value: object) -> bool:
    """Whether ``value`` is an id a record could have (cursors decode to one)."""
    return type(value) is int and ID_MIN <= value <= ID_MAX
