"""Results stored once: drop ``jobs.result_ref`` (never written), ``predictions.result``
and ``merges.result`` (copies of the job's result), and the legacy ``checkpoint_a_id`` /
``checkpoint_b_id`` of merges (``merge_inputs`` lists every input).

Before the columns go, their content is kept where it now lives: a merge's result in its
job's ``result`` when that is empty, and its first two inputs in ``merge_inputs`` when a
merge has none there. The downgrade restores the columns from the same places.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE jobs SET result = (SELECT merges.result FROM merges WHERE merges.job_id = jobs.id)"
        " WHERE jobs.result IS NULL AND EXISTS ("
        " SELECT 1 FROM merges WHERE merges.job_id = jobs.id AND merges.result IS NOT NULL)"
    )
    for position, column in enumerate(("checkpoint_a_id", "checkpoint_b_id")):
        op.execute(
            f"INSERT INTO merge_inputs (merge_id, position, checkpoint_id)"
            f" SELECT id, {position}, {column} FROM merges WHERE NOT EXISTS ("
            f" SELECT 1 FROM merge_inputs WHERE merge_inputs.merge_id = merges.id"
            f" AND merge_inputs.position = {position})"
        )
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("result_ref")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("result")
    with op.batch_alter_table("merges") as batch:
        batch.drop_index(op.f("ix_merges_checkpoint_a_id"))
        batch.drop_index(op.f("ix_merges_checkpoint_b_id"))
        batch.drop_constraint(op.f("fk_merges_checkpoint_a_id_checkpoints"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_merges_checkpoint_b_id_checkpoints"), type_="foreignkey")
        batch.drop_column("checkpoint_a_id")
        batch.drop_column("checkpoint_b_id")
        batch.drop_column("result")


def downgrade() -> None:
    with op.batch_alter_table("merges") as batch:
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("checkpoint_a_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("checkpoint_b_id", sa.Integer(), nullable=True))
    for position, column in enumerate(("checkpoint_a_id", "checkpoint_b_id")):
        op.execute(
            f"UPDATE merges SET {column} = (SELECT checkpoint_id FROM merge_inputs"
            f" WHERE merge_inputs.merge_id = merges.id AND merge_inputs.position = {position})"
        )
    op.execute("UPDATE merges SET result = (SELECT result FROM jobs WHERE jobs.id = merges.job_id)")
    with op.batch_alter_table("merges") as batch:
        batch.alter_column("checkpoint_a_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("checkpoint_b_id", existing_type=sa.Integer(), nullable=False)
        for column in ("checkpoint_a_id", "checkpoint_b_id"):
            batch.create_foreign_key(
                op.f(f"fk_merges_{column}_checkpoints"),
                "checkpoints",
                [column],
                ["id"],
                ondelete="RESTRICT",
            )
            batch.create_index(op.f(f"ix_merges_{column}"), [column])
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("result_ref", sa.String(length=255), nullable=True))
