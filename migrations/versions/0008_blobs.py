"""The ``blobs`` table: one row per stored file, the row a transaction locks to place or
remove that file, so a delete and an upload of the same bytes never interleave (issue 16,
defect 2). Filled from the blobs that checkpoints, datasets and metanetworks already name.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unreferenced_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
    )
    op.execute(
        "INSERT INTO blobs (sha256, created_at)"
        " SELECT blob_sha256, MIN(created_at) FROM"
        " (SELECT blob_sha256, created_at FROM checkpoints"
        "  UNION ALL SELECT blob_sha256, created_at FROM datasets"
        "  UNION ALL SELECT weights_sha256, created_at FROM metanetworks) AS named"
        " GROUP BY blob_sha256"
    )


def downgrade() -> None:
    op.drop_table("blobs")
