"""The one way a response names the resource it created or queued (``Location``)."""

from __future__ import annotations

from fastapi import Response


def located(response: Response, path: str, status_code: int | None = None) -> Response:
    response.headers["Location"] = path
    if status_code is not None:
        response.status_code = status_code
    return response


def job_path(job_id: int) -> str:
    return f"/v1/jobs/{job_id}"


def stored(response: Response, path: str, created: bool) -> None:
    """An upload's answer: 201 with ``Location`` when new, 200 when the bytes were known."""
    located(response, path, 201 if created else 200)
