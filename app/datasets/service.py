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
from app.quotas import check_stored_bytes
from app.settings import Settings
from app.tenancy import owned_or_404
from graphs import CheckpointError


def ingest_dataset(
    session_factory: SessionFactory,
    blobs: BlobStore,
    settings: Settings,
    tenant_id: int,
    temp: TempBlob,
    filename: str | None,
) -> tuple[Dataset, bool]:
    """Store an uploaded temp file as the tenant's dataset; whether it is new. Bytes
    another tenant stored take the same path as new bytes (read, validated, own row)."""

    def create(session: Session, sha256: str) -> Dataset:
        try:
            data = read_eval_set(temp.path)
        except CheckpointError as exc:
            raise ProblemError(422, f"invalid dataset: {exc}", slug="invalid-dataset") from None
        dataset = Dataset(
            tenant_id=tenant_id,
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
        try:  # after the reading: the quota's lock is held only until the commit
            check_stored_bytes(session, settings, tenant_id, temp.size)
        except ProblemError:
            session.rollback()
            forget(session, dataset)
            raise
        return dataset

    def forget(session: Session, dataset: Dataset) -> None:
        if not repository.blob_in_use(session, dataset.blob_sha256):
            blobs.delete(dataset.blob_sha256)

    def find(session: Session, sha256: str) -> Dataset | None:
        return repository.by_sha256(session, tenant_id, sha256)

    return ingest(session_factory, temp, find, create, forget)


def get_dataset(session: Session, tenant_id: int, dataset_id: int) -> Dataset:
    return owned_or_404(session, Dataset, dataset_id, tenant_id, "dataset")


def list_datasets(session: Session, tenant_id: int, page: PageRequest) -> Page[DatasetOut]:
    query = select(Dataset).where(Dataset.tenant_id == tenant_id)
    return paginate(
        session, query, page, lambda rows: [DatasetOut.model_validate(r) for r in rows]
    )
