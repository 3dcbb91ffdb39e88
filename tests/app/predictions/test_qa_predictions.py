"""Prediction requests a QA pass found answered badly: invalid bodies, upload-and-ask with
a metanetwork that does not exist, and list filters that can never match."""

from __future__ import annotations

import pytest
import torch

from graphs.safe_io import to_safetensors_bytes

pytestmark = pytest.mark.anyio


def mlp_bytes() -> bytes:
    generator = torch.Generator().manual_seed(0)
    return to_safetensors_bytes(
        {
            "0.weight": torch.randn(4, 3, generator=generator),
            "0.bias": torch.zeros(4),
            "2.weight": torch.randn(2, 4, generator=generator),
            "2.bias": torch.zeros(2),
        }
    )


async def test_invalid_body_is_one_entry_per_field_not_a_pydantic_dump(
    client, assert_problem
) -> None:
    response = await client.post(
        "/v1/predictions", json={"checkpoint_id": "x", "metanetwork": "", "force": "maybe"}
    )
    body = assert_problem(response, 422)
    assert body["type"].endswith(":validation")
    lines = body["detail"].split("; ")
    assert [line.split(":")[0] for line in lines] == [
        "body.checkpoint_id",
        "body.metanetwork",
        "body.force",
    ]
    assert "valid integer" in lines[0] and "at least 1 character" in lines[1]
    for dump in ("validation errors for", "errors.pydantic.dev", "input_value", "\n"):
        assert dump not in body["detail"]
    assert [e["loc"] for e in body["errors"]] == [
        ["body", "checkpoint_id"],
        ["body", "metanetwork"],
        ["body", "force"],
    ]


async def test_missing_fields_and_bad_json_are_located_too(client, assert_problem) -> None:
    body = assert_problem(await client.post("/v1/predictions", json={}), 422)
    assert [e["loc"] for e in body["errors"]] == [
        ["body", "checkpoint_id"],
        ["body", "metanetwork"],
    ]
    broken = await client.post(
        "/v1/predictions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert assert_problem(broken, 422, "body")["errors"][0]["type"] == "json_invalid"


async def test_upload_and_ask_an_unknown_metanetwork_stores_nothing(
    client, assert_problem, stored_files, checkpoint_rows
) -> None:
    response = await client.post(
        "/v1/predictions?metanetwork=no-such-net", files={"file": ("m.safetensors", mlp_bytes())}
    )
    assert_problem(response, 404, "metanetwork 'no-such-net' does not exist")
    assert stored_files() == [] and checkpoint_rows() == 0
    malformed = await client.post(
        "/v1/predictions?metanetwork=x@0", files={"file": ("m.safetensors", mlp_bytes())}
    )
    assert 400 <= malformed.status_code < 500
    assert stored_files() == [] and checkpoint_rows() == 0


async def test_upload_and_ask_refused_for_its_domain_keeps_no_new_checkpoint(
    client, assert_problem, stored_files, checkpoint_rows
) -> None:
    catalog = (await client.get("/v1/metanetworks")).json()
    name = next(m["name"] for m in catalog if "cnn" in m["name"])
    response = await client.post(
        f"/v1/predictions?metanetwork={name}", files={"file": ("m.safetensors", mlp_bytes())}
    )
    assert_problem(response, 422, "outside the domain")
    assert stored_files() == [] and checkpoint_rows() == 0


@pytest.mark.parametrize("ref", ["x@0", "x@@", "x@1.5", "x@-1", "@1", "a b"])
async def test_list_with_an_impossible_metanetwork_filter_is_a_422(
    client, assert_problem, ref
) -> None:
    body = assert_problem(await client.get("/v1/predictions", params={"metanetwork": ref}), 422)
    assert body["detail"].startswith("metanetwork: ") and "NAME@N" in body["detail"]


@pytest.mark.parametrize("ref", ["x", "x@1", "digits-cnn-generalization@1"])
async def test_list_with_a_possible_metanetwork_filter_answers(client, ref) -> None:
    response = await client.get("/v1/predictions", params={"metanetwork": ref})
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


async def test_metanetwork_filter_by_name_and_by_version(client) -> None:
    catalog = (await client.get("/v1/metanetworks")).json()
    builtin = next(m for m in catalog if "cnn" in m["name"])
    name = builtin["name"]
    checkpoint = (await client.post("/v1/checkpoints", content=mlp_bytes())).json()
    job = (
        await client.post(
            "/v1/predictions?wait=120",
            json={"checkpoint_id": checkpoint["id"], "metanetwork": name, "force": True},
        )
    ).json()
    assert job["status"] == "succeeded", job

    async def listed(ref: str) -> list[int]:
        response = await client.get("/v1/predictions", params={"metanetwork": ref})
        assert response.status_code == 200, response.text
        return [p["job_id"] for p in response.json()["items"]]

    version = builtin["version_number"]
    assert await listed(name) == [job["id"]]
    assert await listed(f"{name}@{version}") == [job["id"]]
    assert await listed(f"{name}@{version + 1}") == []
