"""Authentication: which mode the service runs in, and the caller of each request.

``Settings.auth``: ``required`` (every /v1 request needs ``Authorization: Bearer KEY``),
``open`` (no keys: every request is the local tenant) or ``auto``, the default: open while
the service listens on a loopback address and no active API key exists, required
otherwise. ``check_startup`` refuses a non-loopback address in ``auto`` mode while no key
exists, so that nothing is ever served open to a network by default.
"""

from __future__ import annotations

import ipaddress
import logging
import time

from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app import keys
from app.db import SessionFactory
from app.models import LOCAL_TENANT_ID
from app.problems import ProblemError, problem_response
from app.quotas import RateLimiter, quota_for
from app.settings import Settings
from app.tenancy import Caller

log = logging.getLogger(__name__)

KEYS_SEEN_SECONDS = 1.0  # how long "does any key exist" is remembered (auto mode)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="weightscope"'}


class AuthNotConfigured(RuntimeError):
    """The service would listen on a network address without authentication."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def startup_mode(settings: Settings, session_factory: SessionFactory) -> str:
    """The mode the service starts in: open or required. Raises ``AuthNotConfigured`` for
    ``auto`` on a non-loopback address while no API key exists."""
    if settings.auth != "auto":
        return settings.auth
    if keys.any_active_key(session_factory):
        return "required"
    if is_loopback(settings.host):
        return "open"
    raise AuthNotConfigured(
        f"refusing to serve {settings.host} without authentication: create an API key "
        "(weightscope keys create NAME) or set WEIGHTSCOPE_AUTH=required (or =open to "
        "serve every caller as the local tenant)"
    )


def check_startup(settings: Settings, session_factory: SessionFactory) -> str:
    """``startup_mode``, said in the log."""
    mode = startup_mode(settings, session_factory)
    if mode == "required":
        log.info("auth: required - every /v1 request needs Authorization: Bearer <API key>")
    elif is_loopback(settings.host):
        log.info(
            "auth: open on %s - no API key is needed and every request acts as the local "
            "tenant%s", settings.host,
            "" if settings.auth == "open" else " until an API key is created",
        )
    else:
        log.warning(
            "auth is OFF (WEIGHTSCOPE_AUTH=open) on %s: anyone who reaches the port acts as "
            "the local tenant", settings.host,
        )
    return mode


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, slug="unauthorized", headers=CHALLENGE)


class Authenticator:
    """Finds the caller of a request: the key's tenant, or the local tenant in open mode.
    Also counts the request against its key's rate limit."""

    def __init__(self, settings: Settings, session_factory: SessionFactory) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.rates = RateLimiter()
        self._loopback = is_loopback(settings.host)
        self._keys_seen: tuple[float, bool] = (-1e9, False)

    async def caller(self, request: Request) -> Caller:
        if self.settings.auth == "open":
            return Caller(LOCAL_TENANT_ID, None, True)
        header = request.headers.get("authorization")
        if header is None:
            if await self._open_now():
                return Caller(LOCAL_TENANT_ID, None, True)
            raise unauthorized("this service needs an API key: Authorization: Bearer <key>")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("send the API key as Authorization: Bearer <key>")
        found = await run_in_threadpool(keys.authenticate, self.session_factory, token.strip())
        if found is None:
            raise unauthorized("unknown or revoked API key")
        self.rates.hit(found.key_id, quota_for(self.settings, found.tenant_name).rate_limit)
        return Caller(found.tenant_id, found.key_id, found.admin)

    async def _open_now(self) -> bool:
        """``auto`` on loopback: open while no active key exists (looked up at most once
        a ``KEYS_SEEN_SECONDS``)."""
        if self.settings.auth != "auto" or not self._loopback:
            return False
        seen_at, exists = self._keys_seen
        if time.monotonic() - seen_at > KEYS_SEEN_SECONDS:
            exists = await run_in_threadpool(keys.any_active_key, self.session_factory)
            self._keys_seen = (time.monotonic(), exists)
        return not exists


class AdminOnly:
    """ASGI middleware: paths outside the API routers (``/metrics``) answer only admin keys
    once authentication is on; in open mode they stay open like the rest."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, paths: tuple[str, ...]) -> None:
        self.app = app
        self.authenticator = authenticator
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.authenticator.settings
        if scope["type"] == "http" and scope["path"] in self.paths and settings.auth != "open":
            try:
                caller = await self.authenticator.caller(Request(scope))
                if not caller.admin:
                    raise ProblemError(403, "only an admin API key may read this", slug="forbidden")
            except ProblemError as exc:
                response = problem_response(
                    exc.status, exc.detail, slug=exc.slug, headers=exc.headers
                )
                await response(scope, receive, send)
                return
            except OperationalError:  # the key cannot be checked (open mode needs no check)
                retry = {"Retry-After": str(settings.database_retry_after_seconds)}
                response = problem_response(
                    503, "the database is unreachable or busy; retry later",
                    slug="database-unavailable", headers=retry,
                )  # fmt: skip
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
