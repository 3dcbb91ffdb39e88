"""Predictions, merges and datasets: result columns, evaluation sets, checkpoint lineage.

Adds ``datasets`` and ``merge_inputs`` (every input of an n-way merge); the prediction and
merge columns of issue 7; the architecture digest (to refuse merges of different
architectures at request time) and the lineage of checkpoints; and makes ``job_id`` unique
in predictions and merges, so the database itself refuses a second result for one job.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def utc(nullable: bool) -> dict[str, object]:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


PREDICTION_COLUMNS = (
    sa.Column("metanetwork", sa.String(length=128), nullable=True),
    sa.Column("metanetwork_version", sa.String(length=64), nullable=True),
    sa.Column("task", sa.String(length=32), nullable=True),
    sa.Column("label", sa.String(length=255), nullable=True),
    sa.Column("probabilities", sa.JSON(), nullable=True),
    sa.Column("value", sa.Float(), nullable=True),
    sa.Column("interval_low", sa.Float(), nullable=True),
    sa.Column("interval_high", sa.Float(), nullable=True),
    sa.Column("coverage", sa.Float(), nullable=True),
    sa.Column("in_domain", sa.Boolean(), nullable=True),
    sa.Column("domain_issues", sa.JSON(), nullable=True),
    sa.Column("timings", sa.JSON(), nullable=True),
)

MERGE_COLUMNS = (
    sa.Column("method", sa.String(length=16), nullable=True),
    sa.Column("lam", sa.Float(), nullable=True),
    sa.Column("dataset_id", sa.Integer(), nullable=True),
    sa.Column("barrier", sa.Float(), nullable=True),
    sa.Column("timings", sa.JSON(), nullable=True),
)


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("num_samples", sa.Integer(), nullable=False),
        sa.Column("x_shape", sa.JSON(), nullable=False),
        sa.Column("y_shape", sa.JSON(), nullable=False),
        sa.Column("num_classes", sa.Integer(), nullable=False),
        sa.Column("created_at", **utc(nullable=False)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("sha256", name=op.f("uq_datasets_sha256")),
    )
    op.create_index(op.f("ix_datasets_blob_sha256"), "datasets", ["blob_sha256"])
    op.create_index(op.f("ix_datasets_created_at"), "datasets", ["created_at"])

    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("architecture_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lineage", sa.JSON(), nullable=True))
        batch.create_index(op.f("ix_checkpoints_architecture_digest"), ["architecture_digest"])

    with op.batch_alter_table("predictions") as batch:
        for column in PREDICTION_COLUMNS:
            batch.add_column(column)
        batch.drop_index("ix_predictions_job_id")
        batch.create_index("ix_predictions_job_id", ["job_id"], unique=True)
        batch.create_index(op.f("ix_predictions_metanetwork"), ["metanetwork"])
        batch.create_index(op.f("ix_predictions_created_at"), ["created_at"])

    with op.batch_alter_table("merges") as batch:
        for column in MERGE_COLUMNS:
            batch.add_column(column)
        batch.create_foreign_key(
            op.f("fk_merges_dataset_id_datasets"),
            "datasets",
            ["dataset_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch.drop_index("ix_merges_job_id")
        batch.create_index("ix_merges_job_id", ["job_id"], unique=True)
        batch.create_index(op.f("ix_merges_dataset_id"), ["dataset_id"])
        batch.create_index(op.f("ix_merges_created_at"), ["created_at"])

    op.create_table(
        "merge_inputs",
        sa.Column("merge_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merge_id"],
            ["merges.id"],
            name=op.f("fk_merge_inputs_merge_id_merges"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_merge_inputs_checkpoint_id_checkpoints"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("merge_id", "position", name=op.f("pk_merge_inputs")),
    )
    op.create_index(op.f("ix_merge_inputs_checkpoint_id"), "merge_inputs", ["checkpoint_id"])


def downgrade() -> None:
    op.drop_table("merge_inputs")
    with op.batch_alter_table("merges") as batch:
        batch.drop_index(op.f("ix_merges_created_at"))
        batch.drop_index(op.f("ix_merges_dataset_id"))
        batch.drop_index("ix_merges_job_id")
        batch.create_index("ix_merges_job_id", ["job_id"])
        batch.drop_constraint(op.f("fk_merges_dataset_id_datasets"), type_="foreignkey")
        for column in reversed(MERGE_COLUMNS):
            batch.drop_column(column.name)

    with op.batch_alter_table("predictions") as batch:
        batch.drop_index(op.f("ix_predictions_created_at"))
        batch.drop_index(op.f("ix_predictions_metanetwork"))
        batch.drop_index("ix_predictions_job_id")
        batch.create_index("ix_predictions_job_id", ["job_id"])
        for column in reversed(PREDICTION_COLUMNS):
            batch.drop_column(column.name)

    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_index(op.f("ix_checkpoints_architecture_digest"))
        batch.drop_column("lineage")
        batch.drop_column("architecture_digest")

    op.drop_table("datasets")
