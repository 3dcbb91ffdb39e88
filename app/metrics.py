"""``/metrics`` in the Prometheus text format (prometheus-client).

Two sources, one registry per app:

* the API process measures its requests itself (latency histogram and counts by route
  template, method and status class);
* everything about jobs and workers is read from the database at scrape time
  (:class:`StateCollector`): the database is the one place where the API, the embedded
  worker process and any number of ``weightscope worker`` processes already agree, so no
  multiprocess metric files are needed and the figures are the same whichever API replica
  is scraped. Counts by kind and status, queue depth, durations of finished jobs, worker
  heartbeats; the blob store's bytes come from its folder.

GPU memory lives in the process that computes: the embedded worker process reports it to
the API after each job, and a ``weightscope worker`` serves its own ``/metrics`` on
``Settings.worker_metrics_port``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.blobs import TEMP_PREFIX
from app.db import SessionFactory, read_session
from app.models import Job, JobStatus, Worker, utcnow

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 6 * 3600)
BLOB_SCAN_SECONDS = 10.0  # the blob folder is walked at most this often

GpuMemory = dict[str, dict[str, float]]  # device -> {allocated, reserved, peak, total}


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "weightscope_http_request_duration_seconds",
            "Time to answer a request, by route template",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "weightscope_http_requests",
            "Requests answered, by route template and status class",
            ("method", "route", "status"),
            registry=registry,
        )


class MeasureRequests:
    """Pure ASGI middleware: latency and count per route template (``/v1/jobs/{job_id}``,
    never the raw path, so ids do not explode the series); unmatched paths share one."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, route, f"{status // 100}xx").inc()


def _duration_seconds(dialect: str) -> Any:
    if dialect == "sqlite":
        return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0
    return func.extract("epoch", Job.finished_at - Job.started_at)


class StateCollector(Collector):
    """Read at scrape time: jobs, queue depth, job durations, workers, blob store, and
    the embedded worker's GPU memory. A database that cannot be read gives
    ``weightscope_database_up 0`` and the rest of the scrape still succeeds."""

    def __init__(
        self,
        session_factory: SessionFactory,
        queue: str,
        blob_dir: Path,
        stale_after_seconds: float,
        gpu_memory: Callable[[], GpuMemory | None] = lambda: None,
    ) -> None:
        self.session_factory = session_factory
        self.queue = queue
        self.blob_dir = blob_dir
        self.stale_after = dt.timedelta(seconds=stale_after_seconds)
        self.gpu_memory = gpu_memory
        self._blobs: tuple[float, int, int] = (0.0, 0, 0)  # scanned at, bytes, files

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("weightscope_database_up", "1 when the database answered")
        try:
            with read_session(self.session_factory) as session:
                database = list(self._database(session))
            up.add_metric([], 1)
        except SQLAlchemyError as exc:
            log.warning("metrics: the database could not be read: %s", str(exc).splitlines()[0])
            database = []
            up.add_metric([], 0)
        yield up
        yield from database
        yield from self._blob_store()
        yield from gpu_families(self.gpu_memory(), "embedded")

    def _database(self, session: Any) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "weightscope_jobs", "Jobs in the database by kind and status", labels=("kind", "status")
        )
        counts = session.execute(
            select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
        ).all()
        for kind, status, count in counts:
            jobs.add_metric([kind, JobStatus(status).value], count)
        yield jobs
        yield self._queue_depth(session, counts)
        yield self._durations(session)
        yield from self._workers(session)

    def _queue_depth(self, session: Any, counts: list[Any]) -> Metric:
        depth = GaugeMetricFamily(
            "weightscope_queue_depth",
            "Jobs waiting for a worker, by queue (procrastinate: its queues; else: jobs)",
            labels=("queue",),
        )
        if self.queue == "procrastinate":
            rows = session.execute(
                text(
                    "SELECT queue_name, count(*) FROM procrastinate_jobs"
                    " WHERE status = 'todo' GROUP BY queue_name"
                )
            ).all()
            for queue_name, count in rows:
                depth.add_metric([queue_name], count)
        else:
            queued = sum(n for _, status, n in counts if JobStatus(status) == JobStatus.queued)
            depth.add_metric(["jobs"], queued)
        return depth

    def _durations(self, session: Any) -> Metric:
        """A histogram of finished jobs' run times (``started_at`` to ``finished_at`` of
        their last attempt), bucketed by the database in one pass."""
        family = HistogramMetricFamily(
            "weightscope_job_duration_seconds",
            "Run time of finished jobs by kind and final status",
            labels=("kind", "status"),
        )
        seconds = _duration_seconds(session.get_bind().dialect.name)
        finished = (Job.finished_at.is_not(None), Job.started_at.is_not(None))
        columns = [func.sum(case((seconds <= b, 1), else_=0)) for b in JOB_BUCKETS]
        rows = session.execute(
            select(Job.kind, Job.status, func.count(), func.sum(seconds), *columns)
            .where(*finished)
            .group_by(Job.kind, Job.status)
        ).all()
        for kind, status, count, total, *cumulative in rows:
            buckets = [(str(b), int(n or 0)) for b, n in zip(JOB_BUCKETS, cumulative, strict=True)]
            buckets.append(("+Inf", int(count)))
            family.add_metric([kind, JobStatus(status).value], buckets, float(total or 0.0))
        return family

    def _workers(self, session: Any) -> Iterator[Metric]:
        alive = GaugeMetricFamily(
            "weightscope_workers_alive", "Workers that sent a heartbeat recently"
        )
        age = GaugeMetricFamily(
            "weightscope_worker_heartbeat_age_seconds",
            "Seconds since each known worker's last heartbeat",
            labels=("worker",),
        )
        if self.queue == "procrastinate":
            rows = session.execute(
                text(
                    "SELECT id, extract(epoch FROM now() - last_heartbeat)"
                    " FROM procrastinate_workers"
                )
            ).all()
            ages = [(str(name), float(seconds)) for name, seconds in rows]
        else:
            now = utcnow()
            rows = session.execute(select(Worker.id, Worker.heartbeat_at)).all()
            ages = [(worker, (now - _aware(beat)).total_seconds()) for worker, beat in rows]
        for worker, seconds in ages:
            age.add_metric([worker], max(seconds, 0.0))
        limit = self.stale_after.total_seconds()
        alive.add_metric([], sum(1 for _, seconds in ages if seconds <= limit))
        yield alive
        yield age

    def _blob_store(self) -> Iterator[Metric]:
        scanned_at, size, count = self._blobs
        if time.monotonic() - scanned_at > BLOB_SCAN_SECONDS:
            size, count = _folder_size(self.blob_dir)
            self._blobs = (time.monotonic(), size, count)
        yield GaugeMetricFamily(
            "weightscope_blob_store_bytes", "Bytes of stored blobs", value=size
        )
        yield GaugeMetricFamily("weightscope_blob_store_files", "Stored blobs", value=count)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _folder_size(root: Path) -> tuple[int, int]:
    """Bytes and count of the finished blobs under ``root`` (temp files excluded)."""
    size = count = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if name.startswith(TEMP_PREFIX):
                continue
            try:
                size += os.stat(os.path.join(folder, name)).st_size
                count += 1
            except FileNotFoundError:  # deleted while we walked
                continue
    return size, count


