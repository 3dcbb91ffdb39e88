"""Training tests run the app with its default worker, a child process (so one can be
SIGKILLed), on a SQLite file; the built-in metanetworks are registered at start-up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app.migrate import upgrade
from app.settings import Settings
from tests.app.conftest import make_settings

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    settings = make_settings(
        tmp_path / "data", database_url, embedded_worker="process", stale_after_seconds=2.0,
        max_wait_ms=0.0,
    )
    upgrade(settings.database_url)
    return settings
