"""The ASGI application: ``create_app(settings)`` wires services, routes and errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from app import blob_refs
from app.auth import AdminOnly, Authenticator, check_startup
from app.blobs import BlobStore
from app.checkpoints.endpoints import router as checkpoints_router
from app.control_characters import RefuseControlCharacters
from app.datasets.endpoints import router as datasets_router
from app.db import create_db_engine, create_session_factory
from app.deps import Services
from app.device import configure_torch, mark_api_process
from app.errors import install_operational_handlers
from app.guards import RequestGuard, default_trusted_hosts, warn_if_untrusted_bind
from app.health import router as health_router
from app.jobs.completions import listen
from app.jobs.endpoints import router as jobs_router
from app.jobs.procrastinate_queue import ProcrastinateQueue, conninfo
from app.jobs.queue import InProcessQueue, JobQueue
from app.jobs.worker import JobWorker
from app.jobs.worker_process import WorkerProcess
from app.logs import RequestIds
from app.merges.endpoints import router as merges_router
from app.metanetworks.builtins import register_builtins
from app.metanetworks.endpoints import router as metanetworks_router
from app.metrics import HttpMetrics, MeasureRequests, StateCollector, metrics_endpoint
from app.openapi import install_openapi
from app.predictions.endpoints import router as predictions_router
from app.problems import install_problem_handlers
from app.settings import Settings
from app.tasks import load_tasks, task_modules
from app.tenancy import current_caller
from app.web.routes import install_web
from app.zoos.endpoints import router as zoos_router

log = logging.getLogger(__name__)

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
ADMIN_PATHS = ("/metrics",)  # outside /v1, answered to admin keys once auth is on


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
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:  # closed in reverse order
            stack.callback(engine.dispose)
            stack.callback(queue.close)
            await run_in_threadpool(_with_database, _database_startup, settings, services)
            swept = await run_in_threadpool(services.blobs.sweep_temp_files)
            if swept:
                log.info("removed %d partial upload file(s) left by an earlier run", swept)
            warn_if_untrusted_bind(settings)
            if isinstance(queue, InProcessQueue):
                worker = await _embedded_worker(stack, services, queue)
                if isinstance(worker, WorkerProcess):
                    app.state.gpu_memory = worker.gpu_memory
            else:  # workers elsewhere announce the jobs they finish
                stack.enter_context(_listening(settings, services))
            yield

    # Swagger UI (/docs) and ReDoc (/redoc) from the fastapi-offline package's assets: no CDN
    app = FastAPIOffline(
        title="Weightscope",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url="/docs-assets",
    )
    install_openapi(app)
    app.state.services = services
    app.state.auth = Authenticator(settings, services.session_factory)
    install_problem_handlers(app)
    install_operational_handlers(app, settings)
    _install_middleware(app, settings, _metrics_registry(app, services, queue))
    for router in ROUTERS:  # every /v1 route: a caller (401 without a key once auth is on)
        api = router.prefix.startswith("/v1")
        app.include_router(router, dependencies=[Depends(current_caller)] if api else None)
    install_web(app)  # the page at / and its assets at /static: public, the API keeps its keys
    return app


def _with_database(step: Callable[..., None], *args: object) -> None:
    """A start-up step that needs the database: an outage skips it with a warning (requests
    answer 503 meanwhile; ``serve`` migrates first, so it starts only with a database)."""
    try:
        step(*args)
    except OperationalError as exc:
        log.warning("database unreachable at start-up, %s skipped: %s", step.__name__, exc)


def _database_startup(settings: Settings, services: Services) -> None:
    """The auth mode said in the log, the built-ins registered, a crash's blobs swept."""
    check_startup(settings, services.session_factory)
    register_builtins(services.session_factory, settings.metanetwork_dir)
    _sweep_blobs(services)


def _sweep_blobs(services: Services) -> None:
    """Files a crash left without a row, and blobs whose last row went (``blob_refs``)."""
    with services.session_factory() as session:
        blob_refs.sweep(session, services.blobs)


def _install_middleware(app: FastAPI, settings: Settings, registry: CollectorRegistry) -> None:
    """Outermost last: request ids and metrics see every answer, the guard's refusals too."""
    app.add_middleware(RefuseControlCharacters)
    app.add_middleware(AdminOnly, authenticator=app.state.auth, paths=ADMIN_PATHS)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After", "Location"],
        )
    app.add_middleware(
        RequestGuard,
        trusted_hosts=settings.trusted_hosts or default_trusted_hosts(settings.host),
        cors_origins=settings.cors_origins,
        body_read_timeout=settings.body_read_timeout_seconds,
    )
    app.add_middleware(MeasureRequests, metrics=HttpMetrics(registry))
    app.add_middleware(RequestIds)


def _metrics_registry(app: FastAPI, services: Services, queue: JobQueue) -> CollectorRegistry:
    """One registry per app (tests build many apps); ``GET /metrics`` serves it."""
    registry = CollectorRegistry()
    settings = services.settings
    registry.register(
        StateCollector(
            services.session_factory,
            settings.queue,
            settings.blob_dir,
            settings.stalled_worker_seconds
            if settings.queue == "procrastinate"
            else settings.stale_after_seconds,
            gpu_memory=lambda: app.state.gpu_memory(),
        )
    )
    app.state.gpu_memory = lambda: None  # the embedded worker process replaces it
    app.add_route("/metrics", metrics_endpoint(registry), include_in_schema=False)
    return registry


async def _embedded_worker(
    stack: contextlib.AsyncExitStack, services: Services, queue: InProcessQueue
) -> JobWorker | WorkerProcess | None:
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
        return None
    stack.push_async_callback(run_in_threadpool, worker.stop)
    queue.add_waker(worker.wake)
    stack.enter_context(services.notifier.signalling())
    return worker


@contextlib.contextmanager
def _listening(settings: Settings, services: Services) -> contextlib.Iterator[None]:
    listener = asyncio.create_task(listen(conninfo(settings.database_url), services.notifier))
    try:
        yield
    finally:
        listener.cancel()
