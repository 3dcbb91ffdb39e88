"""Dataset ingestion (``app.ingest``'s order) and lookup."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.blobs import BlobStore, TempBlob
from app.datasets import repository
from app.datasets.data import read_eval_set
from app.datasets.schemas import DatasetOut
from app.db import SessionFactory
from app.ingest import ingest
from app.models import Dataset
from app.pagination import Page, PageRequest, paginate
from app.problems import ProblemError
from graphs import CheckpointError


def ingest_dataset(
    session_factory: SessionFactory, blobs: BlobStore, temp: TempBlob, filename: str | None
) -> tuple[Dataset, bool]:
    def create(session: Session, sha256: str) -> Dataset:
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
        session.add(dataset)
        return dataset

    def forget(session: Session, dataset: Dataset) -> None:
        if repository.by_sha256(session, dataset.sha256) is None:
            blobs.delete(dataset.blob_sha256)

    return ingest(session_factory, temp, repository.by_sha256, create, forget)


def list_datasets(session: Session, page: PageRequest) -> Page[DatasetOut]:
    return paginate(
        session, select(Dataset), page, lambda rows: [DatasetOut.model_validate(r) for r in rows]
    )
