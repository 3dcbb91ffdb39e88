"""Storing an uploaded file as a row, the same way for checkpoints and datasets.

The order keeps failures clean: hash while streaming (done by the upload), answer
duplicates from the database, validate, only then place the blob and insert the row. A
rejected upload leaves no blob, no temp file and no row; a concurrent upload of the same
bytes that wins the unique constraint is the answer to both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.blobs import TempBlob
from app.db import SessionFactory, read_session

Row = TypeVar("Row")


def ingest(
    session_factory: SessionFactory,
    temp: TempBlob,
    find: Callable[[Session, str], Row | None],
    create: Callable[[Session, str], Row],
    forget: Callable[[Session, Row], None],
) -> tuple[Row, bool]:
    """The row for the temp file's bytes and whether it is new. ``create`` validates,
    places the blob and adds the row; ``forget`` removes that blob again if the insert
    fails for another reason than a lost race."""
    try:
        sha256 = temp.close()
        with read_session(session_factory) as session:
            existing = find(session, sha256)
        if existing is not None:
            return existing, False
        with session_factory() as session:
            row = create(session, sha256)
            try:
                session.commit()
                return row, True
            except IntegrityError:
                session.rollback()
                winner = find(session, sha256)
                if winner is None:
                    raise
                return winner, False
            except BaseException:
                session.rollback()
                forget(session, row)
                raise
    finally:
        temp.discard()
