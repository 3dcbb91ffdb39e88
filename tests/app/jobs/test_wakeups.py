"""Wake-ups instead of polling (each test slows polling down, so only the signal under test
can end a wait in time), batches finished together, and the SQLite transaction recipe."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import func, select, update

from app.db import create_db_engine, create_session_factory, read_session, session_scope
from app.jobs import events, notify, repository, runner
from app.jobs.kind import KINDS, JobContext, JobKind
from app.jobs.notify import JobNotifier
from app.jobs.worker import JobWorker
from app.main import create_app
from app.models import LOCAL_TENANT_ID, Job, JobStatus, utcnow

pytestmark = pytest.mark.anyio


class NoParams(BaseModel):
    pass


class Tag(BaseModel):
    tag: str = ""


@contextlib.asynccontextmanager
async def gated_service(
    settings, monkeypatch, result: dict | None = None
) -> AsyncIterator[tuple[object, httpx.AsyncClient, threading.Event]]:
    """The app (lifespan running) and an ASGI client, with a ``gated`` job kind that
    finishes with ``result`` once the yielded event is set (it is set on the way out)."""
    release = threading.Event()
    monkeypatch.setitem(
        KINDS, "gated", JobKind("gated", NoParams, lambda c: release.wait(30) and (result or {}))
    )
    application = create_app(settings)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://ws") as client:
                yield application, client, release
    finally:
        release.set()


def slow_polling(monkeypatch) -> None:
    """Polls 20 s apart: a 15 s long-poll that ends with a terminal job was woken."""
    for name in ("FIRST_DELAY", "MAX_DELAY", "OPEN_POLL_SECONDS"):
        monkeypatch.setattr(events, name, 20.0)


async def cancel_ends_a_long_poll(client: httpx.AsyncClient, job_id: int) -> None:
    """A cancel sent while a long-poll waits ends that wait (polling is slowed down)."""
    waiting = asyncio.create_task(client.get(f"/v1/jobs/{job_id}", params={"wait": 15}))
    await asyncio.sleep(0.2)
    await client.post(f"/v1/jobs/{job_id}/cancel")
    answer = await waiting
    assert answer.status_code == 409 and answer.json()["job"]["status"] == "canceled"


def queued(session_factory, kind: str, params: dict | None = None) -> int:
    with session_scope(session_factory) as session:
        job = Job(tenant_id=LOCAL_TENANT_ID, kind=kind, params=params or {}, max_attempts=3)
        session.add(job)
        session.flush()
        return job.id


async def test_notify_wakes_a_watcher_from_another_thread() -> None:
    notifier = JobNotifier()
    with notifier.watch(7) as changed, notifier.watch(8) as other:
        threading.Timer(0.05, notifier.notify, args=([7],)).start()
        await asyncio.wait_for(changed.wait(), 30)
        assert not other.is_set()
    notifier.notify([7])  # nobody watches any more: a no-op
    assert notifier._watchers == {}


async def test_long_poll_returns_when_the_embedded_worker_finishes(settings, monkeypatch) -> None:
    """With polling slowed to 20 s, only the worker's notification can end the wait."""
    slow_polling(monkeypatch)
    async with gated_service(settings, monkeypatch, {"done": True}) as (application, client,
                                                                       release):
        assert application.state.services.notifier.signals_completions
        job = (await client.post("/v1/jobs", json={"kind": "gated"})).json()
        threading.Timer(0.3, release.set).start()
        done = await client.get(f"/v1/jobs/{job['id']}", params={"wait": 15})
        assert done.json()["status"] == "succeeded"


