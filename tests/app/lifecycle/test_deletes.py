"""DELETE of every record: what goes with it, what stays, 409 naming what uses a record,
``?cascade=true``, 404 for unknown and for another tenant's ids, files removed once no
row names them."""

from __future__ import annotations

import asyncio
import threading

import pytest
from _lifecycle_files import eval_set_bytes, mlp_bytes, upload
from pydantic import BaseModel
from sqlalchemy import func, select

from app.jobs.kind import KINDS, JobContext, JobKind
from app.models import (
    LOCAL_TENANT_ID,
    Checkpoint,
    Dataset,
    Job,
    JobStatus,
    Merge,
    MergeInput,
    Prediction,
    Tenant,
)

pytestmark = pytest.mark.anyio


def count(session_factory, model, **where) -> int:
    with session_factory() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(session.scalar(query) or 0)


def add_prediction(session_factory, checkpoint_id: int, tenant_id: int = 1) -> tuple[int, int]:
    """A finished predict job and its prediction row, as a worker leaves them."""
    with session_factory() as session:
        job = Job(
            kind="predict", status=JobStatus.succeeded, tenant_id=tenant_id,
            params={"checkpoint_id": checkpoint_id, "metanetwork": "m"}, result={"label": "x"},
        )
        session.add(job)
        session.flush()
        prediction = Prediction(job_id=job.id, checkpoint_id=checkpoint_id, tenant_id=tenant_id)
        session.add(prediction)
        session.commit()
        return prediction.id, job.id


async def merged(client, a: int, b: int) -> dict:
    """A real merge job of a and b; its merge row."""
    job = (await client.post("/v1/merges?wait=60", json={"checkpoints": [a, b]})).json()
    assert job["status"] == "succeeded", job
    page = (await client.get("/v1/merges", params={"job_id": job["id"]})).json()
    return page["items"][0]


async def test_delete_prediction_takes_its_job_and_leaves_the_checkpoint(
    client, session_factory, assert_problem
) -> None:
    checkpoint = (await upload(client, mlp_bytes(1))).json()
    prediction_id, job_id = add_prediction(session_factory, checkpoint["id"])
    assert (await client.delete(f"/v1/predictions/{prediction_id}")).status_code == 204
    assert_problem(await client.get(f"/v1/predictions/{prediction_id}"), 404)
    assert_problem(await client.get(f"/v1/jobs/{job_id}"), 404)
    assert (await client.get(f"/v1/checkpoints/{checkpoint['id']}/file")).status_code == 200
    assert_problem(await client.delete(f"/v1/predictions/{prediction_id}"), 404, "does not exist")
    # nothing uses the checkpoint any more
    assert (await client.delete(f"/v1/checkpoints/{checkpoint['id']}")).status_code == 204


async def test_merge_delete_and_checkpoints_it_names(
    client, session_factory, assert_problem, assert_consistent
) -> None:
    a = (await upload(client, mlp_bytes(1))).json()["id"]
    b = (await upload(client, mlp_bytes(2))).json()["id"]
    merge = await merged(client, a, b)
    result = merge["result_checkpoint_id"]
    body = assert_problem(await client.delete(f"/v1/checkpoints/{a}"), 409, "used by 1 merge")
    assert f"(id {merge['id']})" in body["detail"] and "cascade=true" in body["detail"]
    assert_problem(await client.delete(f"/v1/checkpoints/{result}"), 409, "1 merge")

    assert (await client.delete(f"/v1/merges/{merge['id']}")).status_code == 204
    assert_problem(await client.get(f"/v1/merges/{merge['id']}"), 404)
    assert_problem(await client.get(f"/v1/jobs/{merge['job_id']}"), 404)
    assert count(session_factory, MergeInput) == 0
    # the merged checkpoint is a checkpoint like any other: it stays, and can now go
    assert (await client.get(f"/v1/checkpoints/{result}/file")).status_code == 200
    for checkpoint_id in (a, b, result):
        assert (await client.delete(f"/v1/checkpoints/{checkpoint_id}")).status_code == 204
    assert assert_consistent()["files"] == set()


