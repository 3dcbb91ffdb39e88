"""The blob rules on their own: one list of referencing columns, collect under the lock,
the start-up sweep of what a crash leaves, and a failed insert that takes its file back."""

from __future__ import annotations

import pytest
from _lifecycle_files import mlp_bytes, upload
from sqlalchemy import String, select

from app import blob_refs
from app.blobs import BlobStore
from app.checkpoints import service as checkpoints
from app.models import BLOB_REFERENCES, LOCAL_TENANT_ID, Base, Blob, utcnow

pytestmark = pytest.mark.anyio


def test_every_blob_column_is_in_the_one_list() -> None:
    """A table that stores a blob's sha256 must be listed, or its files could be removed."""
    blob_columns = {
        f"{table.name}.{column.name}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if column.name.endswith("_sha256") and isinstance(column.type, String)
    }
    listed = {f"{column.table.name}.{column.name}" for column in BLOB_REFERENCES}
    assert blob_columns == listed
    assert {"checkpoints.blob_sha256", "datasets.blob_sha256"} <= listed


def test_sweep_removes_what_a_crash_left_and_keeps_what_rows_name(
    settings, session_factory, assert_consistent
) -> None:
    blobs = BlobStore(settings.blob_dir)
    with session_factory() as session:
        orphan = blobs.put_bytes(b"placed, then the process died before its commit")
        marked = blobs.put_bytes(b"its last row went, then the process died")
        session.add(Blob(sha256=marked, unreferenced_at=utcnow()))
        unmarked_gone = blobs.put_bytes(b"a row that never got a reference")
        session.add(Blob(sha256=unmarked_gone))
        session.commit()
        temp = blobs.temp()
        temp.write(b"an upload in flight")
        temp.close()
        assert blob_refs.sweep(session, blobs) == 2
        assert orphan not in blobs.hashes() and set(blobs.hashes()) == {unmarked_gone}
        assert temp.path.exists()  # temp files are uploads in flight, not blobs
        # a live row with no reference is settled by collect, like any other
        assert blob_refs.collect(session, blobs, unmarked_gone)
    temp.discard()
    assert assert_consistent()["files"] == set()


async def test_collect_keeps_a_named_blob_and_makes_it_live_again(
    client, settings, session_factory, assert_consistent
) -> None:
    checkpoint = (await upload(client, mlp_bytes(1))).json()
    blobs = BlobStore(settings.blob_dir)
    with session_factory() as session:
        session.get(Blob, checkpoint["blob_sha256"]).unreferenced_at = utcnow()
        session.commit()
        assert not blob_refs.collect(session, blobs, checkpoint["blob_sha256"])
    assert checkpoint["blob_sha256"] in assert_consistent()["live"]


def test_an_insert_that_fails_after_placing_takes_its_file_back(
    settings, session_factory, monkeypatch, assert_consistent
) -> None:
    """``store`` places the file before the row commits; a commit that fails collects it."""
    blobs = BlobStore(settings.blob_dir)
    temp = blobs.temp()
    temp.write(mlp_bytes(2))

    def failing_commit(self) -> None:
        raise RuntimeError("injected: the database went away at commit")

    from sqlalchemy.orm import Session

    monkeypatch.setattr(Session, "commit", failing_commit)
    with pytest.raises(RuntimeError, match="injected"):
        checkpoints.ingest(session_factory, blobs, settings, LOCAL_TENANT_ID, temp, "m.safetensors")
    monkeypatch.undo()
    assert assert_consistent()["files"] == set()
    with session_factory() as session:
        assert session.scalars(select(Blob)).all() == []


def test_migration_fills_blobs_from_existing_rows(any_database_url, tmp_path) -> None:
    """Rows stored before 0008 get their blob rows, so their files are never taken as
    orphans by the first sweep."""
    from sqlalchemy import text

    from app.db import create_db_engine
    from app.migrate import upgrade

    upgrade(any_database_url, "0005")
    engine = create_db_engine(any_database_url)
    try:
        with engine.begin() as connection:
            for table, sha in (("checkpoints", "a" * 64), ("datasets", "b" * 64)):
                extra = (
                    ", format, blob_size, parameter_count, tensor_count, dtype_summary"
                    if table == "checkpoints"
                    else ", num_samples, x_shape, y_shape, num_classes"
                )
                values = (
                    ", 'safetensors', 1, 1, 1, '{}'" if table == "checkpoints"
                    else ", 1, '[1, 1]', '[1]', 1"
                )
                connection.execute(
                    text(
                        f"INSERT INTO {table} (tenant_id, sha256, size, blob_sha256, created_at"
                        f"{extra}) VALUES (1, :sha, 1, :sha, CURRENT_TIMESTAMP{values})"
                    ),
                    {"sha": sha},
                )
        upgrade(any_database_url)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT sha256, unreferenced_at FROM blobs")).all()
        assert sorted(rows) == [("a" * 64, None), ("b" * 64, None)]
    finally:
        engine.dispose()
