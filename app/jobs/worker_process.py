"""The embedded worker as a child process of ``serve``, supervised by the API process.

A worker thread would share the API's interpreter lock, so every millisecond of Python a
micro-batch spends would be one no request is served; in its own process the worker has
its own lock and core and, not being the API process, may use the GPU.

It still behaves as the embedded worker: started and stopped with the app, reporting
through one pipe. The API writes a byte to wake it when a job is queued; the worker sends
back the rows of the jobs it finished, which the API hands to its notifier. A worker that
dies is started again; the jobs it held are requeued by the usual stale-job recovery.
A supervisor thread is all it takes: multiprocessing gives start, join and kill, and the
restart policy is one loop (``_supervise``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from app.jobs.notify import JobNotifier
from app.settings import Settings

log = logging.getLogger(__name__)

WAKE, STOP = b"w", b"s"  # parent -> child
READY = "ready"  # child -> parent, once its worker runs; then finished rows, and
GPU = "gpu"  # (GPU, {device: {kind: bytes}}) after a job, where the child uses a GPU
RESTART_DELAY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 15.0


class WorkerProcess:
    """Parent side: start, wake, supervise and stop the child; hand its rows to the
    notifier from the event loop that ``start`` runs in."""

    def __init__(self, settings: Settings, notifier: JobNotifier, modules: list[str]) -> None:
        self.settings = settings
        self.modules = modules  # the task modules the child imports (they register kinds)
        self.notifier = notifier
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._process: Any = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._lifecycle = threading.Lock()  # no child is launched once stopping is set
        self._supervisor: threading.Thread | None = None
        self._gpu_memory: dict[str, dict[str, float]] | None = None
        self.stop_timeout = STOP_TIMEOUT_SECONDS

    def gpu_memory(self) -> dict[str, dict[str, float]] | None:
        """The child's CUDA memory after its last job (None: it has not used a GPU)."""
        return self._gpu_memory

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._launch()
        self._supervisor = threading.Thread(
            target=self._supervise, name="worker-supervisor", daemon=True
        )
        self._supervisor.start()

    def wake(self) -> None:
        """Called from request threads after a job is committed; never raises (a worker
        that is down finds the job by polling once it is back)."""
        with self._send_lock:
            if self._conn is None:
                return
            with contextlib.suppress(OSError):
                self._conn.send_bytes(WAKE)

    def stop(self) -> None:
        """Ask the child to finish its current job and exit; kill it if it does not. A
        child still starting (importing torch) holds no job: it is terminated at once."""
        with self._lifecycle:
            self._stopping.set()
            process, conn = self._process, self._conn
        if process is None:
            return
        if not self._ready.is_set():
            process.terminate()
        with self._send_lock, contextlib.suppress(OSError):
            if conn is not None:
                conn.send_bytes(STOP)
        process.join(self.stop_timeout)
        if process.is_alive():
            log.warning("embedded worker process %s did not stop; killing it", process.pid)
            process.kill()
            process.join()
        if self._supervisor is not None:
            self._supervisor.join(self.stop_timeout)
        self._detach()

    def _launch(self) -> None:
        with self._lifecycle:
            if self._stopping.is_set():
                return
            self._ready.clear()
            parent_end, child_end = self._context.Pipe(duplex=True)
            process = self._context.Process(
                target=child_main,
                args=(self.settings, child_end, self.modules),
                name="weightscope-worker",
                daemon=True,
            )
            process.start()
            child_end.close()
            with self._send_lock:
                self._process, self._conn = process, parent_end
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._attach, parent_end)
        log.info("embedded worker process %s started", process.pid)

    def _attach(self, conn: Connection) -> None:
        """In the event loop: read the child's messages as they arrive."""
        if self._stopping.is_set() or conn.closed:
            return
        asyncio.get_running_loop().add_reader(conn.fileno(), self._receive, conn)

    def _detach(self) -> None:
        conn = self._conn
        if conn is None or self._loop is None:
            return
        loop = self._loop

        def remove() -> None:
            if not conn.closed:
                loop.remove_reader(conn.fileno())
                conn.close()

        if loop.is_closed():
            conn.close()
        else:  # called from the supervisor or a threadpool thread, never from the loop
            loop.call_soon_threadsafe(remove)

    def _receive(self, conn: Connection) -> None:
        try:
            while conn.poll():
                message = conn.recv()
                if message == READY:
                    self._ready.set()
                elif isinstance(message, tuple) and message[0] == GPU:
                    self._gpu_memory = message[1]
                else:
                    self.notifier.finished(message)
        except (EOFError, OSError):  # the child is gone: the supervisor starts another
            asyncio.get_running_loop().remove_reader(conn.fileno())

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            # wait without reaping: only one thread may join a process; ``stop`` does
            multiprocessing.connection.wait([process.sentinel])
            if self._stopping.is_set():
                return
            process.join()
            log.error(
                "embedded worker process %s exited (code %s); starting another",
                process.pid, process.exitcode,
            )
            self._detach()
            if self._stopping.wait(RESTART_DELAY_SECONDS):
                return
            self._launch()


def child_main(settings: Settings, conn: Connection, modules: list[str]) -> None:
    """The worker process: a ``JobWorker`` that wakes on the parent's bytes and sends the
    rows of the jobs it finishes; it stops when asked, or when the parent is gone."""
    from app.db import create_db_engine, create_session_factory
    from app.device import configure_torch
    from app.jobs.worker import JobWorker
    from app.logs import configure_logging
    from app.metrics import gpu_memory

    # Ctrl-C reaches the whole process group; the API process stops this one in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_format, prefix="worker")
    for name in modules:
        importlib.import_module(name)
    configure_torch(settings, embedded=False)
    engine = create_db_engine(settings.database_url)
    send_lock = threading.Lock()

    def send(rows: dict[int, dict[str, Any]]) -> None:
        memory = gpu_memory()
        with send_lock:
            conn.send(rows)
            if memory is not None:
                conn.send((GPU, memory))

    worker = JobWorker(create_session_factory(engine), settings, notify=send)
    worker.start()
    conn.send(READY)
    try:
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                break  # the API process is gone
            if message == STOP:
                break
            worker.wake()
    finally:
        worker.stop()
        engine.dispose()
    # Stopped: nothing is left to do, and an interpreter that has loaded torch can take
    # longer to tear itself down than the parent waits, which then kills a worker that
    # has already stopped. Flush the logs and leave at once.
    logging.shutdown()
    os._exit(0)
