"""Ids outside 1..ID_MAX are a 422 problem wherever they arrive (issue 16, defect 3), and ids
are never reused (defect 4). The routes and body models are enumerated, so a new id
parameter without ``app.ids``' types fails here."""

from __future__ import annotations

import base64
import json
import re
import typing

import pytest
from _lifecycle_files import mlp_bytes, upload
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from app.jobs.kind import KINDS
from app.main import create_app
from app.models import ID_MAX
from app.tasks import DOMAIN_TASKS, load_tasks

pytestmark = pytest.mark.anyio

OUT_OF_RANGE = (0, -1, ID_MAX + 1, 2**64, 10**30)
ID_NAME = re.compile(r"^(id|.+_id|.+_ids|checkpoints)$")  # what names an id, or ids


def _bounded(metadata: list[object]) -> bool:
    ge = [m.ge for m in metadata if getattr(m, "ge", None) is not None]
    le = [m.le for m in metadata if getattr(m, "le", None) is not None]
    return ge == [1] and le == [ID_MAX]


def _routes(settings) -> list[APIRoute]:
    contexts = iter_route_contexts(create_app(settings).routes)
    return [c.original_route for c in contexts if isinstance(c.original_route, APIRoute)]


def _unbounded_params(route: APIRoute) -> list[str]:
    dependant = route.dependant
    params = [*dependant.path_params, *dependant.query_params]
    for sub in dependant.dependencies:
        params += [*sub.path_params, *sub.query_params]
    return [
        f"{route.path} {p.name}"
        for p in params
        if ID_NAME.match(p.name) and not _bounded(p.field_info.metadata)
    ]


def _constraints(annotation: object) -> list[object]:
    """The constraints inside an annotation: ``list[RecordId]``, ``RecordId | None``."""
    found: list[object] = []
    for item in getattr(annotation, "__metadata__", ()):
        found += list(getattr(item, "metadata", [item]))  # a FieldInfo holds its own list
    for arg in typing.get_args(annotation):
        if arg is not annotation:
            found += _constraints(arg)
    return found


def _unbounded_fields(model: type[BaseModel], seen: set[type]) -> list[str]:
    if model in seen:
        return []
    seen.add(model)
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation)
        for arg in (annotation, *args):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found += _unbounded_fields(arg, seen)
        if not ID_NAME.match(name):
            continue
        if not _bounded([*field.metadata, *_constraints(annotation)]):
            found.append(f"{model.__name__}.{name}")
    return found


def test_every_id_parameter_and_field_is_bounded(settings) -> None:
    routes = _routes(settings)
    assert any("{checkpoint_id}" in r.path for r in routes)  # the walk sees the routes
    unbounded = [name for route in routes for name in _unbounded_params(route)]
    assert unbounded == [], "use app.ids.IdPath / IdQuery for these"
    load_tasks(list(DOMAIN_TASKS))
    models = [kind.params_model for kind in KINDS.values()]
    models += [p.field_info.annotation for r in routes for p in r.dependant.body_params]
    fields: list[str] = []
    seen: set[type] = set()
    for model in models:
        if isinstance(model, type) and issubclass(model, BaseModel):
            fields += _unbounded_fields(model, seen)
    assert {"PredictionCreate", "MergeCreate", "JobCreate"} <= {m.__name__ for m in seen}
    assert fields == [], "use app.ids.RecordId for these"


def _concrete(path: str, value: int) -> str:
    return re.sub(r"\{[a-z_]*id\}", str(value), path)


async def test_out_of_range_ids_in_paths_and_filters_are_422(
    client, settings, assert_problem
) -> None:
    checked = 0
    for route in _routes(settings):
        method = sorted(route.methods - {"HEAD"})[0]
        if re.search(r"\{[a-z_]*id\}", route.path):
            for value in OUT_OF_RANGE:
                response = await client.request(method, _concrete(route.path, value))
                assert_problem(response, 422)
                checked += 1
        for param in route.dependant.query_params:
            if ID_NAME.match(param.name):
                for value in OUT_OF_RANGE:
                    response = await client.get(route.path, params={param.name: value})
                    assert_problem(response, 422, param.name)
                    checked += 1
    assert checked >= 10 * len(OUT_OF_RANGE)


async def test_out_of_range_ids_in_bodies_and_cursors_are_422(client, assert_problem) -> None:
    checkpoint = (await upload(client, mlp_bytes(1))).json()["id"]
    for value in OUT_OF_RANGE:
        bodies = {
            "/v1/predictions": {"checkpoint_id": value, "metanetwork": "m"},
            "/v1/merges": {"checkpoints": [checkpoint, value]},
            "/v1/jobs": {"kind": "inspect", "params": {"checkpoint_id": value}},
        }
        for path, body in bodies.items():
            assert_problem(await client.post(path, json=body), 422)
        assert_problem(
            await client.post("/v1/merges", json={"checkpoints": [1, 2], "dataset_id": value}),
            422,
        )
        cursor = base64.urlsafe_b64encode(json.dumps({"before": value}).encode()).decode()
        assert_problem(
            await client.get("/v1/checkpoints", params={"cursor": cursor}), 422, "cursor"
        )
    # the largest id is valid: a plain 404
    assert_problem(await client.get(f"/v1/checkpoints/{ID_MAX}"), 404)
    assert_problem(await client.delete(f"/v1/jobs/{ID_MAX}"), 404)


async def test_ids_are_never_reused(client) -> None:
    """Upload A -> 1, delete it, upload B -> 2: a client holding 1 never gets B."""
    first = (await upload(client, mlp_bytes(1))).json()
    assert first["id"] == 1
    assert (await client.delete(f"/v1/checkpoints/{first['id']}")).status_code == 204
    second = (await upload(client, mlp_bytes(2))).json()
    assert second["id"] == 2
    assert (await client.get("/v1/checkpoints/1")).status_code == 404
    # and the same bytes again are a new record too
    assert (await client.delete("/v1/checkpoints/2")).status_code == 204
    assert (await upload(client, mlp_bytes(2))).json()["id"] == 3
