"""Training metanetworks over HTTP on the real app with its real worker process: train on
a 40-item zoo, predict with the result, train again (a second version), delete; a worker
SIGKILLed mid-training is replaced and the retried job resumes from its last saved epoch
and yields one version; failures leave no rows and no blobs."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from _zoo import TINY, create_zoo, insert_zoo, save_nets, upload_checkpoints
from safetensors.torch import save_file
from sqlalchemy import func, select
from torch import nn

import graphs
from app.blobs import BlobStore
from app.db import create_db_engine, create_session_factory
from app.models import Checkpoint, Job, MetanetworkVersion, TrainingState, Worker
from app.settings import Settings

pytestmark = pytest.mark.anyio


def query(settings: Settings, statement: Any) -> list[Any]:
    engine = create_db_engine(settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            return list(session.execute(statement).all())
    finally:
        engine.dispose()


def blobs_match_rows(settings: Settings) -> None:
    """Every file in the blob store is a checkpoint's or a trained metanetwork's, and vice
    versa: no state blob, no temp file, no orphaned weights (built-ins stay in their folder)."""
    stored = {f"{p.parent.name}{p.name}" for p in BlobStore(settings.blob_dir).files()}
    named = {r[0] for r in query(settings, select(Checkpoint.blob_sha256))}
    named |= {r[0] for r in query(settings, select(MetanetworkVersion.weights_sha256).where(
        MetanetworkVersion.tenant_id.is_not(None)))}
    assert stored == named
    assert query(settings, select(func.count()).select_from(TrainingState)) == [(0,)]


async def finish(client: httpx.AsyncClient, job: dict) -> dict:
    """The job once terminal (``?wait=`` answers a failed or canceled one as a problem
    carrying the job)."""
    while job["status"] in ("queued", "running"):
        body = (await client.get(f"/v1/jobs/{job['id']}?wait=30")).json()
        job = body.get("job", body)
    return job


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str, str]]:
    return save_nets(tmp_path_factory.mktemp("zoo"))


async def test_train_predict_version_delete(
    client: httpx.AsyncClient, settings: Settings, nets: list, assert_problem: Any,
    tmp_path: Path,
) -> None:
    zoo = await create_zoo(client, nets)
    zoo_id = zoo["id"]
    builtins = [m["name"] for m in (await client.get("/v1/metanetworks")).json()]
    assert "digits-cnn-generalization" in builtins

    request = {"name": "scales", "zoo_id": zoo_id, "epochs": 3, "config": TINY}
    job = (await client.post("/v1/metanetworks?wait=120", json=request)).json()
    job = await finish(client, job)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["version"] == 1 and job["result"]["resumed_from_epoch"] == 0
    detail = job["progress_detail"]
    assert detail["epoch"] == 3 and detail["epochs"] == 3
    assert {"train_loss", "val", "val_metric", "eta_s"} <= detail.keys()

    meta = (await client.get("/v1/metanetworks/scales")).json()
    assert meta["version_number"] == 1 and not meta["builtin"] and meta["zoo_id"] == zoo_id
    card = meta["card"]
    assert card["labels"] == ["small", "large"] and card["task"] == "classification"
    assert 0 <= card["metrics"]["test"]["accuracy"] <= 1
    assert 0 <= card["baseline"]["test"]["accuracy"] <= 1 and card["baseline"]["name"] == "statnn"
    assert 0 <= card["conformal"]["test_coverage"] <= 1
    assert [row["epoch"] for row in card["curves"]] == [0, 1, 2]
    assert card["domain"]["io"] and sum(card["zoo"]["splits"].values()) == 40
    assert card["zoo"]["splits"] == {s: zoo["splits"][s]["items"] for s in card["zoo"]["splits"]}
    listing = (await client.get("/v1/metanetworks")).json()
    assert [m["name"] for m in listing][-1] == "scales" and listing[0]["builtin"]

    # predict with it, like with a built-in: in domain, a label from the zoo's classes
    checkpoint = (await client.get("/v1/checkpoints", params={"limit": 1})).json()["items"][0]
    predicted = (await client.post("/v1/predictions?wait=60", json={
        "checkpoint_id": checkpoint["id"], "metanetwork": "scales"})).json()
    predicted = await finish(client, predicted)
    assert predicted["status"] == "succeeded", predicted["error"]
    assert predicted["result"]["label"] in ("small", "large")
    assert predicted["result"]["metanetwork_version"].startswith("1+")
    other_io = await client.post("/v1/predictions", json={
        "checkpoint_id": checkpoint["id"], "metanetwork": "digits-cnn-generalization"})
    assert_problem(other_io, 422, "outside the domain")
    # its domain refuses what it never saw, and permuting hidden neurons changes nothing
    wide = tmp_path / "other-io.safetensors"
    graphs.save(nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)), wide,
                torch.zeros(1, 5))
    outside = await client.post("/v1/checkpoints", files={"file": (wide.name, wide.read_bytes())})
    refused = await client.post("/v1/predictions", json={
        "checkpoint_id": outside.json()["id"], "metanetwork": "scales"})
    assert_problem(refused, 422, "outside the domain of metanetwork 'scales'")
    original = graphs.load(nets[0][0])
    permuted = graphs.random_permutation(original, torch.Generator().manual_seed(7))
    assert not torch.equal(permuted.tensors["0.weight"], original.tensors["0.weight"])
    answers = []
    for ckpt in (original, permuted):
        uploaded = await client.post("/v1/checkpoints", files={
            "file": ("p.safetensors", graphs.checkpoint_bytes(ckpt))})
        job = await finish(client, (await client.post("/v1/predictions", json={
            "checkpoint_id": uploaded.json()["id"], "metanetwork": "scales"})).json())
        answers.append(job["result"]["probabilities"])
    assert answers[0] == pytest.approx(answers[1], abs=1e-5)

    # a second training is version 2; name@1 still answers
    job2 = await finish(client, (await client.post("/v1/metanetworks", json=request)).json())
    assert job2["status"] == "succeeded", job2["error"]
    assert (await client.get("/v1/metanetworks/scales")).json()["version_number"] == 2
    assert (await client.get("/v1/metanetworks/scales@1")).json()["version_number"] == 1
    versions = (await client.get("/v1/metanetworks/scales/versions")).json()
    assert [v["version_number"] for v in versions] == [1, 2]
    old = await finish(client, (await client.post("/v1/predictions", json={
        "checkpoint_id": checkpoint["id"], "metanetwork": "scales@1"})).json())
    assert old["result"]["metanetwork_version"].startswith("1+")
    blobs_match_rows(settings)

    # delete: one version, then the rest; built-ins are refused
    assert (await client.delete("/v1/metanetworks/scales@1")).json()["versions"] == [1]
    assert_problem(await client.get("/v1/metanetworks/scales@1"), 404, "scales@1")
    assert (await client.delete("/v1/metanetworks/scales")).json()["versions"] == [2]
    assert_problem(await client.get("/v1/metanetworks/scales"), 404, "does not exist")
    assert_problem(await client.delete("/v1/metanetworks/digits-cnn-generalization"), 409,
                   "built-in")
    blobs_match_rows(settings)


async def test_a_regression_metanetwork_answers_with_intervals(
    client: httpx.AsyncClient, nets: list
) -> None:
    """Targets in [0, 1] (as measured accuracies are): τ-b, R², MAE beside the baseline, a
    conformal half-width with its test coverage, and answers with an interval."""
    ids = await upload_checkpoints(client, nets)
    items = [{"checkpoint_id": i, "target": (0.2 if label == "small" else 0.7) + n / 200}
             for n, (i, (_, label, _)) in enumerate(zip(ids, nets, strict=True))]
    zoo = await client.post("/v1/zoos", json={"name": "acc", "task": "regression",
                                              "items": items})
    assert zoo.status_code == 201, zoo.text
    # learned queries read class by class (4-input MLPs: 2×2 "images")
    config = TINY | {"queries": 3, "query_side": 2, "query_classes": True}
    job = await finish(client, (await client.post("/v1/metanetworks", json={
        "name": "acc", "zoo_id": zoo.json()["id"], "epochs": 2, "config": config})).json())
    assert job["status"] == "succeeded", job["error"]
    card = (await client.get("/v1/metanetworks/acc")).json()["card"]
    assert card["task"] == "generalization"
    assert (card["config"]["queries"], card["config"]["query_classes"]) == (3, True)
    assert {"tau_b", "r2", "mae"} <= card["metrics"]["test"].keys()
    assert {"tau_b", "r2", "mae"} <= card["baseline"]["test"].keys()
    assert card["conformal"]["half_width"] >= 0 and 0 <= card["conformal"]["test_coverage"] <= 1
    answer = await finish(client, (await client.post("/v1/predictions", json={
        "checkpoint_id": ids[0], "metanetwork": "acc"})).json())
    result = answer["result"]
    low, high = result["interval"]
    assert low <= result["value"] <= high and result["coverage"] == 0.9


async def test_bad_requests_store_nothing(
    client: httpx.AsyncClient, settings: Settings, nets: list, assert_problem: Any
) -> None:
    zoo_id = (await create_zoo(client, nets))["id"]
    # the zoo API refuses a zoo with an empty split; the training request checks again
    small = await insert_zoo(client, settings.database_url, nets[:10] + nets[20:30], "small")
    jobs_before = query(settings, select(func.count()).select_from(Job))
    post = lambda body: client.post("/v1/metanetworks", json=body)  # noqa: E731
    assert_problem(await post({"name": "digits-inr-classifier", "zoo_id": zoo_id}), 409,
                   "built-in")
    assert_problem(await post({"name": "x", "zoo_id": 999}), 404, "zoo 999")
    assert_problem(await post({"name": "x", "zoo_id": zoo_id, "config": {"hidden": 10**6}}),
                   422, "hidden")
    assert_problem(await post({"name": "x", "zoo_id": zoo_id, "config": {"bogus": 1}}), 422,
                   "bogus")
    assert_problem(await post({"name": "a@b", "zoo_id": zoo_id}), 422, "name")
    assert_problem(await post({"name": "x", "zoo_id": small}), 422, "val split")
    assert query(settings, select(func.count()).select_from(Job)) == jobs_before
    # a name already being trained: 409 while the first job runs
    first = (await post({"name": "busy", "zoo_id": zoo_id, "epochs": 200,
                         "config": TINY | {"patience": 1000}})).json()
    assert_problem(await post({"name": "busy", "zoo_id": zoo_id}), 409, "already being trained")
    while not (first.get("progress_detail") or {}).get("epoch"):  # cancel it mid-training
        first = (await client.get(f"/v1/jobs/{first['id']}?wait=0.2")).json()
        assert first["status"] in ("queued", "running"), first
    canceled = (await client.post(f"/v1/jobs/{first['id']}/cancel")).json()
    assert canceled["cancel_requested"]
    assert (await finish(client, first))["status"] == "canceled"
    assert query(settings, select(func.count()).select_from(MetanetworkVersion).where(
        MetanetworkVersion.name == "busy")) == [(0,)]
    blobs_match_rows(settings)


async def test_a_failure_at_training_time_leaves_nothing(
    client: httpx.AsyncClient, settings: Settings, nets: list, tmp_path: Path
) -> None:
    """A zoo item that is no network (plain tensors, no architecture) passes the request's
    counts; the job fails naming it, with no version, state or blob left."""
    broken = tmp_path / "plain.safetensors"
    save_file({"blob": torch.randn(5, 5)}, str(broken))
    (*_, last) = nets
    # the zoo API refuses an item it cannot graph; the job fails on it too, naming it
    zoo_id = await insert_zoo(client, settings.database_url, [*nets[:-1], (broken, *last[1:])],
                              "broken")
    job = (await client.post("/v1/metanetworks", json={
        "name": "broken", "zoo_id": zoo_id, "epochs": 2, "config": TINY})).json()
    job = await finish(client, job)
    assert job["status"] == "failed" and "zoo item 39 (checkpoint" in job["error"], job
    assert query(settings, select(func.count()).select_from(MetanetworkVersion).where(
        MetanetworkVersion.tenant_id.is_not(None))) == [(0,)]
    blobs_match_rows(settings)


async def test_sigkilled_worker_resumes_training_and_yields_one_version(
    client: httpx.AsyncClient, settings: Settings, nets: list
) -> None:
    zoo_id = (await create_zoo(client, nets))["id"]
    request = {"name": "resumed", "zoo_id": zoo_id, "epochs": 40,
               "config": TINY | {"patience": 1000}}
    job = (await client.post("/v1/metanetworks", json=request)).json()

    async def saved_epoch() -> int:
        rows = query(settings, select(TrainingState.epoch).where(
            TrainingState.job_id == job["id"]))
        return rows[0][0] if rows else 0

    while (await saved_epoch()) < 1:
        state = (await client.get(f"/v1/jobs/{job['id']}?wait=0.2")).json()
        assert state["status"] in ("queued", "running"), state
    killed_at = await saved_epoch()
    (worker_id,) = query(settings, select(Job.worker_id).where(Job.id == job["id"]))[0]
    (pid,) = query(settings, select(Worker.pid).where(Worker.id == worker_id))[0]
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)

    job = await finish(client, job)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2 and job["worker_id"] != worker_id
    result = job["result"]
    assert result["attempt"] == 2 and result["resumed_from_epoch"] >= killed_at >= 1
    assert result["epochs_run"] == 40  # the curves hold every epoch, before and after
    rows = query(settings, select(MetanetworkVersion.version).where(
        MetanetworkVersion.name == "resumed"))
    assert rows == [(1,)]
    card = (await client.get("/v1/metanetworks/resumed")).json()["card"]
    assert [r["epoch"] for r in card["curves"]] == list(range(40))
    assert card["resumed_from_epoch"] == result["resumed_from_epoch"]
    blobs_match_rows(settings)


async def test_a_trigger_search_metanetwork_trains_and_answers(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """``config.triggers`` over HTTP: the search runs on every item before training (its
    phase on the job's progress), and predictions run it on the new checkpoint."""
    cnns = []
    for c, label in enumerate(("small", "large")):
        for i, split in enumerate(["train"] * 12 + ["val"] * 4 + ["test"] * 4):
            torch.manual_seed(100 * c + i)
            net = nn.Sequential(nn.Conv2d(1, 3, 3, 2, 1), nn.ReLU(), nn.Conv2d(3, 4, 3, 2, 1),
                                nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                nn.Linear(4, 10))
            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(3.0 if c else 0.3)
            path = tmp_path / f"{label}-{i}.safetensors"
            graphs.save(net, path, torch.zeros(1, 1, 8, 8))
            cnns.append((path, label, split))
    zoo = await create_zoo(client, cnns, name="cnn-scales")
    config = {**TINY, "layers": 0, "triggers": 2}
    job = (await client.post("/v1/metanetworks?wait=300", json={
        "name": "screen", "zoo_id": zoo["id"], "epochs": 2, "config": config})).json()
    job = await finish(client, job)
    assert job["status"] == "succeeded", job["error"]
    card = (await client.get("/v1/metanetworks/screen")).json()["card"]
    assert card["config"]["triggers"] == 2 and card["config"]["layers"] == 0
    checkpoint = (await client.get("/v1/checkpoints", params={"limit": 1})).json()["items"][0]
    predicted = await finish(client, (await client.post("/v1/predictions?wait=60", json={
        "checkpoint_id": checkpoint["id"], "metanetwork": "screen"})).json())
    assert predicted["status"] == "succeeded", predicted["error"]
    assert predicted["result"]["label"] in ("small", "large")
