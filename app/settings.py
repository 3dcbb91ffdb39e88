"""Service configuration, read from ``WEIGHTSCOPE_*`` environment variables (and ``.env``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _builtin_metanetworks() -> Path:
    """models/builtin, found without importing ``models`` into the API process."""
    return Path(__file__).resolve().parent.parent / "models" / "builtin"


def _checked_rate_limit(value: str) -> str:
    if value.strip():
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit ({exc}); e.g. 100/second") from None
    return value


class TenantQuota(BaseModel):
    """One tenant's overrides of the quota settings; a field left out keeps the default,
    ``null`` means no limit."""

    model_config = ConfigDict(extra="forbid")

    stored_bytes: int | None = Field(default=None, ge=0)
    jobs_in_flight: int | None = Field(default=None, ge=0)
    training_seconds: float | None = Field(default=None, ge=0)
    rate_limit: str | None = None

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_notation(cls, value: str | None) -> str | None:
        return None if value is None else _checked_rate_limit(value)


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
    auth: Literal["auto", "open", "required"] = Field(
        default="auto",
        description="required: every /v1 request needs an API key; open: no keys, every "
        "request acts as the local tenant; auto: open on a loopback address while no API key "
        "exists, required otherwise (`serve` refuses a non-loopback address without keys)",
    )
    rate_limit: str = Field(
        default="100/second",
        description="requests per API key and process, in the `limits` notation (100/second, "
        "5000/minute, or several joined by ';'); empty: no limit",
    )
    quota_stored_bytes: int | None = Field(
        default=100 * 2**30,
        ge=0,
        description="bytes of checkpoints and datasets a tenant may store (null: no limit)",
    )
    quota_jobs_in_flight: int | None = Field(
        default=1000, ge=0, description="queued and running jobs per tenant (null: no limit)"
    )
    quota_training_seconds: float | None = Field(
        default=24 * 3600.0,
        ge=0,
        description="seconds of training jobs a tenant may run per rolling 24 hours (null: "
        "no limit)",
    )
    tenant_quotas: dict[str, TenantQuota] = Field(
        default_factory=dict,
        description='per-tenant overrides by tenant name, JSON: {"acme": {"stored_bytes": '
        '1e12, "jobs_in_flight": 50, "training_seconds": null, "rate_limit": "20/second"}}',
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

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        return _checked_rate_limit(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        """A URL SQLAlchemy can parse, with a dialect it has (its driver is imported only
        on connecting); empty means the SQLite default."""
        if value:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(value).get_dialect()
            except ArgumentError as exc:
                raise ValueError(f"not a database URL SQLAlchemy can use ({exc})") from None
        return value

    @field_validator(
        "quota_stored_bytes", "quota_jobs_in_flight", "quota_training_seconds", mode="before"
    )
    @classmethod
    def _no_limit(cls, value: object) -> object:
        """``null`` (or ``none``, or empty) in the environment lifts a quota."""
        if isinstance(value, str) and value.strip().lower() in ("", "null", "none"):
            return None
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'weightscope.db').resolve()}"
        return self

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
