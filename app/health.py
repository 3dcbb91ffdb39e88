"""Liveness (the process answers) and readiness (it can do its job)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from app.db import read_session
from app.deps import Services, ServicesDep
from app.jobs.procrastinate_queue import live_worker as procrastinate_worker
from app.jobs.repository import live_worker
from app.migrate import current_revision, head_revision
from app.problems import problem_response

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: str = Field(description="ok")
    checks: dict[str, str] = Field(description="check -> what it found (database, migrations, "
                                   "worker)")


@router.get(
    "/readyz",
    responses={200: {"model": Readiness}, 503: {"content": {"application/problem+json": {}}}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    checks = await run_in_threadpool(readiness_checks, services)
    failing = [f"{name}: {message}" for name, (ok, message) in checks.items() if not ok]
    if failing:
        return problem_response(503, "; ".join(failing), slug="not-ready")
    return JSONResponse({"status": "ok", "checks": {k: m for k, (_, m) in checks.items()}})


def readiness_checks(services: Services) -> dict[str, tuple[bool, str]]:
    """name -> (ok, message) for the database, its schema version and a live worker."""
    try:
        with read_session(services.session_factory) as session:
            session.execute(text("SELECT 1"))
        revision = current_revision(services.engine)
    except SQLAlchemyError as exc:
        return {"database": (False, f"unreachable ({str(exc).splitlines()[0]})")}
    checks = {"database": (True, "reachable")}
    head = head_revision()
    if revision != head:
        checks["migrations"] = (False, f"at {revision}, head is {head}")
        return checks
    checks["migrations"] = (True, f"at {revision}")
    settings = services.settings
    if settings.queue == "procrastinate":
        live = procrastinate_worker(services.session_factory, settings.stalled_worker_seconds)
    else:
        stale = dt.timedelta(seconds=settings.stale_after_seconds)
        live = live_worker(services.session_factory, stale)
    checks["worker"] = (live is not None, f"{live} alive" if live else "no live job worker")
    return checks
