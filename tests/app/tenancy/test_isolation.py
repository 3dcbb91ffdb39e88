"""Tenant isolation for every route: alice creates one of everything, bob tries every
route on it, and gets what a missing record gets (404, or a list without it), while alice
sees nothing changed. The routes are enumerated from the app: a new /v1 route without a
case here fails ``test_every_route_has_an_isolation_case``."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from tests.app.metanetworks._zoo import TINY, create_zoo
from tests.app.tenancy.conftest import METANETWORK, Files, upload
from tests.app.zoos._zoo_files import labels, zip_bytes

pytestmark = pytest.mark.anyio

MISSING_ID = 10**12  # never issued in a test
ALICES_METANETWORK = "alices-net"
ALICES_ZOO = "alices-zoo"


@dataclass
class World:
    """Alice's records, one of each kind."""

    checkpoint: dict[str, Any]
    other_checkpoint: dict[str, Any]
    dataset: dict[str, Any]
    inspect_job: int
    prediction: int
    prediction_job: int
    merge: int
    merge_job: int
    merged_checkpoint: int
    zoo: int = 0
    zoo_checkpoints: tuple[int, ...] = ()


async def alice_world(as_alice: httpx.AsyncClient, files: Files) -> World:
    checkpoint = await upload(as_alice, files.net_a)
    other = await upload(as_alice, files.net_b)
    dataset = await upload(as_alice, files.dataset, "/v1/datasets")
    inspect = await as_alice.post(f"/v1/checkpoints/{checkpoint['id']}/inspect")
    assert inspect.status_code == 202, inspect.text
    inspected = await as_alice.get(f"/v1/jobs/{inspect.json()['id']}", params={"wait": 60})
    assert inspected.json()["status"] == "succeeded", inspected.text
    predicted = await as_alice.post(
        "/v1/predictions",
        params={"wait": 60},
        json={"checkpoint_id": checkpoint["id"], "metanetwork": METANETWORK},
    )
    assert predicted.json()["status"] == "succeeded", predicted.text
    merged = await as_alice.post(
        "/v1/merges",
        params={"wait": 60},
        json={"checkpoints": [checkpoint["id"], other["id"]], "dataset_id": dataset["id"]},
    )
    assert merged.json()["status"] == "succeeded", merged.text
    prediction = (await as_alice.get("/v1/predictions")).json()["items"][0]
    merge = (await as_alice.get("/v1/merges")).json()["items"][0]
    zoo = await create_zoo(as_alice, files.zoo_nets, name=ALICES_ZOO)
    trained = await as_alice.post(
        "/v1/metanetworks",
        params={"wait": 120},
        json={"name": ALICES_METANETWORK, "zoo_id": zoo["id"], "epochs": 1, "config": TINY},
    )
    assert trained.json()["status"] == "succeeded", trained.text
    items = (await as_alice.get(f"/v1/zoos/{zoo['id']}/items", params={"limit": 200})).json()
    return World(
        checkpoint, other, dataset, inspect.json()["id"], prediction["id"],
        predicted.json()["id"], merge["id"], merged.json()["id"], merge["result_checkpoint_id"],
        zoo["id"], tuple(item["checkpoint_id"] for item in items["items"]),
    )  # fmt: skip


async def snapshot(as_alice: httpx.AsyncClient, world: World) -> dict[str, Any]:
    """Everything alice can see: every list, and the bytes of every checkpoint file."""
    seen: dict[str, Any] = {}
    for resource in ("checkpoints", "datasets", "jobs", "predictions", "merges", "zoos"):
        response = await as_alice.get(f"/v1/{resource}", params={"limit": 200})
        assert response.status_code == 200, response.text
        seen[resource] = response.json()["items"]
    seen["metanetworks"] = (await as_alice.get("/v1/metanetworks")).json()
    versions = await as_alice.get(f"/v1/metanetworks/{ALICES_METANETWORK}/versions")
    seen["versions"] = versions.json()
    for checkpoint in seen["checkpoints"]:
        file = await as_alice.get(f"/v1/checkpoints/{checkpoint['id']}/file")
        assert file.status_code == 200
        seen[f"file {checkpoint['id']}"] = hashlib.sha256(file.content).hexdigest()
    return seen


