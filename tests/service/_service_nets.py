"""Small digits networks, datasets and a tiny (untrained) metanetwork for service tests.

The metanetwork is a real ``GraphMetanet`` saved with ``models.registry.save_metanetwork``
and a card whose domain is computed from the test networks, so the service's whole
prediction path runs without depending on shipped weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

import graphs

INPUT = (64,)
METANETWORK = "tiny-digits"


def mlp(hidden: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from zoo.data import digits_split

    split = digits_split()
    x_train, x_test = split.x_train.flatten(1), split.x_test.flatten(1)
    return x_train, split.y_train, x_test[:200], split.y_test[:200]


def train(module: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(steps):
        index = torch.randint(len(x), (64,), generator=generator)
        loss = nn.functional.cross_entropy(module(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.eval()


def save_net(module: nn.Module, path: Path, input_shape: tuple[int, ...] = INPUT) -> Path:
    graphs.save(module, path, torch.zeros(1, *input_shape))
    return path


def save_dataset(path: Path, x: torch.Tensor, y: torch.Tensor) -> Path:
    save_file({"x": x.contiguous(), "y": y.contiguous()}, str(path))
    return path


def save_tiny_metanetwork(directory: Path, nets: list[Path]) -> None:
    from models.config import MetanetConfig
    from models.data import graph_of
    from models.metanet import GraphMetanet
    from models.registry import domain_of, save_metanetwork

    torch.manual_seed(0)
    checkpoints = [graphs.load(path) for path in nets]
    config = MetanetConfig(
        task="classification", num_outputs=10, hidden=8, edge_hidden=4, layers=1, fourier=4
    )
    graph_list = [graph_of(c, config.max_kernel) for c in checkpoints]
    model = GraphMetanet(config)
    model.fit_normalization(graph_list)
    card = {
        "name": METANETWORK,
        "version": "test",
        "task": "classification",
        "labels": [str(d) for d in range(10)],
        "domain": domain_of(checkpoints, graph_list),
        "metrics": {"test": {"accuracy": 0.1}},
    }
    save_metanetwork(model, card, directory)
