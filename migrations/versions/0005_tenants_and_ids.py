"""Tenants and API keys; every record belongs to a tenant (existing rows to tenant 1,
"local"); the same bytes are unique per tenant, not globally; ids become 64-bit and are
never reused (PostgreSQL bigint sequences, SQLite AUTOINCREMENT).

The downgrade works while only the local tenant owns records (it folds the per-tenant
uniqueness back into a global one).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OWNED = ("checkpoints", "datasets", "jobs", "predictions", "merges")
# Columns holding ids, per table, widened with the ids they refer to.
ID_COLUMNS = {
    "checkpoints": ("id",),
    "datasets": ("id",),
    "jobs": ("id",),
    "predictions": ("id", "job_id", "checkpoint_id"),
    "merges": ("id", "job_id", "result_checkpoint_id", "dataset_id"),
    "merge_inputs": ("merge_id", "checkpoint_id"),
}
NULLABLE = {"job_id", "result_checkpoint_id", "dataset_id"}
UNIQUE_SHA = ("checkpoints", "datasets")


def _recreate(table: str, autoincrement: bool) -> dict:
    if op.get_bind().dialect.name != "sqlite":
        return {}
    return {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": autoincrement}}


def _widen_sequences(type_: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in OWNED:
        op.execute(f"ALTER SEQUENCE IF EXISTS {table}_id_seq AS {type_}")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
        sqlite_autoincrement=True,
    )
    op.execute("INSERT INTO tenants (name, created_at) VALUES ('local', CURRENT_TIMESTAMP)")
    op.create_table(
        "api_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=128), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_api_keys_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_keys_secret_hash")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_api_keys_tenant_id"), "api_keys", ["tenant_id"])
    op.create_index(op.f("ix_api_keys_prefix"), "api_keys", ["prefix"])
    _widen_sequences("bigint")
    for table, columns in ID_COLUMNS.items():
        with op.batch_alter_table(table, **_recreate(table, table in OWNED)) as batch:
            for column in columns:
                batch.alter_column(
                    column, existing_type=sa.Integer(), type_=ID,
                    existing_nullable=column in NULLABLE,
                )
            if table not in OWNED:
                continue
            batch.add_column(sa.Column("tenant_id", ID, nullable=False, server_default="1"))
            batch.create_foreign_key(
                op.f(f"fk_{table}_tenant_id_tenants"), "tenants", ["tenant_id"], ["id"],
                ondelete="RESTRICT",
            )
            batch.create_index(op.f(f"ix_{table}_tenant_id"), ["tenant_id"])
            if table in UNIQUE_SHA:
                batch.drop_constraint(op.f(f"uq_{table}_sha256"), type_="unique")
                batch.create_unique_constraint(
                    f"uq_{table}_tenant_id_sha256", ["tenant_id", "sha256"]
                )
    for table in OWNED:  # the default only filled existing rows; inserts name their tenant
        with op.batch_alter_table(table, **_recreate(table, True)) as batch:
            batch.alter_column("tenant_id", existing_type=ID, server_default=None)


def downgrade() -> None:
    for table, columns in reversed(ID_COLUMNS.items()):
        with op.batch_alter_table(table, **_recreate(table, False)) as batch:
            if table in OWNED:
                if table in UNIQUE_SHA:
                    batch.drop_constraint(f"uq_{table}_tenant_id_sha256", type_="unique")
                    batch.create_unique_constraint(op.f(f"uq_{table}_sha256"), ["sha256"])
                batch.drop_index(op.f(f"ix_{table}_tenant_id"))
                batch.drop_constraint(op.f(f"fk_{table}_tenant_id_tenants"), type_="foreignkey")
                batch.drop_column("tenant_id")
            for column in columns:
                batch.alter_column(
                    column, existing_type=ID, type_=sa.Integer(),
                    existing_nullable=column in NULLABLE,
                )
    _widen_sequences("integer")
    op.drop_index(op.f("ix_api_keys_prefix"), table_name="api_keys")
    op.drop_index(op.f("ix_api_keys_tenant_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
