"""Zoos over stored checkpoints: create, read, list, items, delete, tenancy."""

from __future__ import annotations

import pytest
from _zoo_files import classified, upload_all, zip_bytes

from app.blobs import BlobStore
from app.db import SessionFactory
from app.models import Tenant
from app.problems import ProblemError
from app.settings import Settings
from app.zoos import repository, service
from app.zoos.schemas import ZooIn

pytestmark = pytest.mark.anyio


@pytest.fixture
def database_url(any_database_url: str) -> str:
    return any_database_url


def classification_body(ids: list[int], name: str = "parity", **extra: object) -> dict:
    items = [
        {"checkpoint_id": c, "label": "even" if i % 2 == 0 else "odd"} for i, c in enumerate(ids)
    ]
    return {"name": name, "task": "classification", "items": items, "seed": 3, **extra}


async def test_create_read_list_items_and_delete(client, nets, zoo_rows, checkpoint_rows) -> None:
    ids = await upload_all(client, nets[:40])
    response = await client.post("/v1/zoos", json=classification_body(ids))
    assert response.status_code == 201, response.text
    zoo = response.json()
    assert response.headers["location"] == f"/v1/zoos/{zoo['id']}"
    assert zoo["size"] == 40 and zoo["task"] == "classification"
    assert zoo["classes"] == ["even", "odd"]
    assert zoo["label_counts"] == {"even": 20, "odd": 20}
    assert zoo["target_quantiles"] is None
    assert len(zoo["architectures"]) == 1
    architecture = zoo["architectures"][0]
    assert architecture["items"] == 40 and len(architecture["digest"]) == 64
    assert "linear×2" in architecture["description"]
    splits = zoo["splits"]
    assert sum(s["items"] for s in splits.values()) == 40
    for split in ("train", "val", "test"):
        assert min(splits[split]["label_counts"].values()) >= 2
    assert splits["train"]["items"] > splits["val"]["items"]

    assert (await client.get(f"/v1/zoos/{zoo['id']}")).json() == zoo
    listed = (await client.get("/v1/zoos")).json()
    assert [z["id"] for z in listed["items"]] == [zoo["id"]]

    seen, cursor = [], None
    while True:
        params = {"limit": 15, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/v1/zoos/{zoo['id']}/items", params=params)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i["position"] for i in seen] == list(range(40))
    assert [i["checkpoint_id"] for i in seen] == ids
    assert [i["label"] for i in seen] == [("even", "odd")[i % 2] for i in range(40)]
    counts = {s: sum(i["split"] == s for i in seen) for s in ("train", "val", "test")}
    assert counts == {s: splits[s]["items"] for s in counts}
    test_only = (await client.get(f"/v1/zoos/{zoo['id']}/items", params={"split": "test"})).json()
    assert {i["split"] for i in test_only["items"]} == {"test"}
    assert len(test_only["items"]) == splits["test"]["items"]

    busy = await client.delete(f"/v1/checkpoints/{ids[0]}")
    assert busy.status_code == 409 and "1 zoo (id " in busy.json()["detail"]

    assert (await client.delete(f"/v1/zoos/{zoo['id']}")).status_code == 204
    assert (await client.get(f"/v1/zoos/{zoo['id']}")).status_code == 404
    assert zoo_rows() == (0, 0)
    assert checkpoint_rows() == 40  # the checkpoints stay
    assert (await client.delete(f"/v1/checkpoints/{ids[0]}")).status_code == 204


async def test_regression_zoo_reports_target_quantiles_and_groups(client, nets) -> None:
    ids = await upload_all(client, nets[:30])
    items = [
        {"checkpoint_id": c, "target": i / 29, "group": f"g{i // 3}"} for i, c in enumerate(ids)
    ]
    response = await client.post(
        "/v1/zoos", json={"name": "acc", "task": "regression", "items": items}
    )
    assert response.status_code == 201, response.text
    zoo = response.json()
    assert zoo["classes"] is None and zoo["label_counts"] is None
    quantiles = zoo["target_quantiles"]
    assert quantiles["q00"] == 0.0 and quantiles["q100"] == 1.0
    assert quantiles["q50"] == pytest.approx(0.5)
    page = (await client.get(f"/v1/zoos/{zoo['id']}/items", params={"limit": 200})).json()
    split_of_group: dict[str, set[str]] = {}
    for item in page["items"]:
        split_of_group.setdefault(item["group"], set()).add(item["split"])
    assert all(len(s) == 1 for s in split_of_group.values())
    assert sum(zoo["splits"][s]["groups"] for s in zoo["splits"]) == 10


async def test_duplicate_name_is_a_conflict(client, nets, zoo_rows, assert_problem) -> None:
    ids = await upload_all(client, nets[:20])
    items = [{"checkpoint_id": c, "target": float(i)} for i, c in enumerate(ids)]
    body = {"name": "same", "task": "regression", "items": items}
    assert (await client.post("/v1/zoos", json=body)).status_code == 201
    assert_problem(await client.post("/v1/zoos", json=body), 409, "exists already")
    assert zoo_rows() == (1, 20)


async def test_zoo_list_pages_newest_first(client, nets) -> None:
    ids = await upload_all(client, nets[:20])
    body = {"task": "regression", "items": [
        {"checkpoint_id": c, "target": float(i)} for i, c in enumerate(ids)
    ]}
    made = []
    for n in range(3):
        response = await client.post("/v1/zoos", json={**body, "name": f"z{n}"})
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
    first = (await client.get("/v1/zoos", params={"limit": 2})).json()
    second = (await client.get(
        "/v1/zoos", params={"limit": 2, "cursor": first["next_cursor"]}
    )).json()
    assert [z["id"] for z in first["items"] + second["items"]] == made[::-1]
    assert second["next_cursor"] is None


async def test_another_tenants_zoos_and_checkpoints_do_not_exist(
    client, nets, session_factory: SessionFactory, settings: Settings
) -> None:
    ids = await upload_all(client, nets[:20])
    created = await client.post("/v1/zoos", json=classification_body(ids[:20], seed=0) | {
        "items": [{"checkpoint_id": c, "target": float(i)} for i, c in enumerate(ids)],
        "task": "regression",
    })
    assert created.status_code == 201, created.text
    zoo_id = created.json()["id"]
    with session_factory() as session:
        other = Tenant(name="other")
        session.add(other)
        session.commit()
        body = ZooIn.model_validate(
            {"name": "mine", "task": "regression",
             "items": [{"checkpoint_id": c, "target": float(i)} for i, c in enumerate(ids)]}
        )
        with pytest.raises(ProblemError) as refused:
            service.create_zoo(session, BlobStore(settings.blob_dir), other.id, body)
        assert refused.value.status == 422 and "unknown checkpoints" in refused.value.detail
        assert repository.get_zoo(session, zoo_id, other.id) is None
        with pytest.raises(ProblemError):
            service.get_zoo(session, other.id, zoo_id)
        assert repository.items_by_split(session, zoo_id, other.id) == {
            "train": [], "val": [], "test": []
        }
        mine = repository.items_by_split(session, zoo_id, 1)
        assert sum(len(v) for v in mine.values()) == 20
        assert {r.split for r in mine["val"]} == {"val"}
        assert all(len(r.blob_sha256) == 64 for r in mine["train"])


async def test_archive_upload_is_all_or_nothing(
    client, nets, zoo_rows, checkpoint_rows, stored_files
) -> None:
    """On each database: a bad last member stores nothing; the good archive then works."""
    members = classified(nets)
    bad = {**members, "nets/n39.safetensors": b"not a checkpoint"}
    params = {"name": "parity", "task": "classification"}
    refused = await client.post("/v1/zoos/archive", params=params, content=zip_bytes(bad))
    assert refused.status_code == 422 and "nets/n39.safetensors" in refused.json()["detail"]
    assert (zoo_rows(), checkpoint_rows(), stored_files()) == ((0, 0), 0, [])
    created = await client.post("/v1/zoos/archive", params=params, content=zip_bytes(members))
    assert created.status_code == 201, created.text
    assert zoo_rows() == (1, 40) and checkpoint_rows() == 40
