"""Checkpoint ingestion (``app.ingest``'s order), lookup and deletion.

``sha256`` is of the uploaded bytes
(so re-uploading the same file is recognised before any parsing); the stored blob is
always safetensors (the upload itself for safetensors, a conversion for PyTorch files).
Merged checkpoints come in through the same path (``store``), inside the transaction that
finishes their merge job.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.orm import Session

import graphs
from app.blobs import BlobStore, TempBlob
from app.checkpoints import repository
from app.checkpoints.architecture import (
    architecture_digest,
    architecture_summary,
    find_architecture,
)
from app.checkpoints.schemas import CheckpointOut
from app.db import SessionFactory
from app.ingest import ingest as ingest_upload
from app.models import Checkpoint
from app.pagination import Created, Page, PageRequest, matching, paginate
from app.problems import ProblemError, get_or_404
from graphs import ArchitectureError, CheckpointError
from graphs.safe_io import DTYPES, RawCheckpoint, read_checkpoint, to_safetensors_bytes

log = logging.getLogger(__name__)

DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_HEX = re.compile(r"[0-9a-f]{1,64}")


def ingest(
    session_factory: SessionFactory, blobs: BlobStore, temp: TempBlob, filename: str | None
) -> tuple[Checkpoint, bool]:
    """Store an uploaded temp file; returns the checkpoint and whether it is new."""
    return ingest_upload(
        session_factory,
        temp,
        lambda session, sha256: repository.by_sha256(session, sha256),
        lambda session, sha256: store(session, blobs, temp, sha256, filename),
        lambda session, row: forget_blob_if_unused(session, blobs, row.blob_sha256),
    )


def store(
    session: Session,
    blobs: BlobStore,
    temp: TempBlob,
    sha256: str,
    filename: str | None,
    lineage: dict[str, Any] | None = None,
) -> Checkpoint:
    """Validate a closed temp file, place its blob, and add its row to the caller's
    session; the caller commits, or removes the blob if it cannot."""
    raw, architecture = _validate(temp.path)
    if raw.format == "safetensors":
        blob_sha256, blob_size = blobs.commit(temp), temp.size
    else:
        data = to_safetensors_bytes(raw.tensors, raw.metadata)
        blob_sha256, blob_size = blobs.put_bytes(data), len(data)
    checkpoint = Checkpoint(
        sha256=sha256,
        size=temp.size,
        format=raw.format,
        filename=filename,
        blob_sha256=blob_sha256,
        blob_size=blob_size,
        architecture=architecture_summary(architecture) if architecture else None,
        architecture_digest=architecture_digest(architecture) if architecture else None,
        tensor_count=len(raw.tensors),
        parameter_count=sum(math.prod(t.shape) for t in raw.tensors.values()),
        dtype_summary=dtype_summary(raw.tensors),
    )
    if lineage is not None:  # unset, the column is NULL rather than JSON null
        checkpoint.lineage = lineage
    session.add(checkpoint)
    return checkpoint


def _validate(path: Path) -> tuple[RawCheckpoint, graphs.Architecture | None]:
    """The file's tensors and its architecture (None when it has no known one)."""
    try:
        return read_checkpoint(path), find_architecture(path)
    except CheckpointError as exc:
        raise ProblemError(422, str(exc), slug="invalid-checkpoint") from None
    except ArchitectureError as exc:
        raise ProblemError(422, str(exc), slug="invalid-architecture") from None


def dtype_summary(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """dtype name -> number of elements."""
    summary: dict[str, int] = {}
    for tensor in tensors.values():
        name = DTYPE_NAMES[tensor.dtype]
        summary[name] = summary.get(name, 0) + math.prod(tensor.shape)
    return dict(sorted(summary.items()))


def forget_blob_if_unused(session: Session, blobs: BlobStore, blob_sha256: str) -> None:
    if not repository.blob_in_use(session, blob_sha256):
        blobs.delete(blob_sha256)


def get_checkpoint(session: Session, checkpoint_id: int) -> Checkpoint:
    return get_or_404(session, Checkpoint, checkpoint_id, "checkpoint")


def list_checkpoints(
    session: Session,
    page: PageRequest,
    created: Created,
    format: str | None = None,
    sha256_prefix: str | None = None,
) -> Page[CheckpointOut]:
    if sha256_prefix is not None:
        sha256_prefix = sha256_prefix.lower()
        if not _HEX.fullmatch(sha256_prefix):
            raise ProblemError(422, "sha256_prefix must be 1 to 64 hex digits", slug="validation")
    query = matching(Checkpoint, format=format)
    if sha256_prefix is not None:
        query = query.where(Checkpoint.sha256.startswith(sha256_prefix, autoescape=True))
    return paginate(session, created.within(query, Checkpoint.created_at), page, _out)


def _out(rows: list[Checkpoint]) -> list[CheckpointOut]:
    return [CheckpointOut.model_validate(row) for row in rows]


def delete_checkpoint(session: Session, blobs: BlobStore, checkpoint_id: int) -> None:
    """Delete the row; the blob goes too once no other checkpoint shares it."""
    checkpoint = get_checkpoint(session, checkpoint_id)
    if repository.in_use(session, checkpoint_id):
        raise ProblemError(
            409,
            f"checkpoint {checkpoint_id} is used by predictions or merges; delete those first",
            slug="checkpoint-in-use",
        )
    blob_sha256 = checkpoint.blob_sha256
    session.delete(checkpoint)
    session.commit()
    forget_blob_if_unused(session, blobs, blob_sha256)
