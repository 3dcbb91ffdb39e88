"""Service configuration, read from ``WEIGHTSCOPE_*`` environment variables (and ``.env``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; the defaults give a zero-setup SQLite service."""

    model_config = SettingsConfigDict(env_prefix="WEIGHTSCOPE_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".weightscope")
    database_url: str = Field(
        default="", description="SQLAlchemy URL; empty means a SQLite file in the data dir"
    )
    queue: Literal["inprocess"] = "inprocess"
    embedded_worker: bool = Field(
        default=True, description="run a job worker thread inside `serve`"
    )
    max_upload_bytes: int = Field(default=1024 * 2**20, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    worker_poll_seconds: float = Field(default=1.0, gt=0)
    heartbeat_seconds: float = Field(default=2.0, gt=0)
    stale_after_seconds: float = Field(default=30.0, gt=0)
    job_max_attempts: int = Field(default=3, ge=1)
    max_wait_seconds: float = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'weightscope.db').resolve()}"
        return self

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