async def test_cascade_deletes_what_uses_the_checkpoint_and_nothing_else(
    client, session_factory, assert_problem, assert_consistent
) -> None:
    a = (await upload(client, mlp_bytes(1))).json()
    b = (await upload(client, mlp_bytes(2))).json()
    merge = await merged(client, a["id"], b["id"])
    prediction_id, prediction_job = add_prediction(session_factory, a["id"])
    kept_prediction, _ = add_prediction(session_factory, b["id"])
    body = assert_problem(await client.delete(f"/v1/checkpoints/{a['id']}"), 409)
    assert f"1 prediction (id {prediction_id})" in body["detail"]
    assert f"1 merge (id {merge['id']})" in body["detail"]

    response = await client.delete(f"/v1/checkpoints/{a['id']}", params={"cascade": "true"})
    assert response.status_code == 204, response.text
    for path in (
        f"/v1/checkpoints/{a['id']}", f"/v1/predictions/{prediction_id}",
        f"/v1/jobs/{prediction_job}", f"/v1/merges/{merge['id']}", f"/v1/jobs/{merge['job_id']}",
    ):
        assert_problem(await client.get(path), 404)
    for path in (
        f"/v1/checkpoints/{b['id']}/file", f"/v1/predictions/{kept_prediction}",
        f"/v1/checkpoints/{merge['result_checkpoint_id']}/file",
    ):
        assert (await client.get(path)).status_code == 200, path
    state = assert_consistent()
    assert a["blob_sha256"] not in state["files"] and b["blob_sha256"] in state["files"]


async def test_delete_job_takes_what_it_produced(client, session_factory, assert_problem) -> None:
    a = (await upload(client, mlp_bytes(1))).json()["id"]
    b = (await upload(client, mlp_bytes(2))).json()["id"]
    merge = await merged(client, a, b)
    assert (await client.delete(f"/v1/jobs/{merge['job_id']}")).status_code == 204
    assert_problem(await client.get(f"/v1/merges/{merge['id']}"), 404)
    assert count(session_factory, Merge) == 0 and count(session_factory, MergeInput) == 0
    assert (await client.get(f"/v1/checkpoints/{merge['result_checkpoint_id']}")).status_code == 200
    assert_problem(await client.delete(f"/v1/jobs/{merge['job_id']}"), 404)


class NoParams(BaseModel):
    pass


@pytest.fixture
def blocking_kind(monkeypatch):
    """A kind that reports progress until released, and records the jobs that ran."""
    started, release, ran = threading.Event(), threading.Event(), []

    def run(ctx: JobContext) -> dict:
        ran.append(ctx.job_id)
        ctx.min_progress_interval = 0.0
        started.set()
        release.wait(30)
        for step in range(10):
            ctx.progress(step / 10)
        return {"finished": True}

    monkeypatch.setitem(KINDS, "blocking", JobKind("blocking", NoParams, run))
    return started, release, ran


async def test_deleting_running_and_queued_jobs_cancels_them(
    client, session_factory, blocking_kind, assert_problem
) -> None:
    started, release, ran = blocking_kind
    running = (await client.post("/v1/jobs", json={"kind": "blocking"})).json()["id"]
    assert started.wait(30)
    queued = (await client.post("/v1/jobs", json={"kind": "blocking"})).json()["id"]
    assert (await client.delete(f"/v1/jobs/{running}")).status_code == 204
    assert (await client.delete(f"/v1/jobs/{queued}")).status_code == 204
    assert_problem(await client.get(f"/v1/jobs/{running}"), 404)
    release.set()
    # the one worker runs jobs in order: once a later job finished, the deleted ones are done
    later = (await client.post("/v1/jobs?wait=30", json={"kind": "blocking"})).json()["id"]
    final = (await client.get(f"/v1/jobs/{later}", params={"wait": 30})).json()
    assert final["status"] == "succeeded"
    assert ran == [running, later]  # the queued one never ran
    assert count(session_factory, Job) == 1  # the stopped one wrote nothing back
    assert_problem(await client.get(f"/v1/jobs/{running}", params={"wait": 1}), 404)


async def test_delete_dataset_with_and_without_cascade(
    client, session_factory, assert_problem, assert_consistent
) -> None:
    dataset = (await upload(client, eval_set_bytes(1), "/v1/datasets")).json()
    a = (await upload(client, mlp_bytes(1))).json()["id"]
    b = (await upload(client, mlp_bytes(2))).json()["id"]
    job = (
        await client.post(
            "/v1/merges?wait=60", json={"checkpoints": [a, b], "dataset_id": dataset["id"]}
        )
    ).json()
    assert job["status"] == "succeeded", job
    merge_id = (await client.get("/v1/merges", params={"job_id": job["id"]})).json()["items"][0]
    body = assert_problem(await client.delete(f"/v1/datasets/{dataset['id']}"), 409)
    assert f"1 merge (id {merge_id['id']})" in body["detail"]
    response = await client.delete(f"/v1/datasets/{dataset['id']}?cascade=true")
    assert response.status_code == 204, response.text
    assert_problem(await client.get(f"/v1/datasets/{dataset['id']}"), 404)
    assert_problem(await client.get(f"/v1/merges/{merge_id['id']}"), 404)
    assert dataset["sha256"] not in assert_consistent()["files"]
    assert_problem(await client.delete(f"/v1/datasets/{dataset['id']}"), 404)


