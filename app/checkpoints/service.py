"""Checkpoint ingestion, lookup and deletion.

Ingestion order is what keeps failures clean: hash while streaming, answer duplicates
from the database, validate, only then place the blob and insert the row. A rejected upload
therefore leaves no blob, no temp file and no row. ``sha256`` is of the uploaded bytes
(so re-uploading the same file is recognised before any parsing); the stored blob is
always safetensors (the upload itself for safetensors, a conversion for PyTorch files).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.blobs import BlobStore, TempBlob
from app.checkpoints.architecture import describe_architecture
from app.db import SessionFactory
from app.models import Checkpoint, Merge, MergeInput, Prediction
from app.pagination import created_within, newest_first
from app.problems import ProblemError
from graphs.errors import ArchitectureError, CheckpointError
from graphs.safe_io import DTYPES, RawCheckpoint, read_checkpoint, to_safetensors_bytes

log = logging.getLogger(__name__)

_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_HEX = re.compile(r"[0-9a-f]{1,64}")


def find_by_sha256(session: Session, sha256: str) -> Checkpoint | None:
    return session.scalars(select(Checkpoint).where(Checkpoint.sha256 == sha256)).first()


def ingest(
    session_factory: SessionFactory, blobs: BlobStore, temp: TempBlob, filename: str | None
) -> tuple[Checkpoint, bool]:
    """Store an uploaded temp file; returns the checkpoint and whether it is new."""
    try:
        sha256 = temp.close()
        with session_factory() as session:
            existing = find_by_sha256(session, sha256)
            if existing is not None:
                return existing, False
            raw, architecture, digest = _validate(temp)
            blob_sha256, blob_size = _place_blob(blobs, temp, raw)
            checkpoint = Checkpoint(
                sha256=sha256,
                size=temp.size,
                format=raw.format,
                filename=filename,
                blob_sha256=blob_sha256,
                blob_size=blob_size,
                architecture=architecture,
                architecture_digest=digest,
                tensor_count=len(raw.tensors),
                parameter_count=sum(t.numel() for t in raw.tensors.values()),
                dtype_summary=_dtype_summary(raw),
            )
            return _insert(session, blobs, checkpoint)
    finally:
        temp.discard()


def _validate(temp: TempBlob) -> tuple[RawCheckpoint, dict | None, str | None]:
    try:
        raw = read_checkpoint(temp.path)
        return raw, *describe_architecture(temp.path)
    except CheckpointError as exc:
        raise ProblemError(422, str(exc), slug="invalid-checkpoint") from None
    except ArchitectureError as exc:
        raise ProblemError(422, str(exc), slug="invalid-architecture") from None


def _place_blob(blobs: BlobStore, temp: TempBlob, raw: RawCheckpoint) -> tuple[str, int]:
    if raw.format == "safetensors":
        return blobs.commit(temp), temp.size
    data = to_safetensors_bytes(raw.tensors, raw.metadata)
    return blobs.put_bytes(data), len(data)


def _insert(session: Session, blobs: BlobStore, checkpoint: Checkpoint) -> tuple[Checkpoint, bool]:
    try:
        session.add(checkpoint)
        session.commit()
        return checkpoint, True
    except IntegrityError:
        # A concurrent upload of the same bytes won the unique constraint: same answer.
        session.rollback()
        existing = find_by_sha256(session, checkpoint.sha256)
        if existing is None:
            raise
        return existing, False
    except BaseException:
        session.rollback()
        forget_blob_if_unused(session, blobs, checkpoint.blob_sha256)
        raise


def forget_blob_if_unused(session: Session, blobs: BlobStore, blob_sha256: str) -> None:
    used = session.scalar(select(exists().where(Checkpoint.blob_sha256 == blob_sha256)))
    if not used:
        blobs.delete(blob_sha256)


def _dtype_summary(raw: RawCheckpoint) -> dict[str, int]:
    summary: dict[str, int] = {}
    for tensor in raw.tensors.values():
        name = _DTYPE_NAMES[tensor.dtype]
        summary[name] = summary.get(name, 0) + math.prod(tensor.shape)
    return dict(sorted(summary.items()))


def get_checkpoint(session: Session, checkpoint_id: int) -> Checkpoint:
    checkpoint = session.get(Checkpoint, checkpoint_id)
    if checkpoint is None:
        raise ProblemError(404, f"checkpoint {checkpoint_id} does not exist", slug="not-found")
    return checkpoint


def list_checkpoints(
    session: Session,
    *,
    limit: int,
    cursor: str | None,
    format: str | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    sha256_prefix: str | None = None,
) -> list[Checkpoint]:
    """Newest first; returns up to ``limit + 1`` rows (the extra one signals a next page)."""
    query = newest_first(Checkpoint, limit, cursor)
    if format is not None:
        query = query.where(Checkpoint.format == format)
    query = created_within(query, Checkpoint.created_at, created_after, created_before)
    if sha256_prefix is not None:
        prefix = sha256_prefix.lower()
        if not _HEX.fullmatch(prefix):
            raise ProblemError(422, "sha256_prefix must be 1 to 64 hex digits", slug="validation")
        query = query.where(Checkpoint.sha256.startswith(prefix, autoescape=True))
    return list(session.scalars(query))



def delete_checkpoint(session: Session, blobs: BlobStore, checkpoint_id: int) -> None:
    """Delete the row; the blob goes too once no other checkpoint shares it."""
    checkpoint = get_checkpoint(session, checkpoint_id)
    referenced = session.scalar(
        select(
            exists().where(Prediction.checkpoint_id == checkpoint_id)
            | exists().where(
                or_(
                    Merge.checkpoint_a_id == checkpoint_id,
                    Merge.checkpoint_b_id == checkpoint_id,
                    Merge.result_checkpoint_id == checkpoint_id,
                )
            )
            | exists().where(MergeInput.checkpoint_id == checkpoint_id)
        )
    )
    if referenced:
        raise ProblemError(
            409,
            f"checkpoint {checkpoint_id} is used by predictions or merges; delete those first",
            slug="checkpoint-in-use",
        )
    blob_sha256 = checkpoint.blob_sha256
    session.delete(checkpoint)
    session.commit()
    forget_blob_if_unused(session, blobs, blob_sha256)
