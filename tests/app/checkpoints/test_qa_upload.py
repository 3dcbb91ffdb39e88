"""Upload defects a QA pass of the HTTP API found: each request is refused with a clear
problem (or answered with a clear reading), and a refused upload stores nothing."""

from __future__ import annotations

import gzip
import io
from collections.abc import AsyncIterator

import pytest
import torch

from app.checkpoints.service import HTTP_HOW_TO
from graphs.errors import CheckpointError
from graphs.infer import HOW_TO
from graphs.safe_io import read_checkpoint, to_safetensors_bytes

pytestmark = pytest.mark.anyio


def mlp_bytes() -> bytes:
    generator = torch.Generator().manual_seed(0)
    return to_safetensors_bytes(
        {"0.weight": torch.randn(4, 3, generator=generator), "0.bias": torch.zeros(4)}
    )


def meta_model_bytes() -> bytes:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4, device="meta"))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


class Watched:
    """A request body that records whether anyone read it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.read = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.read = True
        yield self.data


def test_meta_device_tensors_are_refused_by_the_reader() -> None:
    with pytest.raises(CheckpointError, match="meta"):
        read_checkpoint(meta_model_bytes())


async def test_meta_device_checkpoint_is_a_422_not_a_500(
    client, assert_problem, stored_files, checkpoint_rows
) -> None:
    response = await client.post("/v1/checkpoints", files={"file": ("m.pt", meta_model_bytes())})
    body = assert_problem(response, 422, "'meta' device")
    assert "state_dict()" in body["detail"]
    assert stored_files() == [] and checkpoint_rows() == 0


async def test_upload_without_architecture_says_why_and_how_to_attach_one(client) -> None:
    unknown = to_safetensors_bytes({"foo": torch.ones(3, 3), "bar": torch.ones(3)})
    response = await client.post("/v1/checkpoints", files={"file": ("u.safetensors", unknown)})
    assert response.status_code == 201, response.text
    assert response.json()["architecture"] is None
    (note,) = response.json()["reading"]["notes"]
    assert "match no known layout" in note  # the MissingArchitectureError's reason
    assert note.endswith(f"{HOW_TO}; {HTTP_HOW_TO}")  # the library's hint, then HTTP's
    assert "graphs.save(" in note and "graphs.save_checkpoint(" in note  # how to attach one
    assert "'arch'" not in note and "before uploading" in note  # the upload has no arch field


async def test_settling_an_unknown_layout_names_no_arch_field(client, assert_problem) -> None:
    unknown = to_safetensors_bytes({"foo": torch.ones(3, 3), "bar": torch.ones(3)})
    response = await client.post("/v1/checkpoints?activation=tanh", content=unknown)
    body = assert_problem(response, 422, "match no known layout")
    assert "'arch'" not in body["detail"] and "graphs.save(" in body["detail"]
    assert body["detail"].endswith(HTTP_HOW_TO)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("activation=bogus", "activation: activation 'bogus' is not one of"),
        ("activation=sine(abc)", "activation: activation 'sine(abc)'"),
        ("input_shape=0", "input_shape: '0' is not 1 to 4 positive integers"),
        ("input_shape=1,0,8", "input_shape: '1,0,8'"),
        ("input_shape=-1", "input_shape"),
        ("input_shape=a,b", "input_shape"),
    ],
)
async def test_impossible_reading_parameters_are_refused_before_the_body_is_read(
    client, assert_problem, stored_files, checkpoint_rows, query, fragment
) -> None:
    body = Watched(mlp_bytes())
    response = await client.post(f"/v1/checkpoints?{query}", content=body)
    assert_problem(response, 422, fragment)
    assert not body.read
    assert stored_files() == [] and checkpoint_rows() == 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, identity"])
async def test_content_encoded_uploads_are_refused_with_415(
    client, assert_problem, stored_files, checkpoint_rows, encoding
) -> None:
    body = Watched(gzip.compress(mlp_bytes()))
    response = await client.post(
        "/v1/checkpoints", content=body, headers={"content-encoding": encoding}
    )
    assert_problem(response, 415, "is not accepted")
    assert not body.read
    assert stored_files() == [] and checkpoint_rows() == 0


async def test_identity_content_encoding_is_accepted(client) -> None:
    response = await client.post(
        "/v1/checkpoints", content=mlp_bytes(), headers={"content-encoding": "identity"}
    )
    assert response.status_code == 201, response.text


async def test_openapi_documents_the_content_encoding_refusal(client) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/checkpoints"]["post"]
    assert "Content-Encoding" in operation["description"]
    assert "415" in operation["responses"]


@pytest.mark.parametrize("where", ["query", "header", "multipart", "multipart-short"])
async def test_a_too_long_filename_is_a_422_naming_the_limit(
    client, assert_problem, stored_files, checkpoint_rows, where
) -> None:
    name = "a" * (300 if where == "multipart-short" else 5000)
    if where == "query":
        response = await client.post(
            "/v1/checkpoints", params={"filename": name}, content=mlp_bytes()
        )
    elif where == "header":
        response = await client.post(
            "/v1/checkpoints", headers={"x-filename": name}, content=mlp_bytes()
        )
    else:
        response = await client.post("/v1/checkpoints", files={"file": (name, mlp_bytes())})
    body = assert_problem(response, 422)
    assert "255" in body["detail"], body["detail"]
    assert "long" in body["detail"] or "at most" in body["detail"], body["detail"]
    assert stored_files() == [] and checkpoint_rows() == 0


async def test_a_filename_at_the_limit_is_kept_whole(client) -> None:
    name = "b" * 243 + ".safetensors"
    assert len(name) == 255
    response = await client.post("/v1/checkpoints", files={"file": (name, mlp_bytes())})
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == name


@pytest.mark.parametrize(
    ("query", "parameter", "allowed"),
    [("format=bogus", "format", "'safetensors' or 'pytorch'")],
)
async def test_list_with_a_bogus_filter_is_a_422(
    client, assert_problem, query, parameter, allowed
) -> None:
    body = assert_problem(await client.get(f"/v1/checkpoints?{query}"), 422, parameter)
    assert allowed in body["detail"]
    assert (await client.get("/v1/checkpoints?format=pytorch")).status_code == 200


async def test_openapi_lists_the_checkpoint_formats(client) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/checkpoints"]["get"]
    (format_,) = [p for p in operation["parameters"] if p["name"] == "format"]
    assert "'safetensors', 'pytorch'" in str(format_["schema"]) or {
        "enum": ["safetensors", "pytorch"],
        "type": "string",
    } in format_["schema"].get("anyOf", [])
