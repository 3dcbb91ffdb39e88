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
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import graphs
from app import blob_refs
from app.blobs import BlobStore, TempBlob
from app.checkpoints import repository
from app.checkpoints.architecture import architecture_digest, architecture_summary
from app.checkpoints.dependents import DEPENDENTS
from app.checkpoints.schemas import CheckpointOut
from app.db import SessionFactory
from app.ingest import ingest as ingest_upload
from app.models import Checkpoint
from app.owned import counted, owned_or_404
from app.pagination import Created, Page, PageRequest, matching, paginate
from app.problems import ProblemError
from app.quotas import check_stored_bytes
from app.settings import Settings
from graphs import ArchitectureError, CheckpointError, MissingArchitectureError
from graphs.infer import parse_activation
from graphs.safe_io import DTYPES, RawCheckpoint, read_checkpoint, to_safetensors_bytes

log = logging.getLogger(__name__)

DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_HEX = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True)
class Reading:
    """What an upload says about settling an inferred architecture (``None``: nothing)."""

    activation: str | None = None
    input_shape: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, activation: str | None, input_shape: str | None) -> Reading:
        """The upload's query parameters, or a 422 naming the one that cannot be right."""
        if activation is not None:
            try:
                parse_activation(activation)
            except ArchitectureError as exc:
                raise ProblemError(422, f"activation: {exc}", slug="validation") from None
        shape = None
        if input_shape is not None:
            parts = input_shape.split(",")
            if not all(p.strip().isdigit() and int(p) > 0 for p in parts) or len(parts) > 4:
                raise ProblemError(
                    422,
                    f"input_shape: {input_shape!r} is not 1 to 4 positive integers separated "
                    "by commas (per sample, no batch dimension), e.g. 1,8,8",
                    slug="validation",
                )
            shape = tuple(int(p) for p in parts)
        return cls(activation, shape)

    def given(self) -> dict[str, Any]:
        found = {"activation": self.activation, "input_shape": self.input_shape}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in found.items() if v}


def ingest(
    session_factory: SessionFactory,
    blobs: BlobStore,
    settings: Settings,
    tenant_id: int,
    temp: TempBlob,
    filename: str | None,
    reading: Reading = Reading(),
) -> tuple[Checkpoint, bool]:
    """Store an uploaded temp file as the tenant's; returns the checkpoint and whether it
    is new. Bytes another tenant stored already take the same path as new bytes (read,
    validated, their own row: a 201): only the blob file is shared."""

    def create(session: Session, sha256: str) -> Checkpoint:
        checkpoint = store(session, blobs, tenant_id, temp, sha256, filename, reading=reading)
        try:  # after the reading: the quota's lock is held only until the commit
            check_stored_bytes(session, settings, tenant_id, temp.size)
        except ProblemError:
            session.rollback()
            blob_refs.collect_all(session, blobs, [checkpoint.blob_sha256])
            raise
        return checkpoint

    return ingest_upload(
        session_factory,
        blobs,
        temp,
        lambda session, sha256: repository.by_sha256(session, tenant_id, sha256),
        create,
    )


def store(
    session: Session,
    blobs: BlobStore,
    tenant_id: int,
    temp: TempBlob,
    sha256: str,
    filename: str | None,
    lineage: dict[str, Any] | None = None,
    reading: Reading = Reading(),
) -> Checkpoint:
    """Validate a closed temp file, place its blob (``blob_refs.place``, under the blob
    row's lock), and add its row to the caller's session; the caller commits, or collects
    the blob if it cannot.

    The blob is the upload itself for safetensors, the same tensors as safetensors for a
    PyTorch file (a worker's ``graphs.load`` reads them as this upload did), and, when the
    upload settled what inference assumes, the tensors with that architecture attached.
    """
    raw, loaded, missing = _validate(temp.path, reading)
    tensors = raw.tensors
    data: bytes | None = None  # None: the upload itself is the blob
    if loaded is not None and reading.given():
        data = graphs.checkpoint_bytes(loaded.checkpoint)  # the settled architecture attached
    elif raw.format != "safetensors":  # the same tensors as safetensors: one blob for both
        data = to_safetensors_bytes(raw.tensors, raw.metadata)
    architecture = loaded.architecture if loaded else None
    checkpoint = Checkpoint(
        tenant_id=tenant_id,
        sha256=sha256,
        size=temp.size,
        format=raw.format,
        filename=filename,
        blob_size=temp.size if data is None else len(data),
        architecture=architecture_summary(architecture) if architecture else None,
        architecture_digest=architecture_digest(architecture) if architecture else None,
        tensor_count=len(tensors),
        parameter_count=sum(math.prod(t.shape) for t in tensors.values()),
        dtype_summary=dtype_summary(tensors),
        reading=_reading_record(raw, loaded, reading, missing),
    )
    if lineage is not None:  # unset, the column is NULL rather than JSON null
        checkpoint.lineage = lineage
    checkpoint.blob_sha256 = (  # last: nothing after placing the file can fail
        blob_refs.place(session, blobs, temp)
        if data is None
        else blob_refs.place_bytes(session, blobs, data)
    )
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
    raw: RawCheckpoint, loaded: graphs.Loaded | None, reading: Reading, missing: str | None
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
    else:  # stored without an architecture: say why, and how to attach one
        record["notes"] = [
            f"architecture: none, so it cannot be predicted on or merged: {missing}"
        ]
    return record


