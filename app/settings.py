"""Service configuration, read from ``WEIGHTSCOPE_*`` environment variables (and ``.env``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _builtin_metanetworks() -> Path:
    """models/builtin, found without importing ``models`` into the API process."""
    return Path(__file__).resolve().parent.parent / "models" / "builtin"


class Settings(BaseSettings):
    """Every knob of the service; the defaults give a zero-setup SQLite service."""

    model_config = SettingsConfigDict(env_prefix="WEIGHTSCOPE_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".weightscope")
    database_url: str = Field(
        default="", description="SQLAlchemy URL; empty means a SQLite file in the data dir"
    )
    queue: Literal["inprocess", "procrastinate"] = Field(
        default="inprocess",
        description="inprocess: workers poll the jobs table; procrastinate: job ids travel "
        "through procrastinate on the same PostgreSQL database (scale-out)",
    )
    embedded_worker: Literal["process", "thread", "off"] = Field(
        default="process",
        description="the job worker `serve` runs with the in-process queue: process (a child "
        "process it supervises, with its own interpreter lock and core), thread (inside the "
        "API process: one process, for tests and embedding), off (run `weightscope worker` "
        "processes instead); true/false mean process/off",
    )
    max_upload_bytes: int = Field(default=1024 * 2**20, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    worker_poll_seconds: float = Field(default=1.0, gt=0)
    heartbeat_seconds: float = Field(default=2.0, gt=0)
    stale_after_seconds: float = Field(default=30.0, gt=0)
    job_max_attempts: int = Field(default=3, ge=1)
    max_wait_seconds: float = Field(default=60.0, ge=0)

    metanetwork_dir: Path = Field(
        default_factory=_builtin_metanetworks,
        description="folder of metanetworks (<name>.json card + <name>.safetensors weights)",
    )
    device: Literal["auto", "cpu", "gpu"] = Field(
        default="auto",
        description="a worker process's device: auto = the GPU when one is visible; the "
        "embedded worker in the API process always uses the CPU",
    )
    compute_queue: Literal["cpu", "gpu"] = Field(
        default="cpu",
        description="procrastinate queue for predictions and merges (gpu: only GPU workers)",
    )
    max_batch: int = Field(default=32, ge=1, description="predictions per forward pass")
    max_wait_ms: float = Field(
        default=5.0, ge=0, description="how long a worker waits to fill a prediction batch"
    )
    graph_cache_size: int = Field(
        default=512, ge=0, description="parameter graphs kept in memory per worker"
    )
    torch_threads: int | None = Field(
        default=None,
        ge=0,
        description="torch CPU threads of a worker (0: torch's default). Unset: one in a "
        "`weightscope worker` process (scale-out is by processes; more threads than free "
        "cores slow every forward pass), torch's default for the API process's embedded "
        "worker thread, the only computing thread there",
    )
    max_dataset_bytes: int = Field(default=256 * 2**20, gt=0)
    zoo_archive_max_bytes: int = Field(
        default=4 * 2**30, gt=0, description="size of a zoo archive upload as sent"
    )
    zoo_archive_max_unpacked_bytes: int = Field(
        default=8 * 2**30, gt=0, description="what a zoo archive may unpack to, in all"
    )
    zoo_archive_max_members: int = Field(
        default=20_000, gt=0, description="entries (files and folders) of a zoo archive"
    )
    zoo_archive_max_ratio: float = Field(
        default=50.0,
        gt=1,
        description="unpacked/compressed size a zoo archive (and each member over 1 MiB) may "
        "reach; weights barely compress, so more is a compression bomb",
    )
    extra_job_modules: list[str] = Field(
        default_factory=list,
        description="modules imported at startup that register more job kinds (plugins)",
    )
    stalled_worker_seconds: float = Field(
        default=30.0,
        gt=0,
        description="procrastinate: a worker silent this long is stalled; its jobs are retried",
    )

    trusted_hosts: list[str] = Field(
        default_factory=list,
        description="Host header names the API answers (DNS-rebinding guard); empty: "
        "localhost, 127.0.0.1, ::1 and `host`; `*` turns the check off",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins a browser may call the API from (CORS); empty: none",
    )
    body_read_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a request body that sends nothing for this long is answered 408 and "
        "its connection and temp file are released",
    )
    database_retry_after_seconds: int = Field(
        default=5, ge=1, description="Retry-After of the 503 answered while the database is down"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="log lines as text or as one JSON object each"
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="`weightscope worker` serves its own /metrics (GPU memory) on this port",
    )

    @field_validator("embedded_worker", mode="before")
    @classmethod
    def _embedded_worker_flag(cls, value: object) -> object:
        """The setting was a flag: keep ``true``/``false`` meaning on (now: a process)/off."""
        if isinstance(value, bool):
            return "process" if value else "off"
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return "process" if value.lower() in ("true", "1", "yes") else "off"
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'weightscope.db').resolve()}"
        return self

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
