"""Small files for the lifecycle tests (``sys.path`` gets this folder from its conftest)."""

from __future__ import annotations

import httpx
import torch

import graphs
from graphs.safe_io import to_safetensors_bytes


def mlp_bytes(seed: int) -> bytes:
    """A self-describing MLP checkpoint (mergeable)."""
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return graphs.checkpoint_bytes(graphs.from_module(module, torch.zeros(1, 4)))


def eval_set_bytes(seed: int, samples: int = 16) -> bytes:
    """A dataset file (also a valid, architecture-less checkpoint: same bytes, one blob)."""
    generator = torch.Generator().manual_seed(seed)
    return to_safetensors_bytes(
        {"x": torch.randn(samples, 4, generator=generator), "y": torch.arange(samples) % 3}
    )


async def upload(client: httpx.AsyncClient, data: bytes, route: str = "/v1/checkpoints"):
    return await client.post(route, files={"file": ("m.safetensors", data)})
