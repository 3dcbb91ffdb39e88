"""Who is calling: the tenant every request acts for.

Until API keys are configured every caller is the local tenant (tenant 1), which owns
everything; routes take ``Caller`` from ``current_caller`` so that isolation is one
dependency away.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models import LOCAL_TENANT_ID


@dataclass(frozen=True)
class Caller:
    tenant_id: int
    key_id: int | None  # None: no key (the open local mode)
    admin: bool


LOCAL_CALLER = Caller(tenant_id=LOCAL_TENANT_ID, key_id=None, admin=True)


def current_caller() -> Caller:
    """The caller of this request (FastAPI dependency)."""
    return LOCAL_CALLER
