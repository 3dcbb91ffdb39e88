"""Who is calling: the tenant every request acts for, and reading only what it owns.

Every /v1 route takes ``CallerDep``; ``current_caller`` asks the app's
:class:`app.auth.Authenticator` (the API key's tenant, or the local tenant while the
service runs open). A record of another tenant is answered exactly like a missing one
(404): a caller never learns that it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.models import LOCAL_TENANT_ID

Row = TypeVar("Row")


@dataclass(frozen=True)
class Caller:
    tenant_id: int
    key_id: int | None  # None: no key (the open local mode)
    admin: bool


LOCAL_CALLER = Caller(tenant_id=LOCAL_TENANT_ID, key_id=None, admin=True)


# Declares the Bearer scheme in the OpenAPI document (/docs gets "Authorize"); the header
# itself is read by the authenticator, which answers the problem documents.
_BEARER = HTTPBearer(auto_error=False, description="an API key: weightscope keys create NAME")


async def current_caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
) -> Caller:
    """The caller of this request (FastAPI dependency): 401 without a valid key once
    authentication is on, 429 over the key's rate limit."""
    caller: Caller = await request.app.state.auth.caller(request)
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
