"""Predictions over HTTP on the embedded default (SQLite, in-process worker)."""

from __future__ import annotations

import httpx
import pytest
from conftest import Files, assert_problem, upload
from safetensors.torch import save as safetensors_save
from sqlalchemy import func, select

from app.db import create_db_engine, create_session_factory
from app.jobs.worker import JobWorker
from app.models import Job, JobStatus, Prediction
from app.settings import Settings

pytestmark = pytest.mark.anyio
NAME = "tiny-digits"


async def predict(client: httpx.AsyncClient, checkpoint_id: int, **extra: object) -> dict:
    response = await client.post(
        "/v1/predictions?wait=60",
        json={"checkpoint_id": checkpoint_id, "metanetwork": NAME, **extra},
    )
    assert response.status_code == 200, response.text
    assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    return response.json()


def assert_one_terminal_state_each(settings: Settings) -> None:
    """Every job finished, and every succeeded predict job has exactly one prediction."""
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            jobs = session.scalars(select(Job)).all()
            assert all(job.status.terminal for job in jobs), [(j.id, j.status) for j in jobs]
            for job in jobs:
                rows = session.scalar(
                    select(func.count()).select_from(Prediction).where(Prediction.job_id == job.id)
                )
                expected = 1 if job.kind == "predict" and job.status == JobStatus.succeeded else 0
                assert rows == expected, (job.id, job.kind, job.status, rows)
    finally:
        engine.dispose()