async def test_cancel_wakes_a_long_poll(settings, monkeypatch) -> None:
    slow_polling(monkeypatch)
    monkeypatch.setitem(KINDS, "idle", JobKind("idle", NoParams, lambda ctx: {}))
    application = create_app(settings.model_copy(update={"embedded_worker": "off"}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://ws") as client:
            job = (await client.post("/v1/jobs", json={"kind": "idle"})).json()
            await cancel_ends_a_long_poll(client, job["id"])


def test_worker_wakes_on_submit_not_on_its_poll(settings, session_factory, monkeypatch) -> None:
    """A 60 s poll interval: the job still runs at once, because enqueue wakes the worker."""
    from app.jobs.queue import InProcessQueue

    ran = threading.Event()
    monkeypatch.setitem(KINDS, "quick", JobKind("quick", NoParams, lambda ctx: ran.set() or {}))
    slow_poll = settings.model_copy(update={"worker_poll_seconds": 60.0})
    worker = JobWorker(session_factory, slow_poll)
    queue = InProcessQueue()
    queue.add_waker(worker.wake)
    worker.start()
    try:
        time.sleep(0.2)  # the worker is now asleep in its 60 s wait
        queued(session_factory, "quick")
        queue.committed()
        assert ran.wait(30)
    finally:
        worker.stop()


def test_a_batch_finishes_in_one_transaction_and_notifies(
    settings, session_factory, monkeypatch
) -> None:
    def run_batch(ctxs: list[JobContext]) -> list:
        return [{"n": ctx.job_id} for ctx in ctxs]

    kind = JobKind(
        "batchy", Tag, lambda ctx: {}, run_batch=run_batch, batch_key=lambda p: p.get("tag", "")
    )
    monkeypatch.setitem(KINDS, "batchy", kind)
    ids = [queued(session_factory, "batchy", {"tag": "a"}) for _ in range(5)]
    notified: list[dict[int, dict]] = []
    worker = JobWorker(session_factory, settings, notify=notified.append)
    assert worker.run_pending() == 1
    # one notification for all five: they were finished together, after one commit
    assert [list(rows) for rows in notified] == [ids]
    assert [row["result"] for row in notified[0].values()] == [{"n": i} for i in ids]
    with session_factory() as session:
        rows = session.execute(select(Job.id, Job.status, Job.result).order_by(Job.id)).all()
    assert rows == [(i, JobStatus.succeeded, {"n": i}) for i in ids]


def test_a_failing_persist_fails_only_its_own_job(
    settings, session_factory, monkeypatch
) -> None:
    def run_batch(ctxs: list[JobContext]) -> list:
        return [{"n": ctx.job_id} for ctx in ctxs]

    ids = [queued(session_factory, "persisty", {"tag": "a"}) for _ in range(3)]

    def persist(session, finished: list[tuple[int, dict]]) -> None:
        if any(job_id == ids[1] for job_id, _ in finished):
            raise RuntimeError("disk full")

    kind = JobKind(
        "persisty",
        Tag,
        lambda ctx: {},
        persist=persist,
        run_batch=run_batch,
        batch_key=lambda p: p.get("tag", ""),
    )
    monkeypatch.setitem(KINDS, "persisty", kind)
    notified: list[dict[int, dict]] = []
    assert runner.run_job(ids[0], session_factory, settings, "w", notified.append)
    assert [sorted(rows) for rows in notified] == [ids]
    with session_factory() as session:
        found = {row.id: row for row in session.scalars(select(Job))}
    # the one whose rows could not be stored fails, saying why; the others are untouched
    assert [found[i].status for i in ids] == [
        JobStatus.succeeded, JobStatus.failed, JobStatus.succeeded
    ]  # fmt: skip
    assert "disk full" in (found[ids[1]].error or "")


def test_a_lost_job_in_a_batch_is_not_written(settings, session_factory, monkeypatch) -> None:
    ids = [queued(session_factory, "losing", {"tag": "a"}) for _ in range(3)]

    def run_batch(ctxs: list[JobContext]) -> list:
        with session_scope(session_factory) as session:  # another worker took the second
            session.execute(update(Job).where(Job.id == ids[1]).values(worker_id="thief"))
        return [{"n": ctx.job_id} for ctx in ctxs]

    kind = JobKind(
        "losing", Tag, lambda ctx: {}, run_batch=run_batch, batch_key=lambda p: p.get("tag", "")
    )
    monkeypatch.setitem(KINDS, "losing", kind)
    assert runner.run_job(ids[0], session_factory, settings, "w")
    with session_factory() as session:
        rows = dict(session.execute(select(Job.id, Job.result)).all())
    assert [rows[i] for i in ids] == [{"n": ids[0]}, None, {"n": ids[2]}]


def test_claim_next_takes_the_oldest_queued_job_once(settings, session_factory) -> None:
    first, second = queued(session_factory, "x"), queued(session_factory, "y")
    assert repository.claim_next(session_factory, "w1")[:3] == (first, 1, "x")
    assert repository.claim_next(session_factory, "w2")[:3] == (second, 1, "y")
    assert repository.claim_next(session_factory, "w3") is None


def test_sqlite_write_transactions_begin_immediate_and_reads_deferred(tmp_path) -> None:
    """SQLAlchemy's pysqlite recipe: a session's transaction begins IMMEDIATE (it holds the
    write lock from its start, so a read-then-write never fails to upgrade), a read-only
    one begins deferred; eight threads that read then write all land."""
    from sqlalchemy import event

    from app.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    engine = create_db_engine(url)
    factory = create_session_factory(engine)
    begins: list[str] = []
    listener = lambda conn, cursor, sql, *args: sql.startswith("BEGIN") and begins.append(sql)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with session_scope(factory) as session:
            session.add(Job(tenant_id=LOCAL_TENANT_ID, kind="w", params={}, max_attempts=1))
        with read_session(factory) as session:
            session.scalar(select(func.count()).select_from(Job))
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert begins == ["BEGIN IMMEDIATE", "BEGIN"]

    errors: list[BaseException] = []

    def read_then_write() -> None:
        try:
            for _ in range(25):
                with session_scope(factory) as session:
                    count = session.scalar(select(func.count()).select_from(Job))
                    session.add(
                        Job(
                            tenant_id=LOCAL_TENANT_ID, kind="w", params={"seen": count},
                            max_attempts=1,
                        )
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read_then_write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 201
    engine.dispose()


async def test_finished_rows_wake_every_watcher_and_are_remembered() -> None:
    notifier = JobNotifier()
    row = {
        "id": 3, "tenant_id": LOCAL_TENANT_ID, "kind": "k", "status": JobStatus.succeeded,
        "progress": 1.0, "params": {},
        "result": {"ok": True}, "error": None, "attempts": 1,
        "max_attempts": 3, "cancel_requested": False, "worker_id": "w",
        "created_at": utcnow(), "started_at": utcnow(), "finished_at": utcnow(),
        "heartbeat_at": None,
    }  # fmt: skip
    assert notifier.terminal(3, LOCAL_TENANT_ID) is None
    with notifier.watch(3) as first, notifier.watch(3) as second:
        threading.Timer(0.05, notifier.finished, args=({3: row},)).start()
        await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), 30)
    assert notifier.terminal(3, LOCAL_TENANT_ID).result == {"ok": True}
    assert notifier.terminal(3, LOCAL_TENANT_ID + 1) is None  # only its tenant is answered
    notifier.finished({n: {**row, "id": n} for n in range(4, 4 + notify.REMEMBERED_JOBS)})
    assert notifier.terminal(3, LOCAL_TENANT_ID) is None  # forgotten: a reader reads the row


async def test_a_finished_job_is_answered_without_reading_its_row(settings, monkeypatch) -> None:
    """The embedded worker hands its terminal rows to the notifier: a long-poll for a job
    queued here waits without reading, and the answer (and later GETs) need no read; the
    JSON is the same as a read of the row gives. (Polling slowed to 20 s.)"""
    slow_polling(monkeypatch)
    reads: list[int] = []
    read_job = events.read_job
    monkeypatch.setattr(
        events, "read_job", lambda s, i, t: reads.append(i) or read_job(s, i, t)
    )
    async with gated_service(settings, monkeypatch, {"x": 1}) as (application, client, release):
        services = application.state.services
        job = (await client.post("/v1/jobs", json={"kind": "gated"})).json()
        accepted = await client.post(
            "/v1/predictions", json={"checkpoint_id": 99, "metanetwork": "x"}
        )
        assert accepted.status_code == 404  # refused requests queue nothing
        threading.Timer(0.3, release.set).start()
        done = await client.get(f"/v1/jobs/{job['id']}", params={"wait": 15})
        assert done.status_code == 200 and done.json()["status"] == "succeeded"
        assert done.json()["result"] == {"x": 1}
        again = await client.get(f"/v1/jobs/{job['id']}")
        assert reads == []
        assert (
            again.content
            == done.content
            == events.job_response(read_job(services, job["id"], LOCAL_TENANT_ID)).body
        )
        assert again.headers["content-type"] == "application/json"


async def test_cancel_of_a_job_queued_here_still_wakes_a_long_poll(settings, monkeypatch) -> None:
    """A long-poll that skipped its first read (the job was queued here) reads the row
    after any wake-up: a cancel is not a finish the worker reports."""
    slow_polling(monkeypatch)
    async with gated_service(settings, monkeypatch) as (application, client, _):
        busy = (await client.post("/v1/jobs", json={"kind": "gated"})).json()
        job = (await client.post("/v1/jobs", json={"kind": "gated"})).json()
        assert application.state.services.notifier.is_open(job["id"], LOCAL_TENANT_ID)
        await cancel_ends_a_long_poll(client, job["id"])
        assert busy["id"] != job["id"]


async def test_a_job_queued_here_but_finished_elsewhere_is_still_seen(
    settings, session_factory, monkeypatch
) -> None:
    """A long-poll for a job this process queued still reads the row now and then: a
    worker in another process (here: the row written directly) is not signalled."""
    monkeypatch.setattr(events, "OPEN_POLL_SECONDS", 0.2)
    async with gated_service(settings, monkeypatch) as (_, client, _):
        await client.post("/v1/jobs", json={"kind": "gated"})  # keeps the worker busy
        job = (await client.post("/v1/jobs", json={"kind": "gated"})).json()
        waiting = asyncio.create_task(client.get(f"/v1/jobs/{job['id']}", params={"wait": 15}))
        await asyncio.sleep(0.3)
        with session_scope(session_factory) as session:
            session.execute(
                update(Job)
                .where(Job.id == job["id"])
                .values(status=JobStatus.failed, error="elsewhere", finished_at=utcnow())
            )
        answer = await asyncio.wait_for(waiting, 30)
        assert answer.status_code == 422  # failed while waited for: a problem with the job
        done = answer.json()["job"]
        assert done["status"] == "failed" and done["error"] == "elsewhere"


def test_a_batch_is_persisted_at_once_with_its_committed_rows(
    settings, session_factory, monkeypatch
) -> None:
    """Five finished jobs, some failed: ``persist`` gets the succeeded ones in one call, and
    the rows watchers are handed are the committed rows."""

    def run_batch(ctxs: list[JobContext]) -> list:
        return [{"n": ctx.job_id} if ctx.job_id % 2 else ValueError("odd one") for ctx in ctxs]

    persisted: list[list[tuple[int, dict]]] = []
    kind = JobKind(
        "manyp",
        Tag,
        lambda ctx: {},
        run_batch=run_batch,
        batch_key=lambda p: p.get("tag", ""),
        persist=lambda session, finished: persisted.append(finished),
    )
    monkeypatch.setitem(KINDS, "manyp", kind)
    ids = [queued(session_factory, "manyp", {"tag": "a"}) for _ in range(5)]
    notified: list[dict[int, dict]] = []
    claimed = repository.claim_next(session_factory, "w")
    assert runner.run_job(claimed, session_factory, settings, "w", notified.append)
    odd = [i for i in ids if i % 2]
    assert persisted == [[(i, {"n": i}) for i in odd]]
    with session_factory() as session:
        rows = {r.id: r for r in session.execute(select(Job)).scalars()}
    assert [rows[i].status for i in ids] == [
        JobStatus.succeeded if i % 2 else JobStatus.failed for i in ids
    ]
    assert list(notified[0]) == ids
    for job_id, row in notified[0].items():
        assert row["status"] == rows[job_id].status and row["result"] == rows[job_id].result
        assert row["error"] == rows[job_id].error and row["finished_at"] is not None


def test_connections_outlive_a_burst_of_concurrent_sessions(session_factory) -> None:
    """Each request thread keeps a pooled connection: a burst of 20 concurrent sessions
    (more than SQLAlchemy's default pool of 5 + 10) opens 20 and closes none of them, so
    the next burst opens nothing."""
    engine = session_factory.kw["bind"]
    opened: list[int] = []
    from sqlalchemy import event

    listener = lambda *_: opened.append(1)  # noqa: E731
    event.listen(engine, "connect", listener)
    barrier = threading.Barrier(20)

    def one() -> None:
        with read_session(session_factory) as session:
            session.execute(select(func.count(Job.id))).scalar()
            barrier.wait(timeout=10)

    try:
        for _ in range(2):
            threads = [threading.Thread(target=one) for _ in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        event.remove(engine, "connect", listener)
    assert len(opened) == 20
    assert engine.pool.checkedin() == 20
