"""The ASGI application: ``create_app(settings)`` wires services, routes and errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from app.blobs import BlobStore
from app.checkpoints.endpoints import router as checkpoints_router
from app.control_characters import RefuseControlCharacters
from app.datasets.endpoints import router as datasets_router
from app.db import create_db_engine, create_session_factory
from app.deps import Services
from app.device import configure_torch, mark_api_process
from app.health import router as health_router
from app.jobs.completions import listen
from app.jobs.endpoints import router as jobs_router
from app.jobs.procrastinate_queue import ProcrastinateQueue, conninfo
from app.jobs.queue import InProcessQueue, JobQueue
from app.jobs.worker import JobWorker
from app.jobs.worker_process import WorkerProcess
from app.merges.endpoints import router as merges_router
from app.metanetworks.builtins import register_builtins
from app.metanetworks.endpoints import router as metanetworks_router
from app.predictions.endpoints import router as predictions_router
from app.problems import install_problem_handlers
from app.settings import Settings
from app.tasks import load_tasks, task_modules
from app.zoos.endpoints import router as zoos_router

DESCRIPTION = (
    "Upload neural-network checkpoints, ask metanetworks about them, merge them modulo "
    "permutation symmetry, and query their history. "
    "Errors are application/problem+json (RFC 9457)."
)
ROUTERS = (
    health_router,
    checkpoints_router,
    jobs_router,
    metanetworks_router,
    predictions_router,
    datasets_router,
    merges_router,
    zoos_router,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. The schema must already be at head (``weightscope db upgrade``;
    ``weightscope serve`` does it before starting). The embedded worker (a child process by
    default, or a thread) runs only with the in-process queue; with procrastinate,
    ``weightscope worker`` processes run the jobs."""
    settings = settings or Settings()
    mark_api_process()
    load_tasks(task_modules(settings))
    engine = create_db_engine(settings.database_url)
    queue: JobQueue
    if settings.queue == "procrastinate":
        queue = ProcrastinateQueue(settings.database_url)
    else:
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
        async with contextlib.AsyncExitStack() as stack:  # closed in reverse order
            stack.callback(engine.dispose)
            stack.callback(queue.close)
            await run_in_threadpool(
                register_builtins, services.session_factory, settings.metanetwork_dir
            )
            if isinstance(queue, InProcessQueue):
                await _embedded_worker(stack, services, queue)
            else:  # workers elsewhere announce the jobs they finish
                stack.enter_context(_listening(settings, services))
            yield

    app = FastAPI(title="Weightscope", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    install_problem_handlers(app)
    app.add_middleware(RefuseControlCharacters)
    for router in ROUTERS:
        app.include_router(router)
    return app


async def _embedded_worker(
    stack: contextlib.AsyncExitStack, services: Services, queue: InProcessQueue
) -> None:
    """Start the embedded worker (``Settings.embedded_worker``); it signals the jobs it
    finishes to the notifier, the in-process queue's one completion signal."""
    settings = services.settings
    worker: JobWorker | WorkerProcess
    if settings.embedded_worker == "thread":
        configure_torch(settings, embedded=True)
        worker = JobWorker(services.session_factory, settings, notify=services.notifier.finished)
        await run_in_threadpool(worker.start)
    elif settings.embedded_worker == "process":
        worker = WorkerProcess(settings, services.notifier, task_modules(settings))
        worker.start()
    else:
        return
    stack.push_async_callback(run_in_threadpool, worker.stop)
    queue.add_waker(worker.wake)
    stack.enter_context(services.notifier.signalling())


@contextlib.contextmanager
def _listening(settings: Settings, services: Services) -> contextlib.Iterator[None]:
    listener = asyncio.create_task(listen(conninfo(settings.database_url), services.notifier))
    try:
        yield
    finally:
        listener.cancel()