async def test_metanetworks_are_listed_from_their_cards(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/v1/metanetworks")).json()
    assert [m["name"] for m in listing] == [NAME]
    assert listing[0]["task"] == "classification" and len(listing[0]["labels"]) == 10
    assert listing[0]["version"].startswith("test+")
    detail = (await client.get(f"/v1/metanetworks/{NAME}")).json()
    assert detail["domain"]["max_nodes"] > 0 and "card" in detail
    assert_problem(await client.get("/v1/metanetworks/nope"), 404, NAME)


async def test_upload_predict_history(
    client: httpx.AsyncClient, files: Files, settings: Settings
) -> None:
    ids = [await upload(client, path) for path in (files.net_a, files.net_b, files.net_c)]
    jobs = [await predict(client, checkpoint_id) for checkpoint_id in ids]
    assert all(job["status"] == "succeeded" for job in jobs), jobs
    result = jobs[0]["result"]
    assert result["label"] in [str(d) for d in range(10)] and result["in_domain"] is True
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)

    history = (await client.get("/v1/predictions", params={"checkpoint_id": ids[0]})).json()
    (row,) = history["items"]
    assert row["job_id"] == jobs[0]["id"] and row["metanetwork"] == NAME
    assert row["metanetwork_version"].startswith("test+") and row["task"] == "classification"
    assert row["label"] == result["label"] and row["in_domain"] is True
    assert {"load_ms", "graph_ms", "forward_ms", "batch_size"} <= row["timings"].keys()
    assert (await client.get(f"/v1/predictions/{row['id']}")).json() == row

    first = (await client.get("/v1/predictions", params={"limit": 2})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = (
        await client.get("/v1/predictions", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    seen = [r["checkpoint_id"] for r in first["items"] + rest["items"]]
    assert sorted(seen) == sorted(ids) and rest["next_cursor"] is None
    by_name = (await client.get("/v1/predictions", params={"metanetwork": "other"})).json()
    assert by_name["items"] == []
    later = (
        await client.get("/v1/predictions", params={"created_after": row["created_at"]})
    ).json()
    assert row["id"] not in [r["id"] for r in later["items"]]
    assert_one_terminal_state_each(settings)


async def test_upload_and_predict_in_one_request(client: httpx.AsyncClient, files: Files) -> None:
    body = files.net_a.read_bytes()
    response = await client.post(
        f"/v1/predictions?metanetwork={NAME}&wait=60", files={"file": ("a.safetensors", body)}
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded"
    checkpoint = (await client.get(f"/v1/checkpoints/{job['params']['checkpoint_id']}")).json()
    assert checkpoint["filename"] == "a.safetensors"
    assert_problem(
        await client.post("/v1/predictions", files={"file": ("a.safetensors", body)}),
        422,
        "metanetwork",
    )


async def test_refusals_are_problems_at_request_time(
    client: httpx.AsyncClient, files: Files
) -> None:
    a = await upload(client, files.net_a)
    assert_problem(
        await client.post("/v1/predictions", json={"checkpoint_id": 999, "metanetwork": NAME}),
        404,
        "checkpoint 999",
    )
    assert_problem(
        await client.post("/v1/predictions", json={"checkpoint_id": a, "metanetwork": "nope"}),
        404,
        "metanetwork 'nope'",
    )
    other = await upload(client, files.other_io)
    assert_problem(
        await client.post("/v1/predictions", json={"checkpoint_id": other, "metanetwork": NAME}),
        422,
        "outside the domain",
    )
    raw = await client.post(
        "/v1/checkpoints",
        content=safetensors_save({"mystery": __import__("torch").ones(3)}),
        headers={"content-type": "application/octet-stream"},
    )
    assert raw.status_code == 201 and raw.json()["architecture"] is None
    assert_problem(
        await client.post(
            "/v1/predictions", json={"checkpoint_id": raw.json()["id"], "metanetwork": NAME}
        ),
        422,
        "no known architecture",
    )
    assert_problem(await client.post("/v1/predictions", json={"metanetwork": NAME}), 422)
    assert_problem(
        await client.post(
            "/v1/jobs",
            json={"kind": "predict", "params": {"checkpoint_id": 999, "metanetwork": NAME}},
        ),
        404,
    )


async def test_forced_and_worker_side_out_of_domain(
    client: httpx.AsyncClient, files: Files, settings: Settings
) -> None:
    other = await upload(client, files.other_io)
    forced = await predict(client, other, force=True)
    assert forced["status"] == "succeeded" and forced["result"]["in_domain"] is False
    assert forced["result"]["domain_issues"]

    wide = await upload(client, files.wide)  # passes the request-time check, too big for it
    response = await client.post(
        "/v1/predictions?wait=60", json={"checkpoint_id": wide, "metanetwork": NAME}
    )
    # a failed job is not a success: a job-failed problem that carries the job
    problem = assert_problem(response, 422, "outside the domain")
    assert problem["type"].endswith(":job-failed")
    assert response.headers["location"] == f"/v1/jobs/{problem['job']['id']}"
    failed = problem["job"]
    assert failed["status"] == "failed" and "outside the domain" in failed["error"]
    assert "weights (edges)" in failed["error"]  # 4x the widest training graph
    assert (await client.get("/v1/predictions", params={"checkpoint_id": wide})).json()[
        "items"
    ] == []
    assert_one_terminal_state_each(settings)


async def test_queued_predictions_share_one_forward_pass(
    files: Files, tmp_path, settings: Settings
) -> None:
    from app.main import create_app

    quiet = settings.model_copy(update={"embedded_worker": "off", "max_batch": 4})
    application = create_app(quiet)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://ws") as client:
            ids = [await upload(client, p) for p in (files.net_a, files.net_b, files.net_c)]
            for checkpoint_id in [*ids, ids[0], ids[1]]:
                response = await client.post(
                    "/v1/predictions", json={"checkpoint_id": checkpoint_id, "metanetwork": NAME}
                )
                assert response.status_code == 202 and response.json()["status"] == "queued"
            engine = create_db_engine(quiet.database_url)
            try:
                assert JobWorker(create_session_factory(engine), quiet).run_pending() == 2
            finally:
                engine.dispose()
            rows = (await client.get("/v1/predictions")).json()["items"]
    assert len(rows) == 5
    assert sorted(r["timings"]["batch_size"] for r in rows) == [1, 4, 4, 4, 4]
    same = [r for r in rows if r["checkpoint_id"] == ids[0]]
    assert same[0]["probabilities"] == pytest.approx(same[1]["probabilities"], abs=1e-5)
    assert_one_terminal_state_each(quiet)
