"""FastAPI dependencies: the process-wide services and a per-request database session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.blobs import BlobStore
from app.db import SessionFactory, read_session
from app.jobs.notify import JobNotifier
from app.jobs.queue import JobQueue
from app.settings import Settings


@dataclass
class Services:
    """Everything a request may need, built once per app in ``create_app``."""

    settings: Settings
    engine: Engine
    session_factory: SessionFactory
    blobs: BlobStore
    queue: JobQueue
    notifier: JobNotifier = field(default_factory=JobNotifier)


async def get_services(request: Request) -> Services:
    """Async so that FastAPI calls it on the event loop (a plain ``def`` dependency is a
    thread hop per request for one attribute read)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """A session without a transaction held open; services commit explicitly."""
    with services.session_factory() as session:
        yield session


def get_read_session(services: ServicesDep) -> Iterator[Session]:
    """A session for routes that only read."""
    with read_session(services.session_factory) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
