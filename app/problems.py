"""RFC 9457 problem details: every error the API returns has this one shape."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:weightscope:problem:"
PROBLEM = {"content": {PROBLEM_MEDIA_TYPE: {}}}  # a route's error responses in the OpenAPI


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="where: body, query, path or header, then keys")
    msg: str = Field(description="what is wrong there")
    type: str | None = Field(description="the kind of error, e.g. missing, int_parsing")


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: the body of every error response (``application/problem+json``;
    the OpenAPI documents it on every error status, ``app/openapi.py``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        description="the problem's type: urn:weightscope:problem:SLUG (e.g. not-found, "
        "validation, out-of-domain, job-failed), or about:blank"
    )
    title: str = Field(description="the HTTP status phrase")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong, in words, for a person")
    errors: list[ValidationIssue] | None = Field(
        default=None, description="request validation: one entry per invalid part"
    )
    job: dict[str, Any] | None = Field(
        default=None,
        description="a job waited for (?wait=) that failed or was canceled: the job itself",
    )

Row = TypeVar("Row")


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem+json document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.headers = headers


def get_or_404(session: Session, model: type[Row], row_id: int, what: str) -> Row:
    """The row with this id, or a 404 problem naming what is missing."""
    row: Any = session.get(model, row_id)
    if row is None:
        raise ProblemError(404, f"{what} {row_id} does not exist", slug="not-found")
    return row  # type: ignore[no-any-return]


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body: dict[str, object] = {
        "type": PROBLEM_TYPE_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(DataError, _out_of_range)
    app.add_exception_handler(Exception, _unexpected)


async def _problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.detail, slug=exc.slug, headers=exc.headers)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such resource"
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        detail = "this method is not allowed on this resource"
    return problem_response(exc.status_code, detail, headers=exc.headers)


def body_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """A request body's pydantic errors as ``RequestValidationError`` holds them (located
    under ``body``), for a route that parses its body itself: raised as one, they answer
    the same problem as every other invalid request."""
    return [
        {**error, "loc": ("body", *error.get("loc", ()))}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]
    detail = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors
    )
    return problem_response(
        422, detail or "invalid request", slug="validation", extra={"errors": errors}
    )


async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
    """A number the database cannot hold (SQLite: OverflowError; PostgreSQL: a data
    exception), e.g. an id past 2**63 - 1: no such row can exist, the input is invalid."""
    log.info("out-of-range input on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        422, "a number in the request is out of range (ids are below 2**63)", slug="validation"
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "internal server error; the failure has been logged")
