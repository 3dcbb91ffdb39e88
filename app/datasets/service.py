"""Dataset ingestion and lookup. Same discipline as checkpoints: hash while streaming,
answer duplicates, validate, only then place the blob and insert the row."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.blobs import BlobStore, TempBlob
from app.datasets.data import read_eval_set
from app.db import SessionFactory
from app.models import Dataset
from app.pagination import newest_first
from app.problems import ProblemError
from graphs.errors import CheckpointError


def ingest_dataset(
    session_factory: SessionFactory, blobs: BlobStore, temp: TempBlob, filename: str | None
) -> tuple[Dataset, bool]:
    try:
        sha256 = temp.close()
        with session_factory() as session:
            existing = session.scalars(select(Dataset).where(Dataset.sha256 == sha256)).first()
            if existing is not None:
                return existing, False
            try:
                data = read_eval_set(temp.path)
            except CheckpointError as exc:
                raise ProblemError(422, f"invalid dataset: {exc}", slug="invalid-dataset") from None
            blob_sha256 = blobs.commit(temp)
            dataset = Dataset(
                sha256=sha256,
                size=temp.size,
                filename=filename,
                blob_sha256=blob_sha256,
                num_samples=len(data.x),
                x_shape=list(data.x.shape),
                y_shape=list(data.y.shape),
                num_classes=data.num_classes,
            )
            try:
                session.add(dataset)
                session.commit()
                return dataset, True
            except IntegrityError:
                session.rollback()
                existing = session.scalars(select(Dataset).where(Dataset.sha256 == sha256)).first()
                if existing is None:
                    raise
                return existing, False
    finally:
        temp.discard()


def get_dataset(session: Session, dataset_id: int) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise ProblemError(404, f"dataset {dataset_id} does not exist", slug="not-found")
    return dataset


def list_datasets(session: Session, *, limit: int, cursor: str | None) -> list[Dataset]:
    query = newest_first(Dataset, limit, cursor)
    return list(session.scalars(query))
