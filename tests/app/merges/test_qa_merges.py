"""Merges a QA pass found failing: inferred CNNs whose input size inference left open, and
inputs of different floating dtypes."""

from __future__ import annotations

import pytest
import torch

import graphs
from graphs.safe_io import read_checkpoint, to_safetensors_bytes

pytestmark = pytest.mark.anyio


def pooled_cnn_bytes(seed: int) -> bytes:
    """A conv net ending in a global pool: inference cannot tell its input's spatial size."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    return to_safetensors_bytes(model.state_dict())


def dataset_bytes(channels: int = 1) -> bytes:
    generator = torch.Generator().manual_seed(0)
    return to_safetensors_bytes(
        {
            "x": torch.randn(16, channels, 8, 8, generator=generator),
            "y": torch.randint(0, 3, (16,), generator=generator),
        }
    )


async def upload(client, data: bytes, path: str = "/v1/checkpoints") -> dict:
    response = await client.post(path, files={"file": ("f.safetensors", data)})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("method", ["activation", "ste"])
async def test_data_matching_merge_of_inferred_cnns_takes_the_size_from_the_data(
    client, method
) -> None:
    ids = []
    for seed in (1, 2):
        checkpoint = await upload(client, pooled_cnn_bytes(seed))
        assert checkpoint["architecture"]["inputs"] == {"x": [1, None, None]}
        ids.append(checkpoint["id"])
    dataset = await upload(client, dataset_bytes(), "/v1/datasets")
    response = await client.post(
        "/v1/merges?wait=120",
        json={"checkpoints": ids, "method": method, "dataset_id": dataset["id"]},
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded", job
    assert job["result"]["merged"]["accuracy"] is not None
    assert job["result"]["matches"][0]["method"] == method


async def test_data_that_cannot_fit_an_inferred_cnn_is_a_clear_422(client, assert_problem) -> None:
    ids = [(await upload(client, pooled_cnn_bytes(seed)))["id"] for seed in (1, 2)]
    dataset = await upload(client, dataset_bytes(channels=3), "/v1/datasets")
    response = await client.post(
        "/v1/merges",
        json={"checkpoints": ids, "method": "activation", "dataset_id": dataset["id"]},
    )
    body = assert_problem(response, 422, "samples of shape [3, 8, 8]")
    assert "[1, any, any]" in body["detail"] and "taken from the data" in body["detail"]


def mlp_bytes(seed: int, dtype: torch.dtype) -> bytes:
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    raw = read_checkpoint(graphs.checkpoint_bytes(graphs.from_module(module, torch.zeros(1, 4))))
    return to_safetensors_bytes({k: v.to(dtype) for k, v in raw.tensors.items()}, raw.metadata)


@pytest.mark.parametrize(
    ("first", "second", "stored"),
    [
        (torch.float16, torch.bfloat16, "F16"),
        (torch.bfloat16, torch.float16, "BF16"),
        (torch.float16, torch.float16, "F16"),
        (torch.float32, torch.float16, "F32"),
    ],
)
async def test_merged_file_keeps_the_reference_dtype_and_says_so(
    client, first, second, stored
) -> None:
    a = await upload(client, mlp_bytes(1, first))
    b = await upload(client, mlp_bytes(2, second))
    response = await client.post("/v1/merges?wait=60", json={"checkpoints": [a["id"], b["id"]]})
    job = response.json()
    assert job["status"] == "succeeded", job
    inputs = [next(iter(c["dtype_summary"])) for c in (a, b)]
    assert job["result"]["dtypes"] == {"inputs": inputs, "result": stored}
    merges = (await client.get("/v1/merges", params={"job_id": job["id"]})).json()["items"]
    assert merges[0]["result"]["dtypes"]["result"] == stored
    merged = (await client.get(f"/v1/checkpoints/{merges[0]['result_checkpoint_id']}")).json()
    assert list(merged["dtype_summary"]) == [stored]
