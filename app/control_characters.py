"""Refuse control characters (NUL, CR, LF, ...) in query parameters and the ``X-Filename``
header before any route runs: PostgreSQL cannot store NUL in text, and CR/LF in stored
names end up in logs and downloads' headers."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from app.problems import problem_response


def has_control_character(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


class RefuseControlCharacters:
    """Pure ASGI middleware (no body buffering, so uploads still stream)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = _offending(scope)
            if found is not None:
                response = problem_response(
                    422, f"{found} contains a control character (NUL, CR, LF, ...)",
                    slug="validation",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _offending(scope: Scope) -> str | None:
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if has_control_character(name) or has_control_character(value):
            return f"query parameter {name!r}"
    for key, value in scope.get("headers", []):
        if key == b"x-filename" and has_control_character(value.decode("latin-1")):
            return "header X-Filename"
    return None
