"""What a request must look like before any route sees it.

* **Trusted hosts.** A ``Host`` outside ``Settings.trusted_hosts`` (default: the loopback
  names and ``Settings.host``) is refused: a DNS-rebinding page in the user's browser
  reaches the loopback port under its own name, and is stopped here.
* **No cross-site writes.** CORS is closed unless ``Settings.cors_origins`` opens it, but
  a browser still *sends* "simple" requests (a multipart form POST) cross-site, and only
  hides the answer. An unsafe method from another site (``Sec-Fetch-Site: cross-site``
  or ``same-site``, or an ``Origin`` that is neither this host nor an allowed origin) is
  refused before it takes effect. Programs send neither header and pass.
* **Body read timeout.** A request body that sends nothing for
  ``Settings.body_read_timeout_seconds`` is answered 408 (its temp file is removed by
  the upload's own failure path) and the connection is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.problems import ProblemError, problem_response
from app.settings import Settings

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def default_trusted_hosts(bind_host: str) -> list[str]:
    hosts = list(LOOPBACK_HOSTS)
    if bind_host not in WILDCARD_BINDS and bind_host.lower() not in hosts:
        hosts.append(bind_host.lower())
    return hosts


def host_name(host_header: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    try:
        return (urlsplit(f"//{host_header}").hostname or "").lower()
    except ValueError:  # a malformed port or bracket
        return ""


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


class RequestGuard:
    """Pure ASGI middleware (bodies still stream) for the three checks above."""

    def __init__(
        self,
        app: ASGIApp,
        trusted_hosts: Iterable[str],
        cors_origins: Iterable[str],
        body_read_timeout: float,
    ) -> None:
        self.app = app
        hosts = {h.lower().strip("[]") for h in trusted_hosts}
        self.any_host = "*" in hosts
        self.trusted_hosts = hosts
        self.cors_origins = {_origin(o) for o in cors_origins if o != "*"}
        self.any_origin = "*" in cors_origins
        self.body_read_timeout = body_read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope["method"], headers)
        if refusal is not None:
            status, detail, slug = refusal
            log.info("refused %s %s: %s", scope["method"], scope["path"], detail)
            await problem_response(status, detail, slug=slug)(scope, receive, send)
            return
        await self.app(scope, self._timed(receive), send)

    def _refusal(self, method: str, headers: dict[str, str]) -> tuple[int, str, str] | None:
        host = host_name(headers.get("host", ""))
        if not self.any_host and host not in self.trusted_hosts:
            return (
                400,
                f"host {host or '(none)'!r} is not served here; add it to "
                "WEIGHTSCOPE_TRUSTED_HOSTS",
                "untrusted-host",
            )
        if method in SAFE_METHODS:
            return None
        fetch_site = headers.get("sec-fetch-site", "").lower()
        origin = headers.get("origin")
        if origin is not None and self._allowed_origin(origin, headers.get("host", "")):
            return None
        if fetch_site in ("cross-site", "same-site") or origin is not None:
            return (403, "cross-site requests may not change anything here", "cross-site")
        return None

    def _allowed_origin(self, origin: str, host_header: str) -> bool:
        parsed = _origin(origin)
        if parsed is None or origin == "null":
            return False
        if self.any_origin or parsed in self.cors_origins:
            return True
        own = _origin(f"{parsed[0]}://{host_header}")  # same origin as the page's host
        return own is not None and own[1:] == parsed[1:]

    def _timed(self, receive: Receive) -> Receive:
        """``receive`` with a deadline on each body message, until the body is complete
        (after that, waiting for a disconnect is not a stall)."""
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            with anyio.move_on_after(self.body_read_timeout) as scope:
                message = await receive()
            if scope.cancelled_caught:
                raise ProblemError(
                    408,
                    f"the request body sent nothing for {self.body_read_timeout:g} s",
                    slug="body-timeout",
                    headers={"Connection": "close"},
                )
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        return timed_receive


def warn_if_untrusted_bind(settings: Settings) -> None:
    """Bound to every address with the default host list, only loopback names pass."""
    if not settings.trusted_hosts and settings.host in WILDCARD_BINDS:
        log.warning(
            "bound to %r but WEIGHTSCOPE_TRUSTED_HOSTS is not set: only %s are answered",
            settings.host, ", ".join(LOOPBACK_HOSTS),
        )