# --- the cases: what bob gets on each route ----------------------------------------------

Case = Callable[[httpx.AsyncClient, World, Files], Awaitable[None]]


def _problem_404(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return dict(response.json())


async def same_as_missing(
    as_bob: httpx.AsyncClient, method: str, template: str, alices_id: int, **kwargs: Any
) -> None:
    """Bob's answer for alice's id is a 404 that reads exactly like the one for an id
    nobody has."""
    theirs = await as_bob.request(method, template.format(alices_id), **kwargs)
    missing = await as_bob.request(method, template.format(MISSING_ID), **kwargs)
    body, missing_body = _problem_404(theirs), _problem_404(missing)
    assert body["detail"].replace(str(alices_id), "ID") == missing_body["detail"].replace(
        str(MISSING_ID), "ID"
    )
    assert body["type"] == missing_body["type"]


def by_id(template: str, pick: Callable[[World], int], **kwargs: Any) -> Case:
    async def case(as_bob: httpx.AsyncClient, world: World, _: Files) -> None:
        await same_as_missing(as_bob, template.split(" ")[0], template.split(" ")[1], pick(world),
                              **kwargs)  # fmt: skip

    return case


def listing(path: str, *filters: Callable[[World], dict[str, Any]]) -> Case:
    """Bob's list holds none of alice's ids, filtered by her records or not."""

    async def case(as_bob: httpx.AsyncClient, world: World, _: Files) -> None:
        for params in [{}] + [f(world) for f in filters]:
            response = await as_bob.get(path, params={"limit": 200, **params})
            assert response.status_code == 200, response.text
            assert not set(_ids(response.json())) & _alices_ids(world, path), (path, params)

    return case


def _ids(page: Any) -> list[int]:
    items = page["items"] if isinstance(page, dict) else page
    return [item["id"] for item in items]


def _alices_ids(world: World, path: str) -> set[int]:
    resource = path.rsplit("/", 1)[1]
    return {
        "checkpoints": {world.checkpoint["id"], world.other_checkpoint["id"],
                        world.merged_checkpoint},
        "datasets": {world.dataset["id"]},
        "jobs": {world.inspect_job, world.prediction_job, world.merge_job},
        "predictions": {world.prediction},
        "merges": {world.merge},
        "zoos": {world.zoo},
    }[resource]  # fmt: skip


async def upload_the_same_checkpoint(as_bob: httpx.AsyncClient, world: World, files: Files) -> None:
    """Bob's upload of alice's bytes is a new upload: 201, his own row, same answer shape."""
    mine = await upload(as_bob, files.net_a)
    assert mine["id"] != world.checkpoint["id"]
    assert mine.keys() == world.checkpoint.keys()
    assert mine["sha256"] == world.checkpoint["sha256"]


async def upload_the_same_dataset(as_bob: httpx.AsyncClient, world: World, files: Files) -> None:
    mine = await upload(as_bob, files.dataset, "/v1/datasets")
    assert mine["id"] != world.dataset["id"]
    assert mine.keys() == world.dataset.keys()


async def jobs_on_alices_records(as_bob: httpx.AsyncClient, world: World, _: Files) -> None:
    """A job naming alice's records is refused exactly as one naming missing records."""
    for kind, params in (
        ("inspect", lambda i: {"checkpoint_id": i}),
        ("predict", lambda i: {"checkpoint_id": i, "metanetwork": METANETWORK}),
        ("merge", lambda i: {"checkpoints": [i, world.other_checkpoint["id"]]}),
    ):
        theirs = await as_bob.post(
            "/v1/jobs", json={"kind": kind, "params": params(world.checkpoint["id"])}
        )
        missing = await as_bob.post("/v1/jobs", json={"kind": kind, "params": params(MISSING_ID)})
        assert theirs.status_code == missing.status_code != 202, (kind, theirs.text)


async def predict_with_alices_checkpoint(
    as_bob: httpx.AsyncClient, world: World, _: Files
) -> None:
    alices = world.checkpoint["id"]
    theirs = await as_bob.post(
        "/v1/predictions", json={"checkpoint_id": alices, "metanetwork": METANETWORK}
    )
    missing = await as_bob.post(
        "/v1/predictions", json={"checkpoint_id": MISSING_ID, "metanetwork": METANETWORK}
    )
    body, missing_body = _problem_404(theirs), _problem_404(missing)
    assert body["detail"].replace(str(alices), "ID") == missing_body["detail"].replace(
        str(MISSING_ID), "ID"
    )


async def merge_alices_records(as_bob: httpx.AsyncClient, world: World, files: Files) -> None:
    """Alice's checkpoints, or his own with alice's dataset: 404 as if missing."""
    own = []
    for path in (files.net_a, files.net_b):  # his own (already stored by an earlier case)
        response = await as_bob.post("/v1/checkpoints", files={"file": ("m", path.read_bytes())})
        assert response.status_code in (200, 201), response.text
        own.append(response.json()["id"])
    for body, missing in (
        ({"checkpoints": [world.checkpoint["id"], own[1]]},
         {"checkpoints": [MISSING_ID, own[1]]}),
        ({"checkpoints": own, "dataset_id": world.dataset["id"]},
         {"checkpoints": own, "dataset_id": MISSING_ID}),
    ):  # fmt: skip
        theirs = _problem_404(await as_bob.post("/v1/merges", json=body))
        absent = _problem_404(await as_bob.post("/v1/merges", json=missing))
        assert theirs["type"] == absent["type"]
        assert theirs["detail"].split(" ")[0] == absent["detail"].split(" ")[0]


async def zoo_of_alices_checkpoints(as_bob: httpx.AsyncClient, world: World, _: Files) -> None:
    """A zoo naming alice's checkpoints is refused exactly as one naming missing ones."""

    async def post(ids: list[int]) -> httpx.Response:
        items = [{"checkpoint_id": i, "label": ("a", "b")[k % 2]} for k, i in enumerate(ids)]
        return await as_bob.post(
            "/v1/zoos", json={"name": "bobs", "task": "classification", "items": items}
        )

    theirs = await post(list(world.zoo_checkpoints))
    missing = await post([MISSING_ID + k for k in range(len(world.zoo_checkpoints))])
    assert theirs.status_code == missing.status_code != 201, theirs.text
    assert theirs.json()["type"] == missing.json()["type"]


async def archive_named_like_alices_zoo(
    as_bob: httpx.AsyncClient, _: World, files: Files
) -> None:
    """Zoo names are per tenant: alice's name is no 409 for bob (his one-item archive is
    refused for its size, exactly as under a name nobody has)."""
    path = files.net_a
    body = zip_bytes({"labels.csv": labels([(path.name, "a")]), path.name: path.read_bytes()})

    async def post(name: str) -> httpx.Response:
        return await as_bob.post(
            "/v1/zoos/archive", params={"name": name, "task": "classification"}, content=body,
            headers={"content-type": "application/octet-stream"},
        )  # fmt: skip

    theirs, fresh = await post(ALICES_ZOO), await post("nobody-has-this-name")
    assert theirs.status_code == fresh.status_code == 422, theirs.text
    assert theirs.json()["detail"] == fresh.json()["detail"]


async def train_on_alices_zoo(as_bob: httpx.AsyncClient, world: World, _: Files) -> None:
    async def post(zoo_id: int) -> httpx.Response:
        return await as_bob.post(
            "/v1/metanetworks", json={"name": "bobs", "zoo_id": zoo_id, "config": TINY}
        )

    body, missing = _problem_404(await post(world.zoo)), _problem_404(await post(MISSING_ID))
    assert body["detail"].replace(str(world.zoo), "ID") == missing["detail"].replace(
        str(MISSING_ID), "ID"
    )


async def alices_metanetwork_is_hers(as_bob: httpx.AsyncClient, _: World, __: Files) -> None:
    """Built-ins are every tenant's; alice's trained metanetwork is hers alone."""
    names = [m["name"] for m in (await as_bob.get("/v1/metanetworks")).json()]
    assert METANETWORK in names and ALICES_METANETWORK not in names
    assert (await as_bob.get(f"/v1/metanetworks/{METANETWORK}")).status_code == 200


def by_name(template: str) -> Case:
    """Bob's answer for alice's metanetwork reads exactly like one for a name nobody has."""

    async def case(as_bob: httpx.AsyncClient, _: World, __: Files) -> None:
        method, path = template.split(" ")
        theirs = await as_bob.request(method, path.format(ALICES_METANETWORK))
        missing = await as_bob.request(method, path.format("nobody-has-this"))
        body, missing_body = _problem_404(theirs), _problem_404(missing)
        assert body["detail"].replace(ALICES_METANETWORK, "NAME") == missing_body[
            "detail"
        ].replace("nobody-has-this", "NAME")

    return case


def _checkpoint(world: World) -> int:
    return int(world.checkpoint["id"])


CASES: dict[tuple[str, str], Case] = {
    ("POST", "/v1/checkpoints"): upload_the_same_checkpoint,
    ("GET", "/v1/checkpoints"): listing(
        "/v1/checkpoints", lambda w: {"sha256_prefix": w.other_checkpoint["sha256"]}
    ),
    ("GET", "/v1/checkpoints/{checkpoint_id}"): by_id("GET /v1/checkpoints/{}", _checkpoint),
    ("GET", "/v1/checkpoints/{checkpoint_id}/file"): by_id(
        "GET /v1/checkpoints/{}/file", _checkpoint
    ),
    ("GET", "/v1/checkpoints/{checkpoint_id}/graph"): by_id(
        "GET /v1/checkpoints/{}/graph", _checkpoint
    ),
    ("DELETE", "/v1/checkpoints/{checkpoint_id}"): by_id(
        "DELETE /v1/checkpoints/{}", lambda w: w.merged_checkpoint
    ),
    ("POST", "/v1/checkpoints/{checkpoint_id}/inspect"): by_id(
        "POST /v1/checkpoints/{}/inspect", _checkpoint
    ),
    ("GET", "/v1/jobs"): listing("/v1/jobs", lambda w: {"kind": "merge"}),
    ("POST", "/v1/jobs"): jobs_on_alices_records,
    ("GET", "/v1/jobs/{job_id}"): by_id(
        "GET /v1/jobs/{}", lambda w: w.merge_job, params={"wait": 1}
    ),
    ("GET", "/v1/jobs/{job_id}/events"): by_id("GET /v1/jobs/{}/events", lambda w: w.inspect_job),
    ("POST", "/v1/jobs/{job_id}/cancel"): by_id(
        "POST /v1/jobs/{}/cancel", lambda w: w.prediction_job
    ),
    ("GET", "/v1/metanetworks"): alices_metanetwork_is_hers,
    ("POST", "/v1/metanetworks"): train_on_alices_zoo,
    ("GET", "/v1/metanetworks/{ref}"): by_name("GET /v1/metanetworks/{}"),
    ("GET", "/v1/metanetworks/{ref}/versions"): by_name("GET /v1/metanetworks/{}/versions"),
    ("DELETE", "/v1/metanetworks/{ref}"): by_name("DELETE /v1/metanetworks/{}"),
    ("POST", "/v1/zoos"): zoo_of_alices_checkpoints,
    ("POST", "/v1/zoos/archive"): archive_named_like_alices_zoo,
    ("GET", "/v1/zoos"): listing("/v1/zoos"),
    ("GET", "/v1/zoos/{zoo_id}"): by_id("GET /v1/zoos/{}", lambda w: w.zoo),
    ("GET", "/v1/zoos/{zoo_id}/items"): by_id("GET /v1/zoos/{}/items", lambda w: w.zoo),
    ("DELETE", "/v1/zoos/{zoo_id}"): by_id("DELETE /v1/zoos/{}", lambda w: w.zoo),
    ("POST", "/v1/predictions"): predict_with_alices_checkpoint,
    ("GET", "/v1/predictions"): listing(
        "/v1/predictions",
        lambda w: {"checkpoint_id": w.checkpoint["id"]},
        lambda w: {"metanetwork": METANETWORK},
    ),
    ("GET", "/v1/predictions/{prediction_id}"): by_id(
        "GET /v1/predictions/{}", lambda w: w.prediction
    ),
    ("POST", "/v1/datasets"): upload_the_same_dataset,
    ("GET", "/v1/datasets"): listing("/v1/datasets"),
    ("GET", "/v1/datasets/{dataset_id}"): by_id("GET /v1/datasets/{}", lambda w: w.dataset["id"]),
    ("POST", "/v1/merges"): merge_alices_records,
    ("GET", "/v1/merges"): listing(
        "/v1/merges",
        lambda w: {"checkpoint_id": w.checkpoint["id"]},
        lambda w: {"job_id": w.merge_job},
    ),
    ("GET", "/v1/merges/{merge_id}"): by_id("GET /v1/merges/{}", lambda w: w.merge),
    # the lifecycle routes (DELETE of predictions, merges, datasets, jobs), where present
    ("DELETE", "/v1/predictions/{prediction_id}"): by_id(
        "DELETE /v1/predictions/{}", lambda w: w.prediction
    ),
    ("DELETE", "/v1/merges/{merge_id}"): by_id("DELETE /v1/merges/{}", lambda w: w.merge),
    ("DELETE", "/v1/datasets/{dataset_id}"): by_id(
        "DELETE /v1/datasets/{}", lambda w: w.dataset["id"]
    ),
    ("DELETE", "/v1/jobs/{job_id}"): by_id("DELETE /v1/jobs/{}", lambda w: w.inspect_job),
}


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every /v1 route of the app, included routers' too."""
    try:  # FastAPI >= 0.16x includes routers lazily; this walks into them
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = [r for r in app.routes if isinstance(r, APIRoute)]
    return sorted(
        (method, route.path)
        for route in routes
        if (route.path or "").startswith("/v1")
        for method in (route.methods or set()) - {"HEAD"}
    )


async def test_every_route_has_an_isolation_case(app: FastAPI) -> None:
    missing = [route for route in api_routes(app) if route not in CASES]
    assert not missing, f"routes without a tenant isolation case in CASES: {missing}"


async def test_another_tenant_gets_404_everywhere_and_changes_nothing(
    app: FastAPI, as_alice: httpx.AsyncClient, as_bob: httpx.AsyncClient, files: Files,
    stored_files: Callable[[], list[Any]],
) -> None:  # fmt: skip
    world = await alice_world(as_alice, files)
    before, files_before = await snapshot(as_alice, world), stored_files()
    for route in api_routes(app):
        await CASES[route](as_bob, world, files)
    assert await snapshot(as_alice, world) == before
    # bob uploaded only bytes alice had stored: still one file per content
    assert stored_files() == files_before
    # and bob still sees exactly his own records
    bobs = (await as_bob.get("/v1/checkpoints", params={"limit": 200})).json()["items"]
    assert bobs and not {c["id"] for c in bobs} & _alices_ids(world, "/v1/checkpoints")