# What an HTTP upload adds to the library's hint (graphs.infer.HOW_TO, which names the
# library calls): the upload has no arch field, it reads the architecture from the file.
HTTP_HOW_TO = (
    "over HTTP, attach it to the file before uploading (an upload reads the architecture "
    "from the file itself and takes no op graph of its own; its activation= and "
    "input_shape= only settle an inferred layout)"
)


def missing_architecture_text(error: MissingArchitectureError) -> str:
    """The library's reason and hint, with what differs over HTTP."""
    return f"{error}; {HTTP_HOW_TO}"


def _validate(
    path: Path, reading: Reading
) -> tuple[RawCheckpoint, graphs.Loaded | None, str | None]:
    """The file's tensors and, when one is known, how it reads with its architecture;
    else why none was found."""
    try:
        raw = read_checkpoint(path)
        try:
            loaded = graphs.load_checkpoint(
                raw, activation=reading.activation, input_shape=reading.input_shape
            )
            return raw, loaded, None
        except MissingArchitectureError as exc:
            if reading.given():
                raise ProblemError(
                    422, missing_architecture_text(exc), slug="invalid-architecture"
                ) from None
            return raw, None, missing_architecture_text(exc)
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


def get_checkpoint(session: Session, tenant_id: int, checkpoint_id: int) -> Checkpoint:
    return owned_or_404(session, Checkpoint, checkpoint_id, tenant_id, "checkpoint")


def list_checkpoints(
    session: Session,
    tenant_id: int,
    page: PageRequest,
    created: Created,
    format: str | None = None,
    sha256_prefix: str | None = None,
) -> Page[CheckpointOut]:
    if sha256_prefix is not None:
        sha256_prefix = sha256_prefix.lower()
        if not _HEX.fullmatch(sha256_prefix):
            raise ProblemError(422, "sha256_prefix must be 1 to 64 hex digits", slug="validation")
    query = matching(Checkpoint, tenant_id=tenant_id, format=format)
    if sha256_prefix is not None:
        query = query.where(Checkpoint.sha256.startswith(sha256_prefix, autoescape=True))
    return paginate(session, created.within(query, Checkpoint.created_at), page, _out)


def _out(rows: list[Checkpoint]) -> list[CheckpointOut]:
    return [CheckpointOut.model_validate(row) for row in rows]


def delete_checkpoint(
    session: Session, blobs: BlobStore, tenant_id: int, checkpoint_id: int, cascade: bool = False
) -> list[int]:
    """Delete the checkpoint. What depends on it (``dependents.DEPENDENTS``) is a 409 naming
    it, or with ``cascade`` is deleted too. The blob goes once no row names it: decided in
    this transaction under the blob's lock, the file removed after it (``blob_refs``).
    Returns the ids of the jobs deleted with what they produced."""
    checkpoint = owned_or_404(session, Checkpoint, checkpoint_id, tenant_id, "checkpoint")
    locked = blob_refs.lock(session, [checkpoint.blob_sha256])  # an upload's order: blob first
    users = {d: ids for d in DEPENDENTS if (ids := d.find(session, tenant_id, checkpoint_id))}
    if users and not cascade:
        named = " and ".join(counted(ids, d.noun) for d, ids in users.items())
        raise ProblemError(
            409,
            f"checkpoint {checkpoint_id} is used by {named}; delete those first, or delete "
            "with ?cascade=true to delete them too",
            slug="checkpoint-in-use",
        )
    try:
        job_ids = [job for d, ids in users.items() for job in d.delete(session, ids)]
        deleted = session.execute(sql_delete(Checkpoint).where(Checkpoint.id == checkpoint_id))
        if not deleted.rowcount:
            session.rollback()  # a concurrent delete of it committed first
            raise ProblemError(404, f"checkpoint {checkpoint_id} does not exist", slug="not-found")
        unreferenced = blob_refs.release(session, locked)
        session.commit()
    except IntegrityError:  # a job's result naming it committed meanwhile (PostgreSQL)
        session.rollback()
        raise ProblemError(
            409,
            f"checkpoint {checkpoint_id} came into use while being deleted; try again",
            slug="checkpoint-in-use",
        ) from None
    blob_refs.collect_all(session, blobs, unreferenced)
    return job_ids
