"""Dataset ingestion (``app.ingest``'s order), lookup and deletion."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import blob_refs
from app.blobs import BlobStore, TempBlob
from app.datasets import repository
from app.datasets.data import read_eval_set
from app.datasets.schemas import DatasetOut
from app.db import SessionFactory
from app.ingest import ingest
from app.merges import repository as merges
from app.models import Dataset
from app.owned import counted, owned_or_404
from app.pagination import Page, PageRequest, paginate
from app.problems import ProblemError
from app.quotas import check_stored_bytes
from app.settings import Settings
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
            num_samples=len(data.x),
            x_shape=list(data.x.shape),
            y_shape=list(data.y.shape),
            num_classes=data.num_classes,
        )
        dataset.blob_sha256 = blob_refs.place(session, blobs, temp)  # last: nothing after fails
        session.add(dataset)
        try:  # after the reading: the quota's lock is held only until the commit
            check_stored_bytes(session, settings, tenant_id, temp.size)
        except ProblemError:
            session.rollback()
            blob_refs.collect_all(session, blobs, [dataset.blob_sha256])
            raise
        return dataset

    def find(session: Session, sha256: str) -> Dataset | None:
        return repository.by_sha256(session, tenant_id, sha256)

    return ingest(session_factory, blobs, temp, find, create)


def get_dataset(session: Session, tenant_id: int, dataset_id: int) -> Dataset:
    return owned_or_404(session, Dataset, dataset_id, tenant_id, "dataset")


def list_datasets(session: Session, tenant_id: int, page: PageRequest) -> Page[DatasetOut]:
    query = select(Dataset).where(Dataset.tenant_id == tenant_id)
    return paginate(
        session, query, page, lambda rows: [DatasetOut.model_validate(r) for r in rows]
    )


def delete_dataset(
    session: Session, blobs: BlobStore, tenant_id: int, dataset_id: int, cascade: bool = False
) -> list[int]:
    """Delete the dataset; merges that used it are a 409 unless ``cascade`` deletes them too
    (with their jobs, whose ids are returned). Its blob goes once no row names it
    (``blob_refs``)."""
    dataset = owned_or_404(session, Dataset, dataset_id, tenant_id, "dataset")
    locked = blob_refs.lock(session, [dataset.blob_sha256])
    users = merges.of_dataset(session, tenant_id, dataset_id)
    if users and not cascade:
        raise ProblemError(
            409,
            f"dataset {dataset_id} is used by {counted(users, 'merge')}; delete those first, "
            "or delete with ?cascade=true to delete them too",
            slug="dataset-in-use",
        )
    try:
        job_ids = merges.delete_with_jobs(session, users)
        if not session.execute(delete(Dataset).where(Dataset.id == dataset_id)).rowcount:
            session.rollback()  # a concurrent delete of it committed first
            raise ProblemError(404, f"dataset {dataset_id} does not exist", slug="not-found")
        unreferenced = blob_refs.release(session, locked)
        session.commit()
    except IntegrityError:  # a merge that uses it committed meanwhile (PostgreSQL)
        session.rollback()
        raise ProblemError(
            409, f"dataset {dataset_id} came into use while being deleted; try again",
            slug="dataset-in-use",
        ) from None
    blob_refs.collect_all(session, blobs, unreferenced)
    return job_ids

