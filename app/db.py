"""Engine and session factory; SQLite gets the pragmas that make it a safe shared store.

SQLite has one writer at a time. A connection that finds the write lock taken sleeps in
SQLite's busy handler, whose naps grow from 1 ms to 100 ms, so writers contending for it
(the API's request threads committing new jobs, the embedded worker claiming and finishing
them) waited up to a hundred milliseconds for a lock held for one. Writers therefore queue
before SQLite sees them, from a transaction's first write to its commit or rollback: the
threads of a process on a Python lock per database file (woken the moment it is free), and
processes (the API and its worker process) on an advisory ``flock`` of a ``-writer`` file
beside the database, tried every half millisecond.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: processes meet SQLite's own lock
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SessionFactory = sessionmaker[Session]


# Connections a process keeps open: one per thread that can hold a session at once (the
# API's request threadpool, 40 by default, plus the embedded worker's threads). With
# SQLAlchemy's default of 5, most requests under load opened and closed a connection of
# their own (a third of a prediction's submit time on SQLite, with its pragmas). Opened
# lazily, so a process holds only as many as it has used at once.
POOL_SIZE = 40
POOL_OVERFLOW = 10


def create_db_engine(url: str) -> Engine:
    """Make an engine; for SQLite also create the file's folder and set WAL, FKs, busy wait."""
    parsed = make_url(url)
    pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **pool)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        pool = {}  # one connection per thread (SQLAlchemy's SingletonThreadPool)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30, "factory": _WriterQueueConnection},
        **pool,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


WRITER_WAIT_SECONDS = 30.0  # then go on and let SQLite's busy timeout decide, as before
FILE_LOCK_NAP_SECONDS = 0.0005
_writer_locks: dict[str, _FileWriters] = {}
_writer_locks_guard = threading.Lock()
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class _FileWriters:
    """The write turn of one database file: ``lock`` among this process's threads, then a
    ``flock`` among processes (none for an in-memory database, or without ``fcntl``)."""

    def __init__(self, database: str) -> None:
        self.lock = threading.Lock()
        self._path = None if database in ("", ":memory:") or fcntl is None else database + "-writer"
        self._fd: int | None = None
        self._pid = 0
        self._file_held = False

    def acquire(self) -> bool:
        """Take the turn; False when the threads' lock was not had in time (then SQLite's
        busy timeout decides). Past the deadline for the file lock, go on without it."""
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        if not self.lock.acquire(timeout=WRITER_WAIT_SECONDS):
            return False
        if self._path is not None:
            fd = self._file()
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._file_held = True
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(FILE_LOCK_NAP_SECONDS)
        return True

    def release(self) -> None:
        if self._file_held:
            self._file_held = False
            fcntl.flock(self._file(), fcntl.LOCK_UN)
        self.lock.release()

    def _file(self) -> int:
        """This process's descriptor of the lock file (a forked child opens its own: a
        flock belongs to the open file, which a fork would share)."""
        if self._fd is None or self._pid != os.getpid():
            assert self._path is not None
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd


def _writer_lock(database: str) -> _FileWriters:
    key = database if database in ("", ":memory:") else str(Path(database).resolve())
    with _writer_locks_guard:
        found = _writer_locks.get(key)
        if found is None:
            found = _writer_locks[key] = _FileWriters(key)
        return found


class _WriterQueueConnection(sqlite3.Connection):
    """A pysqlite connection whose write transactions queue on the process's lock for the
    file (see the module docstring). pysqlite opens a transaction implicitly before the
    first INSERT/UPDATE/DELETE/REPLACE and keeps it until ``commit``/``rollback``, so that
    is exactly the span the lock is held."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._writer = _writer_lock(str(database))
        self._holding = False

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or _WriterQueueCursor)

    def take_writer_lock(self) -> None:
        if not self._holding:
            # bounded: a thread that somehow waits on itself falls back to SQLite's timeout
            self._holding = self._writer.acquire()

    def release_writer_lock(self) -> None:
        if self._holding:
            self._holding = False
            self._writer.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self.release_writer_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            if not self.in_transaction:
                self.release_writer_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_writer_lock()


class _WriterQueueCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self._before(sql)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        self._before(sql)
        return super().executemany(sql, seq_of_parameters)

    def _before(self, sql: str) -> None:
        connection = self.connection
        if isinstance(connection, _WriterQueueConnection) and (
            sql.lstrip()[:7].upper().startswith(_WRITES)
        ):
            connection.take_writer_lock()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")  # wait for the write lock instead of failing
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: SessionFactory) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error."""
    with factory() as session, session.begin():
        yield session
