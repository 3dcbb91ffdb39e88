"""API keys: random tokens shown once, stored as a SHA-256 of the secret, found by it.

A key is ``ws_`` and 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits), so
a fast unsalted hash is enough: nothing about it can be guessed or looked up in a table
(a slow password hash would be for low-entropy secrets). The first characters are kept
as ``prefix`` so that a person can tell keys apart in ``weightscope keys list``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import SessionFactory, read_session, session_scope
from app.models import ApiKey, Tenant, utcnow

TOKEN_PREFIX = "ws_"
SHOWN_PREFIX = len(TOKEN_PREFIX) + 8  # "ws_" and 8 characters of the secret, in lists
LAST_USED_EVERY = dt.timedelta(minutes=1)  # ``last_used_at`` is written at most this often


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def secret_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Authenticated:
    """Who a valid key speaks for."""

    key_id: int
    tenant_id: int
    tenant_name: str
    admin: bool


@dataclass(frozen=True)
class CreatedKey:
    key_id: int
    tenant_id: int
    tenant_name: str
    token: str  # the only time it exists in the clear


def create_key(
    session_factory: SessionFactory, name: str, tenant: str, admin: bool = False
) -> CreatedKey:
    """A new key for ``tenant`` (created when new); the token is returned once, only its
    hash is stored."""
    token = new_token()
    with session_scope(session_factory) as session:
        tenant_row = session.scalars(select(Tenant).where(Tenant.name == tenant)).first()
        if tenant_row is None:
            tenant_row = Tenant(name=tenant)
            session.add(tenant_row)
            session.flush()
        key = ApiKey(
            tenant_id=tenant_row.id,
            name=name,
            prefix=token[:SHOWN_PREFIX],
            secret_hash=secret_hash(token),
            admin=admin,
        )
        session.add(key)
        session.flush()
        return CreatedKey(key.id, tenant_row.id, tenant_row.name, token)


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    tenant: str
    admin: bool
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def list_keys(session_factory: SessionFactory) -> list[KeyInfo]:
    """Every key, oldest first, without anything secret."""
    with read_session(session_factory) as session:
        rows = session.execute(
            select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id).order_by(
                ApiKey.id
            )
        ).all()
    return [
        KeyInfo(
            key.id, key.name, key.prefix, tenant, key.admin, key.created_at, key.last_used_at,
            key.revoked_at,
        )
        for key, tenant in rows
    ]


def revoke_key(session_factory: SessionFactory, key_id: int) -> bool:
    """Revoke a key (kept for the record); False when there is no such active key."""
    with session_scope(session_factory) as session:
        revoked = session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount
    return bool(revoked)


def any_active_key(session_factory: SessionFactory) -> bool:
    with read_session(session_factory) as session:
        found = session.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1))
    return found is not None


def authenticate(session_factory: SessionFactory, token: str) -> Authenticated | None:
    """The key's tenant, or None for an unknown or revoked key. ``last_used_at`` is
    refreshed when older than ``LAST_USED_EVERY`` (not a write per request)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with read_session(session_factory) as session:
        row = session.execute(
            select(ApiKey.id, ApiKey.tenant_id, Tenant.name, ApiKey.admin, ApiKey.revoked_at,
                   ApiKey.last_used_at)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .where(ApiKey.secret_hash == secret_hash(token))
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_EVERY:
        with session_scope(session_factory) as session:
            _touch(session, row.id, now)
    return Authenticated(row.id, row.tenant_id, row.name, row.admin)


def _touch(session: Session, key_id: int, now: dt.datetime) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))

