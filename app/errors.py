"""Errors that are the world's fault, not the request's or ours: answered without a
traceback in the log.

* The database is unreachable (down, restarting, connection dropped): 503 problem+json
  with ``Retry-After``, and one WARNING line, instead of a 500 with a traceback.
* The client went away mid-request (an aborted upload): one INFO line; nobody is left to
  read an answer.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import ClientDisconnect

from app.db import database_unreachable
from app.problems import problem_response
from app.settings import Settings

log = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's code; never reaches the client that left


def install_operational_handlers(app: FastAPI, settings: Settings) -> None:
    retry_after = str(settings.database_retry_after_seconds)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if not database_unreachable(exc):
            log.exception("database error on %s %s", request.method, request.url.path, exc_info=exc)
            return problem_response(500, "internal server error; the failure has been logged")
        log.warning(
            "database unreachable on %s %s: %s",
            request.method, request.url.path, str(exc).splitlines()[0],
        )
        return problem_response(
            503,
            "the database is unreachable or busy; retry later",
            slug="database-unavailable",
            headers={"Retry-After": retry_after},
        )

    async def client_left(request: Request, _: Exception) -> Response:
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeout, database_error)
    app.add_exception_handler(ClientDisconnect, client_left)
