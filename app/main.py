"""The ASGI application: ``create_app(settings)`` wires services, routes and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from app.blobs import BlobStore
from app.checkpoints.endpoints import router as checkpoints_router
from app.db import create_db_engine, create_session_factory
from app.deps import Services
from app.health import router as health_router
from app.jobs.endpoints import router as jobs_router
from app.jobs.queue import InProcessQueue
from app.jobs.worker import JobWorker
from app.problems import install_problem_handlers
from app.settings import Settings

DESCRIPTION = (
    "Upload neural-network checkpoints, run jobs on them and query their history. "
    "Errors are application/problem+json (RFC 9457)."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. The schema must already be at head (``weightscope db upgrade``;
    ``weightscope serve`` does it before starting)."""
    settings = settings or Settings()
    engine = create_db_engine(settings.database_url)
    queue = InProcessQueue()
    services = Services(
        settings=settings,
        engine=engine,
        session_factory=create_session_factory(engine),
        blobs=BlobStore(settings.blob_dir),
        queue=queue,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = None
        if settings.embedded_worker:
            worker = JobWorker(services.session_factory, settings)
            await run_in_threadpool(worker.start)
            queue.add_waker(worker.wake)
        try:
            yield
        finally:
            if worker is not None:
                await run_in_threadpool(worker.stop)
            engine.dispose()

    app = FastAPI(title="Weightscope", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    install_problem_handlers(app)
    app.include_router(health_router)
    app.include_router(checkpoints_router)
    app.include_router(jobs_router)
    return app
