"""Datasets and merges over HTTP on the embedded default."""

from __future__ import annotations

import httpx
import pytest
import torch
from conftest import Files, assert_problem, upload
from sqlalchemy import func, select

import graphs
from app.db import create_db_engine, create_session_factory
from app.models import Checkpoint, Job, JobStatus, Merge
from app.settings import Settings

pytestmark = pytest.mark.anyio


async def test_merge_with_dataset_stores_curves_and_a_loadable_checkpoint(
    client: httpx.AsyncClient, files: Files, settings: Settings
) -> None:
    a, b = await upload(client, files.net_a), await upload(client, files.net_b)
    dataset = await client.post(
        "/v1/datasets", files={"file": ("digits.safetensors", files.dataset.read_bytes())}
    )
    assert dataset.status_code == 201, dataset.text
    assert dataset.json()["x_shape"] == [200, 64] and dataset.json()["num_classes"] == 10
    again = await client.post(
        "/v1/datasets", files={"file": ("digits.safetensors", files.dataset.read_bytes())}
    )
    assert again.status_code == 200 and again.json()["id"] == dataset.json()["id"]

    response = await client.post(
        "/v1/merges?wait=120",
        json={"checkpoints": [a, b], "dataset_id": dataset.json()["id"], "curve_points": 5},
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded", job

    (merge,) = (await client.get("/v1/merges")).json()["items"]
    assert merge["job_id"] == job["id"] and merge["checkpoints"] == [a, b]
    assert merge["method"] == "weight" and merge["lam"] == 0.5
    assert merge["barrier"] is not None
    curves = merge["result"]["curves"]
    for path in ("naive", "aligned"):
        assert curves[path]["lambdas"] == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert len(curves[path]["losses"]) == len(curves[path]["accuracies"]) == 5
    assert merge["barrier"] == curves["aligned"]["barrier"]
    (match,) = merge["result"]["matches"]
    assert match["permutations"]["neurons"] == 16
    assert {"load_ms", "merge_ms", "evaluate_ms", "total_ms"} <= merge["timings"].keys()
    assert (await client.get(f"/v1/merges/{merge['id']}")).json() == merge
    by_input = (await client.get("/v1/merges", params={"checkpoint_id": b})).json()["items"]
    assert [m["id"] for m in by_input] == [merge["id"]]

    merged_id = merge["result_checkpoint_id"]
    merged = (await client.get(f"/v1/checkpoints/{merged_id}")).json()
    parents = [(await client.get(f"/v1/checkpoints/{i}")).json()["sha256"] for i in (a, b)]
    assert merged["lineage"]["parents"] == parents  # the lineage the file itself carries
    assert merge["result"]["bn_stats"] == merged["lineage"]["bn_stats"] == "none"  # no BatchNorm
    download = await client.get(f"/v1/checkpoints/{merged_id}/file")
    assert download.status_code == 200
    loaded = graphs.load(download.content)
    assert loaded.architecture == graphs.load(files.net_a).architecture
    module = graphs.build_module(loaded.architecture)
    module.load_state_dict(loaded.tensors)
    assert module(torch.zeros(3, 64)).shape == (3, 10)
    assert "weightscope.lineage" in loaded.metadata
    in_use = await client.delete(f"/v1/checkpoints/{b}")
    assert_problem(in_use, 409, "used by")

    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            assert session.scalar(select(func.count()).select_from(Merge)) == 1
            assert session.scalar(select(func.count()).select_from(Checkpoint)) == 3
            assert {j.status for j in session.scalars(select(Job))} == {JobStatus.succeeded}
    finally:
        engine.dispose()


async def test_merge_of_three_without_data(client: httpx.AsyncClient, files: Files) -> None:
    ids = [await upload(client, p) for p in (files.net_a, files.net_b, files.net_c)]
    response = await client.post("/v1/merges?wait=120", json={"checkpoints": ids})
    job = response.json()
    assert job["status"] == "succeeded", job
    merge = (await client.get("/v1/merges")).json()["items"][0]
    assert merge["checkpoints"] == ids and merge["barrier"] is None and merge["lam"] is None
    # the merge's result is typed (MergeResult): what a merge without data lacks is null
    assert len(merge["result"]["matches"]) == 2 and merge["result"]["curves"] is None


async def test_merge_refusals_are_problems_at_request_time(
    client: httpx.AsyncClient, files: Files
) -> None:
    a, b = await upload(client, files.net_a), await upload(client, files.net_b)
    other = await upload(client, files.other_arch)
    bad = await client.post(
        "/v1/datasets", files={"file": ("bad.safetensors", files.bad_dataset.read_bytes())}
    )
    assert bad.status_code == 201
    assert_problem(await client.post("/v1/merges", json={"checkpoints": [a, 999]}), 404, "999")
    assert_problem(
        await client.post("/v1/merges", json={"checkpoints": [a, other]}),
        422,
        "different architectures",
    )
    assert_problem(
        await client.post(
            "/v1/merges", json={"checkpoints": [a, b], "dataset_id": bad.json()["id"]}
        ),
        422,
        "shape [10]",
    )
    assert_problem(
        await client.post("/v1/merges", json={"checkpoints": [a, b], "dataset_id": 999}),
        404,
        "dataset 999",
    )
    assert_problem(
        await client.post("/v1/merges", json={"checkpoints": [a, b], "method": "activation"}),
        422,
        "needs a dataset",
    )
    assert_problem(await client.post("/v1/merges", json={"checkpoints": [a, a]}), 422, "once")
    assert_problem(await client.post("/v1/merges", json={"checkpoints": [a]}), 422)
    not_a_dataset = await client.post(
        "/v1/datasets", files={"file": ("net.safetensors", files.net_a.read_bytes())}
    )
    assert_problem(not_a_dataset, 422, "'x' and 'y'")
    assert (await client.get("/v1/jobs")).json()["items"] == []


async def test_job_events_stream_until_the_terminal_state(
    client: httpx.AsyncClient, files: Files
) -> None:
    a = await upload(client, files.net_a)
    job = (await client.post(f"/v1/checkpoints/{a}/inspect")).json()
    events = []
    async with client.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(__import__("json").loads(line.removeprefix("data: ")))
    assert events and events[-1]["status"] == "succeeded"
    assert [e for e in events if e["status"] in ("succeeded", "failed", "canceled")] == events[-1:]
    assert_problem(await client.get("/v1/jobs/999/events"), 404, "job 999")


async def test_ot_fusion_merges_networks_of_different_widths(
    client: httpx.AsyncClient, files: Files
) -> None:
    a, other = await upload(client, files.net_a), await upload(client, files.other_arch)
    dataset = await client.post(
        "/v1/datasets", files={"file": ("digits.safetensors", files.dataset.read_bytes())}
    )
    refused = await client.post("/v1/merges", json={"checkpoints": [a, other]})
    assert_problem(refused, 422, "method 'ot'")

    response = await client.post(
        "/v1/merges?wait=120",
        json={"checkpoints": [a, other], "method": "ot", "dataset_id": dataset.json()["id"],
              "curve_points": 3},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded", response.json()
    (merge,) = (await client.get("/v1/merges")).json()["items"]
    assert merge["method"] == "ot" and merge["result"]["fusion"]["target"] == 0
    curves = merge["result"]["curves"]
    assert curves["naive"] is None  # no straight path between different widths
    assert curves["aligned"]["lambdas"] == [0.0, 0.5, 1.0]
    assert merge["barrier"] == curves["aligned"]["barrier"]
    download = await client.get(f"/v1/checkpoints/{merge['result_checkpoint_id']}/file")
    fused = graphs.load(download.content)
    assert fused.architecture == graphs.load(files.net_a).architecture  # the target's widths


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"method": "ste"}, "needs a dataset"),
        ({"method": "activation", "canonical": True}, "canonical applies"),
        ({"method": "weight", "target": 1}, "target applies"),
        ({"method": "ot", "target": 2}, "target must index"),
    ],
)
async def test_merge_options_that_do_not_fit_the_method_are_refused(
    client: httpx.AsyncClient, files: Files, body: dict, detail: str
) -> None:
    a, b = await upload(client, files.net_a), await upload(client, files.net_b)
    response = await client.post("/v1/merges", json={"checkpoints": [a, b], **body})
    assert_problem(response, 422, detail)
