"""Initial schema: checkpoints, jobs, workers, predictions, merges.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")


def utc(nullable: bool) -> dict[str, object]:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("blob_size", sa.BigInteger(), nullable=False),
        sa.Column("architecture", sa.JSON(), nullable=True),
        sa.Column("parameter_count", sa.BigInteger(), nullable=False),
        sa.Column("tensor_count", sa.Integer(), nullable=False),
        sa.Column("dtype_summary", sa.JSON(), nullable=False),
        sa.Column("created_at", **utc(nullable=False)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("sha256", name=op.f("uq_checkpoints_sha256")),
    )
    op.create_index(op.f("ix_checkpoints_blob_sha256"), "checkpoints", ["blob_sha256"])
    op.create_index(op.f("ix_checkpoints_created_at"), "checkpoints", ["created_at"])
    op.create_index(op.f("ix_checkpoints_format"), "checkpoints", ["format"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*JOB_STATUSES, name="jobstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("result_ref", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", **utc(nullable=False)),
        sa.Column("started_at", **utc(nullable=True)),
        sa.Column("finished_at", **utc(nullable=True)),
        sa.Column("heartbeat_at", **utc(nullable=True)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_kind"), "jobs", ["kind"])
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])

    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", **utc(nullable=False)),
        sa.Column("heartbeat_at", **utc(nullable=False)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )

    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", **utc(nullable=False)),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_predictions_checkpoint_id_checkpoints"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_predictions_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
    )
    op.create_index(op.f("ix_predictions_checkpoint_id"), "predictions", ["checkpoint_id"])
    op.create_index(op.f("ix_predictions_job_id"), "predictions", ["job_id"])

    op.create_table(
        "merges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("checkpoint_a_id", sa.Integer(), nullable=False),
        sa.Column("checkpoint_b_id", sa.Integer(), nullable=False),
        sa.Column("result_checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", **utc(nullable=False)),
        *(
            sa.ForeignKeyConstraint(
                [column],
                ["checkpoints.id"],
                name=op.f(f"fk_merges_{column}_checkpoints"),
                ondelete="RESTRICT",
            )
            for column in ("checkpoint_a_id", "checkpoint_b_id", "result_checkpoint_id")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_merges_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merges")),
    )
    op.create_index(op.f("ix_merges_checkpoint_a_id"), "merges", ["checkpoint_a_id"])
    op.create_index(op.f("ix_merges_checkpoint_b_id"), "merges", ["checkpoint_b_id"])
    op.create_index(op.f("ix_merges_job_id"), "merges", ["job_id"])


def downgrade() -> None:
    op.drop_table("merges")
    op.drop_table("predictions")
    op.drop_table("workers")
    op.drop_index("ix_jobs_status_id", table_name="jobs")
    op.drop_table("jobs")
    op.drop_table("checkpoints")
