"""When a blob's file may exist: placed and removed only under its ``blobs`` row's lock.

Blobs are shared by content (between checkpoints and datasets, and between tenants), so a
file may go only once no row of ``models.BLOB_REFERENCES`` names it. Every transaction that
places or removes a file first locks that file's ``blobs`` row (an upsert: PostgreSQL row
locks; SQLite has one writer anyway), which orders an upload and a delete of the same bytes
whatever their interleaving (issue 16, defect 2):

* upload: write a temp file, then in the transaction that inserts the referencing row:
  ``claim`` (row live and locked) -> move the file into place -> insert -> commit. Should it
  roll back, ``collect`` removes the file again unless a row names it.
* delete: ``lock`` the blob rows first (the same order as an upload: blob, then rows), delete
  the rows, ``release`` (marks the blobs no row names any more, decided in the delete's own
  transaction), commit; then ``collect`` each marked blob in its own transaction, which
  checks again under the lock and removes the file before the row.

So a committed row's file always exists, and a file without a row is only ever an upload
in flight or the leftover of a crash, which ``sweep`` (at start-up) removes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.blobs import BlobStore, TempBlob
from app.models import BLOB_REFERENCES, Blob, utcnow

log = logging.getLogger(__name__)

BLOBS = Blob.__table__


def _upsert(session: Session, sha256: str, *, live: bool) -> object:
    """Insert the row, or lock the existing one; returns its ``unreferenced_at``.
    ``live``: the row ends up live (a reference is on its way); otherwise an existing row
    keeps its state and a new one starts unreferenced."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(BLOBS).values(
        sha256=sha256, created_at=utcnow(), unreferenced_at=None if live else utcnow()
    )
    keep = BLOBS.c.unreferenced_at  # a no-op update still takes the row's lock
    statement = statement.on_conflict_do_update(
        index_elements=[BLOBS.c.sha256],
        set_={"unreferenced_at": None if live else keep},
    ).returning(BLOBS.c.unreferenced_at)
    return session.execute(statement).scalar_one()


def referenced(session: Session, sha256: str) -> bool:
    """Whether any row of ``BLOB_REFERENCES`` names the blob."""
    named = or_(*(exists().where(column == sha256) for column in BLOB_REFERENCES))
    return bool(session.scalar(select(named)))


def claim(session: Session, sha256: str) -> None:
    """Lock the blob's row as live until this transaction ends: a collector waits, then sees
    the reference this transaction adds."""
    _upsert(session, sha256, live=True)


def place(session: Session, blobs: BlobStore, temp: TempBlob) -> str:
    """Claim the temp file's blob and move the file into place; returns its sha256. The
    caller adds the referencing row in this transaction, or collects the blob if it fails."""
    sha256 = temp.close()
    claim(session, sha256)
    return blobs.commit(temp)


def place_bytes(session: Session, blobs: BlobStore, data: bytes) -> str:
    temp = blobs.temp()
    try:
        temp.write(data)
        return place(session, blobs, temp)
    finally:
        temp.discard()


def lock(session: Session, sha256s: Iterable[str]) -> list[str]:
    """Lock the blob rows of rows about to be deleted (before deleting them, in sorted order:
    the order an upload takes its locks in); returns them sorted."""
    ordered = sorted(set(sha256s))
    for sha256 in ordered:
        _upsert(session, sha256, live=False)
    return ordered


def release(session: Session, sha256s: Iterable[str]) -> list[str]:
    """After this transaction deleted rows naming these (locked) blobs: mark those no row
    names any more; returns them, for ``collect`` once the transaction has committed."""
    unreferenced = [sha256 for sha256 in sorted(set(sha256s)) if not referenced(session, sha256)]
    if unreferenced:
        session.execute(
            update(Blob).where(Blob.sha256.in_(unreferenced)).values(unreferenced_at=utcnow())
        )
    return unreferenced


def collect(session: Session, blobs: BlobStore, sha256: str) -> bool:
    """In a transaction of its own: remove the blob's file and row if no row names it
    (checked under the row's lock); returns whether it did. A failed commit after the file
    went leaves an unreferenced row without a file, which the next collect or claim settles."""
    session.rollback()  # a transaction of its own: nothing of the caller's rides along
    try:
        _upsert(session, sha256, live=False)
        if referenced(session, sha256):
            session.execute(
                update(Blob).where(Blob.sha256 == sha256).values(unreferenced_at=None)
            )
            session.commit()
            return False
        blobs.delete(sha256)
        session.execute(delete(Blob).where(Blob.sha256 == sha256))
        session.commit()
        return True
    except BaseException:
        session.rollback()
        raise


def collect_all(session: Session, blobs: BlobStore, sha256s: Iterable[str]) -> int:
    """``collect`` each; a failure is logged and left to the next sweep."""
    removed = 0
    for sha256 in sha256s:
        try:
            removed += collect(session, blobs, sha256)
        except Exception:
            log.exception("removing blob %s failed; the next sweep retries", sha256)
    return removed


def sweep(session: Session, blobs: BlobStore) -> int:
    """Collect what a crash left: blobs marked unreferenced, and files without a row (an
    upload that died between placing its file and committing). Returns files removed."""
    with session.begin():
        marked = set(session.scalars(select(Blob.sha256).where(Blob.unreferenced_at.is_not(None))))
        rows = set(session.scalars(select(Blob.sha256)))
    on_disk = set(blobs.hashes())
    removed = collect_all(session, blobs, sorted(marked | (on_disk - rows)))
    if removed:
        log.info("blob sweep removed %d unreferenced file(s)", removed)
    return removed
