"""Metanetworks as records: built-ins (no tenant) and trained ones, versioned, with their
card and weights blob; the resumable state of running training jobs; and the jobs'
``progress_detail`` (a training job's epoch, loss, validation metric, ETA).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("progress_detail", sa.JSON(), nullable=True))
    op.create_table(
        "metanetworks",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("weights_sha256", sa.String(length=64), nullable=False),
        sa.Column("weights_size", sa.BigInteger(), nullable=False),
        sa.Column("zoo_id", ID, nullable=True),
        sa.Column("job_id", ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_metanetworks_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["zoo_id"], ["zoos.id"], name=op.f("fk_metanetworks_zoo_id_zoos"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_metanetworks_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metanetworks")),
        sa.UniqueConstraint(
            "tenant_id", "name", "version", name="uq_metanetworks_tenant_id_name_version"
        ),
        sa.UniqueConstraint("job_id", name=op.f("uq_metanetworks_job_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_metanetworks_tenant_id"), "metanetworks", ["tenant_id"])
    op.create_index(op.f("ix_metanetworks_name"), "metanetworks", ["name"])
    op.create_index(op.f("ix_metanetworks_weights_sha256"), "metanetworks", ["weights_sha256"])
    op.create_index(op.f("ix_metanetworks_zoo_id"), "metanetworks", ["zoo_id"])
    op.create_index(op.f("ix_metanetworks_created_at"), "metanetworks", ["created_at"])
    op.create_index(
        "uq_metanetworks_builtin_name_version",
        "metanetworks",
        ["name", "version"],
        unique=True,
        sqlite_where=sa.text("tenant_id IS NULL"),
        postgresql_where=sa.text("tenant_id IS NULL"),
    )
    op.create_table(
        "training_states",
        sa.Column("job_id", ID, nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("state_sha256", sa.String(length=64), nullable=True),
        sa.Column("pending_sha256", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_training_states_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_training_states")),
    )


def downgrade() -> None:
    op.drop_table("training_states")
    op.drop_index("uq_metanetworks_builtin_name_version", table_name="metanetworks")
    op.drop_index(op.f("ix_metanetworks_created_at"), table_name="metanetworks")
    op.drop_index(op.f("ix_metanetworks_zoo_id"), table_name="metanetworks")
    op.drop_index(op.f("ix_metanetworks_weights_sha256"), table_name="metanetworks")
    op.drop_index(op.f("ix_metanetworks_name"), table_name="metanetworks")
    op.drop_index(op.f("ix_metanetworks_tenant_id"), table_name="metanetworks")
    op.drop_table("metanetworks")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("progress_detail")
