"""Every refused zoo is a problem+json 4xx naming its cause, and nothing is stored (on
SQLite; test_create runs the conflicts on PostgreSQL too)."""

from __future__ import annotations

import pytest
import torch
from _zoo_files import upload_all

from graphs.safe_io import to_safetensors_bytes

pytestmark = pytest.mark.anyio


def labelled(ids: list[int]) -> list[dict]:
    return [{"checkpoint_id": c, "label": ("even", "odd")[i % 2]} for i, c in enumerate(ids)]


def targeted(ids: list[int]) -> list[dict]:
    return [{"checkpoint_id": c, "target": i / 10} for i, c in enumerate(ids)]


CASES = {
    "mixed label kinds": (
        lambda ids: {"task": "classification", "items": labelled(ids[:20]) + targeted(ids[20:])},
        422, "mixed label kinds",
    ),
    "missing label": (
        lambda ids: {"task": "classification",
                     "items": [*labelled(ids[:39]), {"checkpoint_id": ids[39]}]},
        422, "items[39] (checkpoint",
    ),
    "targets for classification": (
        lambda ids: {"task": "classification", "items": targeted(ids)},
        422, "has a target, not a label",
    ),
    "missing target": (
        lambda ids: {"task": "regression",
                     "items": [*targeted(ids[:39]), {"checkpoint_id": ids[39]}]},
        422, "has no target",
    ),
    "non-numeric target": (
        lambda ids: {"task": "regression",
                     "items": [*targeted(ids[:39]), {"checkpoint_id": ids[39], "target": "high"}]},
        422, "target 'high' is not a number",
    ),
    "infinite target": (
        lambda ids: {"task": "regression",
                     "items": [*targeted(ids[:39]), {"checkpoint_id": ids[39], "target": "inf"}]},
        422, "not a finite number",
    ),
    "fewer than 20 items": (
        lambda ids: {"task": "regression", "items": targeted(ids[:19])},
        422, "at least 20 items",
    ),
    "one class": (
        lambda ids: {"task": "classification",
                     "items": [{"checkpoint_id": c, "label": "a"} for c in ids]},
        422, "at least 2 classes",
    ),
    "class too small for every split": (
        lambda ids: {"task": "classification",
                     "items": [{"checkpoint_id": c, "label": "rare" if i < 3 else "common"}
                               for i, c in enumerate(ids)]},
        422, "class 'rare' gets",
    ),
    "groups too few for the splits": (
        lambda ids: {"task": "regression",
                     "items": [{**item, "group": str(i % 2)}
                               for i, item in enumerate(targeted(ids))]},
        422, "every split needs at least 2",
    ),
    "unknown checkpoint": (
        lambda ids: {"task": "regression",
                     "items": [*targeted(ids[:39]), {"checkpoint_id": 987654, "target": 1.0}]},
        422, "unknown checkpoints: [987654]",
    ),
    "duplicate checkpoint": (
        lambda ids: {"task": "regression", "items": targeted([*ids[:39], ids[0]])},
        422, "used more than once",
    ),
    "classes not matching the labels": (
        lambda ids: {"task": "classification", "items": labelled(ids), "classes": ["even"]},
        422, "must list each label",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_and_nothing_stored(client, nets, zoo_rows, assert_problem, case) -> None:
    ids = await upload_all(client, nets[:40])
    make, status, fragment = CASES[case]
    response = await client.post("/v1/zoos", json={"name": "z", **make(ids)})
    assert_problem(response, status, fragment)
    assert zoo_rows() == (0, 0)


async def test_a_checkpoint_without_architecture_is_named(client, nets, zoo_rows, assert_problem):
    ids = await upload_all(client, nets[:39])
    bare = to_safetensors_bytes({"weird.tensor": torch.ones(3, 5, 7)})
    (bare_id,) = await upload_all(client, [bare])
    items = [*targeted(ids), {"checkpoint_id": bare_id, "target": 0.5}]
    response = await client.post("/v1/zoos", json={"name": "z", "task": "regression",
                                                   "items": items})
    body = assert_problem(response, 422, f"items[39] (checkpoint {bare_id})")
    assert "cannot be graphed" in body["detail"]
    assert body["type"].endswith("not-graphable")
    assert zoo_rows() == (0, 0)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "task": "regression", "items": []},
        {"name": "../x", "task": "regression", "items": []},
        {"name": "z", "task": "ranking", "items": []},
        {"name": "z", "task": "regression", "items": [], "seed": -1},
        {"name": "z", "task": "regression", "items": [{"checkpoint_id": 1, "colour": "red"}]},
        {"name": "z", "task": "regression", "items": [{"checkpoint_id": 2**64, "target": 1}]},
        {"name": "z", "task": "regression", "items": [],
         "split_fractions": {"train": 0.0, "val": 0.5, "test": 0.5}},
    ],
)
async def test_malformed_requests_are_validation_problems(client, assert_problem, body) -> None:
    assert_problem(await client.post("/v1/zoos", json=body), 422)


async def test_unknown_zoo_is_404(client, assert_problem) -> None:
    assert_problem(await client.get("/v1/zoos/12345"), 404, "zoo 12345")
    assert_problem(await client.get("/v1/zoos/12345/items"), 404, "zoo 12345")
    assert_problem(await client.delete("/v1/zoos/12345"), 404, "zoo 12345")
    assert_problem(await client.get(f"/v1/zoos/{2**64}"), 422)