async def test_a_blob_named_by_a_checkpoint_and_a_dataset_stays_for_the_other(
    client, assert_consistent
) -> None:
    data = eval_set_bytes(2)
    checkpoint = (await upload(client, data)).json()
    dataset = (await upload(client, data, "/v1/datasets")).json()
    assert checkpoint["blob_sha256"] == dataset["sha256"]  # one file for both
    assert (await client.delete(f"/v1/checkpoints/{checkpoint['id']}")).status_code == 204
    assert dataset["sha256"] in assert_consistent()["files"]
    assert (await client.delete(f"/v1/datasets/{dataset['id']}")).status_code == 204
    assert assert_consistent()["files"] == set()


async def test_another_tenants_records_are_404_and_stay(
    client, session_factory, assert_problem
) -> None:
    """The local caller cannot delete, nor learn of, tenant 2's records."""
    theirs = (await upload(client, mlp_bytes(3))).json()["id"]
    dataset = (await upload(client, eval_set_bytes(3), "/v1/datasets")).json()["id"]
    with session_factory() as session:
        session.add(Tenant(id=2, name="other"))
        session.flush()
        for model, row_id in ((Checkpoint, theirs), (Dataset, dataset)):
            session.get(model, row_id).tenant_id = 2
        session.commit()
    prediction, job = add_prediction(session_factory, theirs, tenant_id=2)
    with session_factory() as session:
        merge = Merge(tenant_id=2, result_checkpoint_id=theirs)
        session.add(merge)
        session.commit()
        merge_id = merge.id
    for path in (
        f"/v1/checkpoints/{theirs}", f"/v1/checkpoints/{theirs}?cascade=true",
        f"/v1/datasets/{dataset}", f"/v1/predictions/{prediction}", f"/v1/jobs/{job}",
        f"/v1/merges/{merge_id}",
    ):
        assert_problem(await client.delete(path), 404, "does not exist")
    for model in (Checkpoint, Dataset, Prediction, Job, Merge):
        assert count(session_factory, model, tenant_id=2) == 1, model


async def test_a_watched_job_that_is_deleted_ends_its_event_stream(
    client, blocking_kind
) -> None:
    started, release, _ = blocking_kind
    job = (await client.post("/v1/jobs", json={"kind": "blocking"})).json()["id"]
    assert started.wait(30)
    stream = asyncio.create_task(client.get(f"/v1/jobs/{job}/events"))
    waiting = asyncio.create_task(client.get(f"/v1/jobs/{job}", params={"wait": 30}))
    await asyncio.sleep(0.3)  # both are watching
    assert (await client.delete(f"/v1/jobs/{job}")).status_code == 204
    events = (await asyncio.wait_for(stream, 30)).text
    assert "event: job" in events and events.rstrip().splitlines()[-2] == "event: deleted"
    assert (await asyncio.wait_for(waiting, 30)).status_code == 404
    release.set()


async def test_a_checkpoint_that_comes_into_use_while_deleted_stays(
    client, settings, session_factory, assert_problem, assert_consistent
) -> None:
    """A worker's result naming the checkpoint, committed while its delete runs: 409, and
    nothing of the delete happened."""
    checkpoint = (await upload(client, mlp_bytes(1))).json()
    with session_factory() as worker:  # the worker's finishing transaction, not yet committed
        worker.add(Prediction(checkpoint_id=checkpoint["id"], tenant_id=LOCAL_TENANT_ID))
        worker.flush()
        deleting = asyncio.create_task(client.delete(f"/v1/checkpoints/{checkpoint['id']}"))
        await asyncio.sleep(0.2)  # on PostgreSQL it now waits for the row; SQLite: for the writer
        worker.commit()
    assert_problem(await asyncio.wait_for(deleting, 30), 409, "checkpoint")
    assert (await client.get(f"/v1/checkpoints/{checkpoint['id']}/file")).status_code == 200
    assert checkpoint["blob_sha256"] in assert_consistent()["files"]
