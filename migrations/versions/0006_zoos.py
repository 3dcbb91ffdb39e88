"""Zoos: a tenant's named sets of checkpoints with a label or target each, and the
train/val/test split every item was given once, at creation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "zoos",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("task", sa.String(length=16), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("split_fractions", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_zoos_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zoos")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_zoos_tenant_id_name"),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_zoos_tenant_id"), "zoos", ["tenant_id"])
    op.create_index(op.f("ix_zoos_created_at"), "zoos", ["created_at"])
    op.create_table(
        "zoo_items",
        sa.Column("zoo_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", ID, nullable=False),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("group_name", sa.String(length=255), nullable=True),
        sa.Column("split", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["zoo_id"], ["zoos.id"], name=op.f("fk_zoo_items_zoo_id_zoos"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoints.id"],
            name=op.f("fk_zoo_items_checkpoint_id_checkpoints"), ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("zoo_id", "position", name=op.f("pk_zoo_items")),
    )
    op.create_index(op.f("ix_zoo_items_checkpoint_id"), "zoo_items", ["checkpoint_id"])
    op.create_index("ix_zoo_items_zoo_id_split", "zoo_items", ["zoo_id", "split"])


def downgrade() -> None:
    op.drop_index("ix_zoo_items_zoo_id_split", table_name="zoo_items")
    op.drop_index(op.f("ix_zoo_items_checkpoint_id"), table_name="zoo_items")
    op.drop_table("zoo_items")
    op.drop_index(op.f("ix_zoos_created_at"), table_name="zoos")
    op.drop_index(op.f("ix_zoos_tenant_id"), table_name="zoos")
    op.drop_table("zoos")