def gpu_memory() -> GpuMemory | None:
    """This process's CUDA memory per device, or None where it has not used CUDA (never
    initialises CUDA itself: the API process must not)."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    report: GpuMemory = {}
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        report[str(index)] = {
            "allocated": float(torch.cuda.memory_allocated(index)),
            "reserved": float(torch.cuda.memory_reserved(index)),
            "peak": float(torch.cuda.max_memory_allocated(index)),
            "used": float(total - free),
            "total": float(total),
        }
    return report


def gpu_families(memory: GpuMemory | None, worker: str) -> Iterator[Metric]:
    if not memory:
        return
    family = GaugeMetricFamily(
        "weightscope_worker_gpu_memory_bytes",
        "CUDA memory of a worker: allocated/reserved/peak by torch; used/total on the device",
        labels=("worker", "device", "kind"),
    )
    for device, values in memory.items():
        for kind, value in values.items():
            family.add_metric([worker, device, kind], value)
    yield family


class _WorkerGpu(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from gpu_families(gpu_memory(), str(os.getpid()))


def serve_worker_metrics(port: int | None) -> None:
    """``weightscope worker``: its own /metrics (GPU memory, process figures) on ``port``."""
    if port is None:
        return
    from prometheus_client import REGISTRY

    REGISTRY.register(_WorkerGpu())
    start_http_server(port)
    log.info("worker metrics on port %d", port)


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Any]:
    from starlette.concurrency import run_in_threadpool

    async def metrics(_: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics

