"""NUL and other control characters in query parameters and file names (issue 16, defect 6):
refused with a problem, or removed from a multipart file name, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from app.checkpoints.upload import clean_filename
from app.control_characters import has_control_character
from graphs.safe_io import to_safetensors_bytes

pytestmark = pytest.mark.anyio


@pytest.fixture
def database_url(any_database_url: str) -> str:
    return any_database_url


def _file() -> bytes:
    import torch

    return to_safetensors_bytes({"w": torch.ones(2, 2)})


@pytest.mark.parametrize("query", ["sha256_prefix=%00", "format=a%0Db", "cursor=%0A"])
async def test_control_characters_in_a_filter_are_refused(
    client: httpx.AsyncClient, assert_problem: Callable[..., dict], query: str
) -> None:
    assert_problem(await client.get(f"/v1/checkpoints?{query}"), 422, "control character")


async def test_a_raw_upload_named_with_a_control_character_is_refused(
    client: httpx.AsyncClient, assert_problem: Callable[..., dict],
    checkpoint_rows: Callable[[], int], stored_files: Callable[[], list],
) -> None:
    raw = {"content": _file(), "headers": {"content-type": "application/octet-stream"}}
    assert_problem(
        await client.post("/v1/checkpoints?filename=a%00b.safetensors", **raw), 422,
        "query parameter 'filename'",
    )
    assert_problem(
        await client.post(
            "/v1/checkpoints", content=raw["content"],
            headers={**raw["headers"], "x-filename": "a\tb"},
        ),
        422, "X-Filename",
    )
    assert checkpoint_rows() == 0 and stored_files() == []


async def test_a_multipart_file_name_is_stored_without_control_characters(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/checkpoints", files={"file": ("we\x00ights\r\n.safetensors", _file())}
    )
    assert response.status_code == 201, response.text
    assert not has_control_character(response.json()["filename"])


def test_clean_filename_drops_control_characters_and_folders() -> None:
    assert clean_filename("../x/we\x00ights\r\n.safetensors") == "weights.safetensors"
    assert clean_filename("\x00\x1f") is None
