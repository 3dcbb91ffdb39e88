"""The schema exists only through Alembic: upgrade an empty database, compare, downgrade."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from typer.testing import CliRunner

from app.cli import app as cli
from app.db import create_db_engine
from app.migrate import current_revision, downgrade, head_revision, upgrade
from app.models import Base

TABLES = {
    "checkpoints", "jobs", "workers", "predictions", "merges", "datasets", "merge_inputs",
    "tenants", "api_keys", "zoos", "zoo_items",
}


def test_upgrade_matches_models_and_downgrade_removes_everything(any_database_url: str) -> None:
    engine = create_db_engine(any_database_url)
    try:
        upgrade(any_database_url)
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) >= TABLES
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        downgrade(any_database_url, "base")
        assert current_revision(engine) is None
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        upgrade(any_database_url)  # and back: downgrade left nothing that blocks an upgrade
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_cli_db_upgrade_uses_the_configured_url(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("WEIGHTSCOPE_DATABASE_URL", url)
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "database at head" in result.output
    engine = create_db_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_cli_lists_the_service_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "worker", "db"):
        assert command in result.output
