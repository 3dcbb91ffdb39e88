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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.orm import Session

import graphs
from app.blobs import BlobStore, TempBlob
from app.checkpoints import repository
from app.checkpoints.architecture import architecture_digest, architecture_summary
from app.checkpoints.schemas import CheckpointOut
from app.db import SessionFactory
from app.ingest import ingest as ingest_upload
from app.models import Checkpoint
from app.pagination import Created, Page, PageRequest, matching, paginate
from app.problems import ProblemError, get_or_404
from graphs import ArchitectureError, CheckpointError, MissingArchitectureError
from graphs.safe_io import DTYPES, RawCheckpoint, read_checkpoint, to_safetensors_bytes

log = logging.getLogger(__name__)

DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_HEX = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True)
class Reading:
    """What an upload says about settling an inferred architecture (``None``: nothing)."""

    activation: str | None = None
    input_shape: tuple[int, ...] | None = None

    def given(self) -> dict[str, Any]:
        found = {"activation": self.activation, "input_shape": self.input_shape}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in found.items() if v}


def ingest(
    session_factory: SessionFactory,
    blobs: BlobStore,
    temp: TempBlob,
    filename: str | None,
    reading: Reading = Reading(),
) -> tuple[Checkpoint, bool]:
    """Store an uploaded temp file; returns the checkpoint and whether it is new."""
    return ingest_upload(
        session_factory,
        temp,
        lambda session, sha256: repository.by_sha256(session, sha256),
        lambda session, sha256: store(session, blobs, temp, sha256, filename, reading=reading),
        lambda session, row: forget_blob_if_unused(session, blobs, row.blob_sha256),
    )


def store(
    session: Session,
    blobs: BlobStore,
    temp: TempBlob,
    sha256: str,
    filename: str | None,
    lineage: dict[str, Any] | None = None,
    reading: Reading = Reading(),
) -> Checkpoint:
    """Validate a closed temp file, place its blob, and add its row to the caller's
    session; the caller commits, or removes the blob if it cannot.

    The blob is the upload itself for safetensors, the same tensors as safetensors for a
    PyTorch file (a worker's ``graphs.load`` reads them as this upload did), and, when the
    upload settled what inference assumes, the tensors with that architecture attached.
    """
    raw, loaded = _validate(temp.path, reading)
    tensors = raw.tensors
    if loaded is not None and reading.given():
        data = graphs.checkpoint_bytes(loaded.checkpoint)  # the settled architecture attached
        blob_sha256, blob_size = blobs.put_bytes(data), len(data)
    elif raw.format == "safetensors":
        blob_sha256, blob_size = blobs.commit(temp), temp.size
    else:  # the same tensors as safetensors: one blob for both formats of one network
        data = to_safetensors_bytes(raw.tensors, raw.metadata)
        blob_sha256, blob_size = blobs.put_bytes(data), len(data)
    architecture = loaded.architecture if loaded else None
    checkpoint = Checkpoint(
        sha256=sha256,
        size=temp.size,
        format=raw.format,
        filename=filename,
        blob_sha256=blob_sha256,
        blob_size=blob_size,
        architecture=architecture_summary(architecture) if architecture else None,
        architecture_digest=architecture_digest(architecture) if architecture else None,
        tensor_count=len(tensors),
        parameter_count=sum(math.prod(t.shape) for t in tensors.values()),
        dtype_summary=dtype_summary(tensors),
        reading=_reading_record(raw, loaded, reading),
    )
    if lineage is not None:  # unset, the column is NULL rather than JSON null
        checkpoint.lineage = lineage
    session.add(checkpoint)
    return checkpoint


def check_same_reading(checkpoint: Checkpoint, created: bool, reading: Reading) -> None:
    """Known bytes answer with their row; settling them differently is a conflict, never
    silently ignored."""
    given = reading.given()
    if created or not given:
        return
    record = checkpoint.reading or {}
    assumed = {**(record.get("assumptions") or {}), **(record.get("settled") or {})}
    differ = {k: v for k, v in given.items() if assumed.get(k) != v}
    if differ:
        raise ProblemError(
            409,
            f"these bytes are already stored as checkpoint {checkpoint.id}, read with "
            f"{ {k: assumed.get(k) for k in differ} }; delete it to upload them read with "
            f"{differ}",
            slug="conflict",
        )


def _reading_record(
    raw: RawCheckpoint, loaded: graphs.Loaded | None, reading: Reading
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "provenance": loaded.provenance if loaded else None,
        "settled": reading.given(),
        "ignored_keys": list(raw.ignored_keys),
        "nested_under": ".".join(raw.nested_under) or None,
    }
    if loaded is not None:
        record |= {
            "assumptions": loaded.assumptions,
            "notes": list(loaded.notes),
            "prefix_stripped": loaded.prefix_stripped or None,
        }
    return record


def _validate(path: Path, reading: Reading) -> tuple[RawCheckpoint, graphs.Loaded | None]:
    """The file's tensors and, when one is known, how it reads with its architecture."""
    try:
        raw = read_checkpoint(path)
        try:
            return raw, graphs.load_checkpoint(
                raw, activation=reading.activation, input_shape=reading.input_shape
            )
        except MissingArchitectureError:
            if reading.given():
                raise
            return raw, None
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
            f"checkpoint {checkpoint_id} is used by predictions, merges or zoos; delete those "
            "first",
            slug="checkpoint-in-use",
        )
    blob_sha256 = checkpoint.blob_sha256
    session.delete(checkpoint)
    session.commit()
    forget_blob_if_unused(session, blobs, blob_sha256)
