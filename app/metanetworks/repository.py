"""Every query on metanetwork versions and training states. A tenant sees the built-ins
(``tenant_id`` NULL) and its own metanetworks, never another tenant's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.models import Job, JobStatus, MetanetworkVersion, TrainingState, utcnow

TERMINAL = (JobStatus.succeeded, JobStatus.failed, JobStatus.canceled)


def _visible(tenant_id: int) -> Any:
    return or_(MetanetworkVersion.tenant_id.is_(None), MetanetworkVersion.tenant_id == tenant_id)


def versions(session: Session, name: str, tenant_id: int) -> list[MetanetworkVersion]:
    """The versions of ``name`` this tenant sees, oldest first (a built-in's when the name
    is a built-in's)."""
    rows = session.scalars(
        select(MetanetworkVersion)
        .where(MetanetworkVersion.name == name, _visible(tenant_id))
        .order_by(MetanetworkVersion.tenant_id.is_(None).desc(), MetanetworkVersion.version)
    ).all()
    builtin = [r for r in rows if r.tenant_id is None]
    return builtin or list(rows)


def catalog(session: Session, tenant_id: int) -> list[MetanetworkVersion]:
    """The latest version of every metanetwork the tenant sees: built-ins, then its own,
    by name."""
    latest = (
        select(
            MetanetworkVersion.tenant_id,
            MetanetworkVersion.name,
            func.max(MetanetworkVersion.version).label("version"),
        )
        .where(_visible(tenant_id))
        .group_by(MetanetworkVersion.tenant_id, MetanetworkVersion.name)
        .subquery()
    )
    rows = session.scalars(
        select(MetanetworkVersion).join(
            latest,
            (MetanetworkVersion.name == latest.c.name)
            & (MetanetworkVersion.version == latest.c.version)
            & (
                (MetanetworkVersion.tenant_id == latest.c.tenant_id)
                | (MetanetworkVersion.tenant_id.is_(None) & latest.c.tenant_id.is_(None))
            ),
        )
    ).all()
    return sorted(rows, key=lambda r: (r.tenant_id is not None, r.name))


def is_builtin_name(session: Session, name: str) -> bool:
    return (
        session.scalar(
            select(MetanetworkVersion.id)
            .where(MetanetworkVersion.name == name, MetanetworkVersion.tenant_id.is_(None))
            .limit(1)
        )
        is not None
    )


def latest_builtin(session: Session, name: str) -> MetanetworkVersion | None:
    return session.scalar(
        select(MetanetworkVersion)
        .where(MetanetworkVersion.name == name, MetanetworkVersion.tenant_id.is_(None))
        .order_by(MetanetworkVersion.version.desc())
        .limit(1)
    )


def latest_version_number(session: Session, name: str, tenant_id: int | None) -> int:
    owner = (
        MetanetworkVersion.tenant_id.is_(None)
        if tenant_id is None
        else MetanetworkVersion.tenant_id == tenant_id
    )
    found = session.scalar(
        select(func.max(MetanetworkVersion.version)).where(MetanetworkVersion.name == name, owner)
    )
    return int(found or 0)


def weights_in_use(session: Session, sha256: str) -> bool:
    return (
        session.scalar(
            select(MetanetworkVersion.id)
            .where(MetanetworkVersion.weights_sha256 == sha256)
            .limit(1)
        )
        is not None
    )


def active_trainings(session: Session, tenant_id: int) -> list[dict[str, Any]]:
    """Params of this tenant's queued or running ``train`` jobs."""
    rows = session.scalars(
        select(Job.params).where(
            Job.kind == "train", Job.status.in_([JobStatus.queued, JobStatus.running])
        )
    ).all()
    return [p for p in rows if p.get("tenant_id") == tenant_id]


# --- training states ---------------------------------------------------------------------


def training_state(session: Session, job_id: int) -> TrainingState | None:
    return session.get(TrainingState, job_id)


def set_pending(session: Session, job_id: int, sha256: str) -> None:
    """Name the blob about to be written, before it is written."""
    row = session.get(TrainingState, job_id)
    if row is None:
        session.add(TrainingState(job_id=job_id, epoch=0, pending_sha256=sha256))
    else:
        row.pending_sha256, row.updated_at = sha256, utcnow()


def set_state(session: Session, job_id: int, epoch: int, sha256: str) -> None:
    session.execute(
        update(TrainingState)
        .where(TrainingState.job_id == job_id)
        .values(epoch=epoch, state_sha256=sha256, pending_sha256=None, updated_at=utcnow())
    )


def drop_state(session: Session, job_id: int) -> None:
    session.execute(delete(TrainingState).where(TrainingState.job_id == job_id))


def states_of_finished_jobs(session: Session) -> list[TrainingState]:
    """States left by jobs that ended without removing them (out of attempts)."""
    return list(
        session.scalars(
            select(TrainingState)
            .join(Job, Job.id == TrainingState.job_id)
            .where(Job.status.in_(TERMINAL))
        ).all()
    )

