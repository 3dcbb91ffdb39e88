"""Dataset ingestion and lookup: the checkpoints' discipline (hash while streaming, answer
duplicates, validate, only then place the blob and insert the row)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.blobs import BlobStore, TempBlob
from app.datasets import repository
from app.datasets.data import read_eval_set
from app.datasets.schemas import DatasetOut
from app.db import SessionFactory, read_session
from app.models import Dataset
from app.pagination import Page, PageRequest, paginate
from app.problems import ProblemError
from graphs.errors import CheckpointError


def ingest_dataset(
    session_factory: SessionFactory, blobs: BlobStore, temp: TempBlob, filename: str | None
) -> tuple[Dataset, bool]:
    try:
        sha256 = temp.close()
        with read_session(session_factory) as session:
            existing = repository.by_sha256(session, sha256)
        if existing is not None:
            return existing, False
        try:
            data = read_eval_set(temp.path)
        except CheckpointError as exc:
            raise ProblemError(422, f"invalid dataset: {exc}", slug="invalid-dataset") from None
        dataset = Dataset(
            sha256=sha256,
            size=temp.size,
            filename=filename,
            blob_sha256=blobs.commit(temp),
            num_samples=len(data.x),
            x_shape=list(data.x.shape),
            y_shape=list(data.y.shape),
            num_classes=data.num_classes,
        )
        with session_factory() as session:
            session.add(dataset)
            try:
                session.commit()
            except IntegrityError:  # the same bytes, uploaded concurrently, won
                session.rollback()
                return session.scalars(select(Dataset).where(Dataset.sha256 == sha256)).one(), False
            return dataset, True
    finally:
        temp.discard()


def get_dataset(session: Session, dataset_id: int) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise ProblemError(404, f"dataset {dataset_id} does not exist", slug="not-found")
    return dataset


def list_datasets(session: Session, page: PageRequest) -> Page[DatasetOut]:
    return paginate(
        session,
        select(Dataset),
        Dataset.id,
        page,
        lambda rows: [DatasetOut.model_validate(row) for row in rows],
    )
