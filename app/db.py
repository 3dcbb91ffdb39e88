"""Engine and session factory; SQLite gets SQLAlchemy's documented pysqlite recipe.

pysqlite begins a transaction only before the first INSERT/UPDATE/DELETE, so a transaction
that reads and then writes could find the write lock taken when it upgrades, and fail at
once instead of waiting. The recipe turns pysqlite's own BEGIN off and emits ``BEGIN
IMMEDIATE`` from the engine's ``begin`` event: a write transaction takes the write lock at
its start and waits for it in SQLite's busy handler. Transactions that only read say so
(``READ_ONLY``) and begin deferred, so long-polls and list pages never queue for the
writer (in WAL mode readers and the writer do not block each other).
https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

SessionFactory = sessionmaker[Session]

# Execution option of a read-only transaction: on SQLite it begins deferred.
READ_ONLY = {"weightscope_read_only": True}

# One pooled connection per thread that may hold a session at once (the API's request
# threadpool, 40 by default, plus the embedded worker's threads), opened lazily.
POOL_SIZE = 40
POOL_OVERFLOW = 10


def create_db_engine(url: str) -> Engine:
    """Make an engine; for SQLite also create the file's folder, set WAL, FKs, busy wait
    and the explicit-BEGIN recipe."""
    parsed = make_url(url)
    pool: dict[str, int] = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **pool)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        pool = {}  # one connection per thread (SQLAlchemy's SingletonThreadPool)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **pool)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN; _sqlite_begin does
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")  # wait for the write lock instead of failing
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    read_only = connection.get_execution_options().get("weightscope_read_only", False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: SessionFactory) -> Iterator[Session]:
    """One write transaction: committed on success, rolled back on any error."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def read_session(factory: SessionFactory) -> Iterator[Session]:
    """A session whose transactions only read (deferred BEGIN on SQLite)."""
    with factory() as session:
        session.connection(execution_options=READ_ONLY)
        yield session


def database_unreachable(exc: BaseException) -> bool:
    """Whether an error means the database cannot be reached right now (down, restarting,
    connection dropped, SQLite file locked past its busy wait, no pooled connection free
    in time), as opposed to a bad statement: the former is a 503 worth retrying, the
    latter a bug."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, PoolTimeout):  # every connection busy: overloaded, not broken
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def when_reachable(step: Callable[[], T], wait_s: float) -> T:
    """``step()``, retried while the database cannot be reached (:func:`database_unreachable`)
    for up to ``wait_s``: a process starting beside a restarting database waits for it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return step()
        except Exception as exc:
            if not database_unreachable(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
