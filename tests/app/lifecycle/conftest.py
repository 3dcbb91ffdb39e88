"""Lifecycle tests run on a SQLite file and on PostgreSQL; helpers to make small files and
to check the blob store against the database."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from app.blobs import BlobStore
from app.db import SessionFactory
from app.models import BLOB_REFERENCES, Blob, MetanetworkVersion
from app.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))  # _lifecycle_files


@pytest.fixture
def database_url(any_database_url: str) -> str:
    return any_database_url


@pytest.fixture
def store_state(settings: Settings, session_factory: SessionFactory) -> Callable[[], dict]:
    """What the blob store and the database say: the files placed, temp files, blob rows
    (live and marked) and the blobs rows name."""

    def state() -> dict:
        blobs = BlobStore(settings.blob_dir)
        with session_factory() as session:
            named = {sha for column in BLOB_REFERENCES for sha in session.scalars(select(column))}
            rows = {row.sha256: row.unreferenced_at for row in session.scalars(select(Blob))}
            builtin = set(
                session.scalars(
                    select(MetanetworkVersion.weights_sha256).where(
                        MetanetworkVersion.tenant_id.is_(None)
                    )
                )
            )
        return {
            "files": set(blobs.hashes()),
            "temp": [p for p in blobs.files() if p.name.startswith(".tmp-")],
            "named": named - builtin,  # built-ins' weights stay in their own folder
            "live": {sha for sha, marked in rows.items() if marked is None},
            "marked": {sha for sha, marked in rows.items() if marked is not None},
        }

    return state


@pytest.fixture
def assert_consistent(store_state) -> Callable[[], dict]:
    """Every named blob has its file and a live row; no file, temp file or row without a
    name (nothing is in flight when this is called)."""

    def check() -> dict:
        state = store_state()
        assert state["named"] <= state["files"], "rows without their file"
        assert state["files"] <= state["named"], "files no row names"
        assert state["live"] == state["named"] and not state["marked"], state
        assert state["temp"] == []
        return state

    return check
