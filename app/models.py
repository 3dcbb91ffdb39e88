"""Database tables. The schema itself is created only by the Alembic migrations."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Ids are 64-bit and never reused: bigint identities on PostgreSQL, AUTOINCREMENT rowids on
# SQLite (a plain rowid hands a deleted row's id to the next insert; issue 16 defect 4).
Id = BigInteger().with_variant(Integer(), "sqlite")
ID_MAX = 2**63 - 1  # the largest id either database stores
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}

LOCAL_TENANT_ID = 1  # the tenant migration 0005 creates; owns everything made without keys
# ``tenant_id`` columns have no default: every insert names its tenant (a missed one fails)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC and always returns aware datetimes (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.canceled)


class Tenant(Base):
    """Who owns records; every API key belongs to one. Tenant 1 is the local tenant."""

    __tablename__ = "tenants"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key: only a hash of its secret is stored; ``prefix`` identifies it in lists."""

    __tablename__ = "api_keys"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(32), index=True)
    secret_hash: Mapped[str] = mapped_column(String(128), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class Checkpoint(Base):
    """One uploaded file. ``sha256`` is of the uploaded bytes (dedup key); the stored blob
    is always safetensors, addressed by ``blob_sha256``."""

    __tablename__ = "checkpoints"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sha256", name="uq_checkpoints_tenant_id_sha256"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(32), index=True)
    filename: Mapped[str | None] = mapped_column(String(255))
    blob_sha256: Mapped[str] = mapped_column(String(64), index=True)
    blob_size: Mapped[int] = mapped_column(BigInteger)
    architecture: Mapped[dict[str, Any] | None]
    parameter_count: Mapped[int] = mapped_column(BigInteger)
    tensor_count: Mapped[int] = mapped_column(Integer)
    dtype_summary: Mapped[dict[str, Any]]
    architecture_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    lineage: Mapped[dict[str, Any] | None]
    reading: Mapped[dict[str, Any] | None]  # what reading the file decided (see schemas)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class Job(Base):
    """A unit of work; this row is the single source of truth about it."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    kind: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False, length=16, validate_strings=True),
        default=JobStatus.queued,
    )
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    # what the job says about its progress beyond the fraction (a training job's epoch,
    # loss, validation metric, ETA); shown on the job and its event stream
    progress_detail: Mapped[dict[str, Any] | None]
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None]  # the one stored copy of a job's result
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]


class Worker(Base):
    """A live job worker; a job held by a worker missing here (or silent) is orphaned."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    """A small evaluation set (safetensors with ``x`` and ``y``) for merges."""

    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sha256", name="uq_datasets_tenant_id_sha256"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str | None] = mapped_column(String(255))
    blob_sha256: Mapped[str] = mapped_column(String(64), index=True)
    num_samples: Mapped[int] = mapped_column(Integer)
    x_shape: Mapped[list[int]] = mapped_column(JSON)
    y_shape: Mapped[list[int]] = mapped_column(JSON)
    num_classes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class Prediction(Base):
    """One metanetwork's answer for one checkpoint; written with its job's success."""

    __tablename__ = "predictions"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True, unique=True
    )
    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="RESTRICT"), index=True
    )
    metanetwork: Mapped[str | None] = mapped_column(String(128), index=True)
    metanetwork_version: Mapped[str | None] = mapped_column(String(64))
    task: Mapped[str | None] = mapped_column(String(32))
    label: Mapped[str | None] = mapped_column(String(255))
    probabilities: Mapped[dict[str, Any] | None]
    value: Mapped[float | None] = mapped_column(Float)
    interval_low: Mapped[float | None] = mapped_column(Float)
    interval_high: Mapped[float | None] = mapped_column(Float)
    coverage: Mapped[float | None] = mapped_column(Float)
    in_domain: Mapped[bool | None] = mapped_column(Boolean)
    domain_issues: Mapped[list[str] | None] = mapped_column(JSON)
    timings: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class Merge(Base):
    """A merge of two or more checkpoints (``merge_inputs``, in order) into
    ``result_checkpoint_id``; its result document is its job's ``result``."""

    __tablename__ = "merges"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True, unique=True
    )
    result_checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="RESTRICT")
    )
    method: Mapped[str | None] = mapped_column(String(16))
    lam: Mapped[float | None] = mapped_column(Float)
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="RESTRICT"), index=True
    )
    barrier: Mapped[float | None] = mapped_column(Float)
    timings: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class MergeInput(Base):
    """Input ``position`` of a merge (every input, so a merge of n checkpoints is queryable
    and none of them can be deleted while the merge exists)."""

    __tablename__ = "merge_inputs"

    merge_id: Mapped[int] = mapped_column(
        ForeignKey("merges.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="RESTRICT"), index=True
    )


class Zoo(Base):
    """A named set of the tenant's checkpoints with a label or a target each, split once
    (seeded) into train/val/test; ``summary`` is what the API shows without reading items."""

    __tablename__ = "zoos"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_zoos_tenant_id_name"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, default=LOCAL_TENANT_ID
    )
    name: Mapped[str] = mapped_column(String(128))
    task: Mapped[str] = mapped_column(String(16))  # "classification" | "regression"
    classes: Mapped[list[str] | None] = mapped_column(JSON)  # label order; None: regression
    seed: Mapped[int] = mapped_column(BigInteger)
    split_fractions: Mapped[dict[str, Any]]  # {"train": f, "val": f, "test": f}
    summary: Mapped[dict[str, Any]]  # size, label counts / target quantiles, architectures
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class ZooItem(Base):
    """Item ``position`` of a zoo: a checkpoint, its label or target, its group and the
    split it was given at creation (a checkpoint in a zoo cannot be deleted)."""

    __tablename__ = "zoo_items"
    __table_args__ = (Index("ix_zoo_items_zoo_id_split", "zoo_id", "split"),)

    zoo_id: Mapped[int] = mapped_column(
        ForeignKey("zoos.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="RESTRICT"), index=True
    )
    label: Mapped[str | None] = mapped_column(String(255))
    target: Mapped[float | None] = mapped_column(Float)
    group_name: Mapped[str | None] = mapped_column(String(255))
    split: Mapped[str] = mapped_column(String(8))  # "train" | "val" | "test"


class MetanetworkVersion(Base):
    """Version ``version`` of metanetwork ``name``: a built-in (``tenant_id`` NULL, seen by
    every tenant, registered at start-up) or a tenant's own, trained by job ``job_id`` on
    zoo ``zoo_id``. A row exists only with its weights (blob ``weights_sha256``) and card."""

    __tablename__ = "metanetworks"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "name", "version", name="uq_metanetworks_tenant_id_name_version"
        ),
        # NULLs are distinct in a unique constraint: built-ins get a partial index of their own
        Index(
            "uq_metanetworks_builtin_name_version",
            "name",
            "version",
            unique=True,
            sqlite_where=text("tenant_id IS NULL"),
            postgresql_where=text("tenant_id IS NULL"),
        ),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="ready")
    card: Mapped[dict[str, Any]]
    config: Mapped[dict[str, Any]]
    weights_sha256: Mapped[str] = mapped_column(String(64), index=True)
    weights_size: Mapped[int] = mapped_column(BigInteger)
    zoo_id: Mapped[int | None] = mapped_column(
        ForeignKey("zoos.id", ondelete="SET NULL"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), unique=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class TrainingState(Base):
    """The last saved epoch of a running ``train`` job: ``state_sha256`` is the blob a
    retry resumes from; ``pending_sha256`` a blob being written (named before it is
    written, so a worker killed in between leaves a blob that can still be found and
    removed). The row and both blobs go when the job ends."""

    __tablename__ = "training_states"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    state_sha256: Mapped[str | None] = mapped_column(String(64))
    pending_sha256: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
class Blob(Base):
    """A file of the blob store, and the lock that orders its life (``app.blob_refs``): a
    file is placed, or removed, only in a transaction that holds this row. A row whose last
    reference went has ``unreferenced_at`` set until its file is collected."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    unreferenced_at: Mapped[dt.datetime | None]


# Every column that names a blob by its sha256: a blob's file stays while any row here names
# it. A table that stores blobs adds its column to this one list (a test checks that every
# ``*blob_sha256`` column of the schema is in it).
BLOB_REFERENCES = (
    Checkpoint.__table__.c.blob_sha256,
    Dataset.__table__.c.blob_sha256,
    MetanetworkVersion.__table__.c.weights_sha256,
    TrainingState.__table__.c.state_sha256,
    TrainingState.__table__.c.pending_sha256,
)
