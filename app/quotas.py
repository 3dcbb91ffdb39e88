"""Quotas and limits per tenant: stored bytes (413), jobs in flight (429), training time
(429), and a request rate per API key (429). Each refusal is problem+json; the 429s carry
``Retry-After``.

Stored bytes and jobs in flight are decided inside the write transaction that would add
to them, with the tenant's row locked (PostgreSQL ``FOR UPDATE``; SQLite write
transactions are already one at a time), so concurrent requests cannot both slip under
the limit. The rate limit is a moving window in this process's memory (``limits``): with
several API processes each allows the rate.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Checkpoint, Dataset, Job, JobStatus, Tenant, utcnow
from app.problems import ProblemError
from app.settings import Settings

JOBS_RETRY_AFTER_SECONDS = 5  # a job in flight usually ends within seconds
TRAINING_WINDOW = dt.timedelta(hours=24)
TRAINING_RETRY_AFTER_SECONDS = 3600  # the window frees up as old training runs age out


@dataclass(frozen=True)
class Quota:
    """One tenant's limits (None: no limit)."""

    stored_bytes: int | None
    jobs_in_flight: int | None
    training_seconds: float | None
    rate_limit: str  # empty: none


def quota_for(settings: Settings, tenant_name: str) -> Quota:
    """The settings' defaults with the tenant's overrides (``tenant_quotas``) applied."""
    quota = Quota(
        settings.quota_stored_bytes,
        settings.quota_jobs_in_flight,
        settings.quota_training_seconds,
        settings.rate_limit,
    )
    override = settings.tenant_quotas.get(tenant_name)
    if override is None:
        return quota
    given = {name: getattr(override, name) for name in override.model_fields_set}
    if "rate_limit" in given and given["rate_limit"] is None:
        given["rate_limit"] = ""
    return Quota(**(quota.__dict__ | given))


def _tenant_quota(session: Session, settings: Settings, tenant_id: int) -> Quota:
    """Lock the tenant's row for this transaction and return its quota."""
    # FOR NO KEY UPDATE: it does not wait for the key-share locks of inserts naming the tenant
    locked = select(Tenant.name).where(Tenant.id == tenant_id).with_for_update(key_share=True)
    name = session.scalar(locked)
    if name is None:
        raise ProblemError(401, f"tenant {tenant_id} no longer exists", slug="unauthorized")
    return quota_for(settings, name)


# --- stored bytes --------------------------------------------------------------------------


def stored_bytes(session: Session, tenant_id: int) -> int:
    """What the tenant's checkpoints and datasets take, counted as uploaded (shared blobs
    are the service's saving, not the tenant's)."""
    total = 0
    for model in (Checkpoint, Dataset):
        total += session.scalar(
            select(func.coalesce(func.sum(model.size), 0)).where(model.tenant_id == tenant_id)
        ) or 0
    return int(total)


def check_stored_bytes(session: Session, settings: Settings, tenant_id: int, adding: int) -> None:
    """413 when storing ``adding`` more bytes would take the tenant over its quota. Call it
    in the transaction that inserts the row (it locks the tenant until the commit); a row
    added to the session but not flushed yet is not counted (``adding`` is)."""
    with session.no_autoflush:
        limit = _tenant_quota(session, settings, tenant_id).stored_bytes
        if limit is None:
            return
        used = stored_bytes(session, tenant_id)
    if used + adding > limit:
        raise ProblemError(
            413,
            f"storing {adding} more bytes would exceed this tenant's quota of {limit} bytes "
            f"({used} in use); delete something first",
            slug="quota-exceeded",
        )


# --- jobs in flight ------------------------------------------------------------------------


def check_jobs_in_flight(session: Session, settings: Settings, tenant_id: int) -> None:
    """429 when the tenant already has its quota of queued and running jobs. Call it in
    the transaction that inserts the new job, before the insert."""
    limit = _tenant_quota(session, settings, tenant_id).jobs_in_flight
    if limit is None:
        return
    in_flight = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.tenant_id == tenant_id, Job.status.in_((JobStatus.queued, JobStatus.running)))
    )
    if (in_flight or 0) >= limit:
        raise ProblemError(
            429,
            f"this tenant has {limit} jobs queued or running, its quota; retry once some "
            "have finished",
            slug="too-many-jobs",
            headers={"Retry-After": str(JOBS_RETRY_AFTER_SECONDS)},
        )


# --- training time -------------------------------------------------------------------------


def training_seconds_used(
    session: Session, tenant_id: int, kinds: list[str], now: dt.datetime | None = None
) -> float:
    """Seconds the tenant's jobs of these kinds ran within the last 24 hours (a running
    job counts up to now)."""
    now = now or utcnow()
    since = now - TRAINING_WINDOW
    rows = session.execute(
        select(Job.started_at, Job.finished_at).where(
            Job.tenant_id == tenant_id,
            Job.kind.in_(kinds),
            Job.started_at.is_not(None),
            (Job.finished_at.is_(None)) | (Job.finished_at > since),
        )
    ).all()
    total = 0.0
    for started, finished in rows:
        end = finished or now
        total += max((end - max(started, since)).total_seconds(), 0.0)
    return total


def check_training_time(
    session: Session, settings: Settings, tenant_id: int, kinds: list[str]
) -> None:
    """429 with ``Retry-After`` when the tenant has used its training seconds of the last
    24 hours. For the training job kinds: call it from the kind's ``check`` (at submit)."""
    limit = _tenant_quota(session, settings, tenant_id).training_seconds
    if limit is None:
        return
    used = training_seconds_used(session, tenant_id, kinds)
    if used >= limit:
        raise ProblemError(
            429,
            f"this tenant has used {used:.0f} s of training in the last 24 hours, its quota "
            f"is {limit:.0f} s",
            slug="training-quota-exceeded",
            headers={"Retry-After": str(TRAINING_RETRY_AFTER_SECONDS)},
        )


# --- request rate ----------------------------------------------------------------------------


class RateLimiter:
    """Requests per API key in a moving window, in this process's memory."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._parsed: dict[str, list[RateLimitItem]] = {}

    def hit(self, key_id: int, rate_limit: str) -> None:
        """Count one request of the key; 429 with ``Retry-After`` once over its rate."""
        if not rate_limit.strip():
            return
        items = self._parsed.get(rate_limit)
        if items is None:
            items = self._parsed[rate_limit] = parse_many(rate_limit)
        for item in items:
            if not self._limiter.hit(item, "key", str(key_id)):
                reset = self._limiter.get_window_stats(item, "key", str(key_id)).reset_time
                retry = max(1, math.ceil(reset - time.time()))
                raise ProblemError(
                    429,
                    f"this API key is over its rate limit of {item}; slow down",
                    slug="rate-limited",
                    headers={"Retry-After": str(retry)},
                )
