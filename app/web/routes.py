"""``/`` serves the page, ``/static`` its assets; neither is part of the API's OpenAPI.

The page is public (it holds no data); every call it makes goes to /v1 with the API key a
person pastes into its header, so authentication stays where it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.staticfiles import PathLike
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
# Only this origin's scripts, styles, images and API; no inline script, nothing framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # the page changes with the package: always revalidated (ETag), never stale
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


class StaticAssets(StaticFiles):
    """The page's assets with their media types fixed (a host's mimetypes table may lack
    ``.js``, and browsers refuse ES modules served as anything but JavaScript)."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = MEDIA_TYPES.get(Path(full_path).suffix)
        if media_type and response.status_code != 304:
            response.headers["content-type"] = f"{media_type}; charset=utf-8"
        response.headers.update(PAGE_HEADERS)
        return response


def install_web(app: FastAPI) -> None:
    """Mount the page on ``app``: ``GET /`` and ``/static/*``, outside the schema."""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS
        )

    app.mount("/static", StaticAssets(directory=STATIC_DIR), name="static")
