"""Storing an uploaded file as a row, the same way for checkpoints and datasets.

The order keeps failures clean: hash while streaming (done by the upload), answer
duplicates from the database, validate, then in one transaction place the blob (under its
``blobs`` row's lock, ``app.blob_refs``) and insert the row. A rejected upload leaves no
blob, no temp file and no row. A concurrent upload of the same bytes that wins the unique
constraint is the answer to both; should that row be deleted before it can be read, the
upload starts over (its temp file is still there).

The row an upload answers with existed at the moment the answer was read: read in the
transaction that inserted it (201), or committed and not yet deleted in the read that
found it (200). A delete of that row is ordered after that read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import blob_refs
from app.blobs import BlobStore, TempBlob
from app.db import SessionFactory, read_session

ATTEMPTS = 3  # a lost race whose winner is deleted at once, twice over, is not a race


class Stored(Protocol):
    blob_sha256: str


Row = TypeVar("Row", bound=Stored)


def ingest(
    session_factory: SessionFactory,
    blobs: BlobStore,
    temp: TempBlob,
    find: Callable[[Session, str], Row | None],
    create: Callable[[Session, str], Row],
) -> tuple[Row, bool]:
    """The row for the temp file's bytes and whether it is new. ``create`` validates, then
    places the blob (``blob_refs.place``, its last step that can fail) and adds the row."""
    try:
        sha256 = temp.close()
        for _ in range(ATTEMPTS):
            with read_session(session_factory) as session:
                existing = find(session, sha256)
            if existing is not None:
                return existing, False
            with session_factory() as session:
                row = create(session, sha256)
                placed = row.blob_sha256
                try:
                    session.commit()
                    return row, True
                except IntegrityError:  # the same bytes, committed by a concurrent upload
                    session.rollback()
                    blob_refs.collect_all(session, blobs, [placed])
                    winner = find(session, sha256)
                    if winner is not None:
                        return winner, False
                except BaseException:
                    session.rollback()
                    blob_refs.collect_all(session, blobs, [placed])
                    raise
        raise RuntimeError(f"could not store {sha256}: its row kept vanishing")
    finally:
        temp.discard()
