"""Log lines that say which request or job they belong to.

Two context variables carry the ids: the request middleware sets ``request_id`` (from the
client's ``X-Request-ID`` or a new one), the job runner sets ``job_id`` while a job runs.
Starlette copies the context into the threads it runs sync code in, so every line a
request or job causes carries its id. ``configure_logging`` installs the filter and a
text or JSON (python-json-logger) formatter on the root logger.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)

REQUEST_ID_HEADER = "X-Request-ID"
# a client's id is kept when it is short and plain (it ends up in log lines and headers)
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
access_log = logging.getLogger("weightscope.access")


class ContextIds(logging.Filter):
    """Adds ``request_id`` and ``job_id`` (None outside a request/job) to a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.job_id = job_id.get()
        return True


def _install_record_factory() -> None:
    """Every record gets the ids where it is made, whichever handler writes it."""
    make = logging.getLogRecordFactory()
    if getattr(make, "weightscope_ids", False):
        return

    def with_ids(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)  # type: ignore[arg-type]
        record.request_id = request_id.get()
        record.job_id = job_id.get()
        return record

    with_ids.weightscope_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(with_ids)


_install_record_factory()


class TextFormatter(logging.Formatter):
    """The usual line, with ``request_id=…``/``job_id=…`` appended where set."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [
            f"{name}={value}"
            for name in ("request_id", "job_id")
            if (value := getattr(record, name, None)) is not None
        ]
        if not ids:
            return line
        head, _, rest = line.partition("\n")  # ids stay on the first line, before a traceback
        return f"{head} [{' '.join(ids)}]" + (f"\n{rest}" if rest else "")


class CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record (a CLI test runner swaps it, and a
    handler holding the old, closed stream would print a logging error instead)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_logging(log_format: Literal["text", "json"] = "text", prefix: str = "") -> None:
    """Root logger at INFO on stderr, every record carrying the context ids; ``prefix``
    names the process in text lines (the embedded worker's ``worker``)."""
    handler = CurrentStderr()
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(job_id)s",
                rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
                static_fields={"process": prefix} if prefix else None,
            )
        )
    else:
        text = TEXT_FORMAT
        if prefix:
            text = text.replace(" %(levelname)s", f" {prefix} %(levelname)s")
        handler.setFormatter(TextFormatter(text))
    handler.addFilter(ContextIds())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


@contextlib.contextmanager
def job_context(ids: str | int) -> Iterator[None]:
    """Log lines inside carry this job id (a batch: its ids, comma-separated)."""
    token = job_id.set(str(ids))
    try:
        yield
    finally:
        job_id.reset(token)


class RequestIds:
    """Pure ASGI middleware: takes the client's ``X-Request-ID`` (or makes one), returns
    it on the response, and logs one access line per request with its route template,
    status and duration (uvicorn's own access log is off)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _CLIENT_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500  # unless a response starts
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, rid)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            access_log.info(
                "%s %s -> %d in %.1f ms",
                scope["method"],
                scope["path"].encode("unicode_escape").decode("ascii"),  # no CR/LF in logs
                status,
                (time.perf_counter() - started) * 1000,
                extra={"route": getattr(route, "path", None), "status": status},
            )
            request_id.reset(token)
