"""A 40-item classification zoo for the training tests: tiny self-describing MLPs
(``graphs.save``) whose class is their init scale, uploaded over HTTP and made a zoo with
``POST /v1/zoos``; ``insert_zoo`` writes a zoo's rows straight to the database, for zoos
the zoo API rightly refuses (a training-time check must still catch them)."""

from __future__ import annotations

from pathlib import Path

import httpx
import torch
from torch import nn

import graphs
from app.db import create_db_engine, create_session_factory, session_scope
from app.models import LOCAL_TENANT_ID, Zoo, ZooItem

CLASSES = ["small", "large"]
# per class: 12 train, 4 val, 4 test -> 40 items, every class >= 2 per split
SPLITS = ["train"] * 12 + ["val"] * 4 + ["test"] * 4
TINY = {"hidden": 8, "edge_hidden": 4, "layers": 1, "fourier": 4, "batch_size": 8,
        "warmup_epochs": 0}


def save_nets(directory: Path) -> list[tuple[Path, str, str]]:
    """(file, label, split) of the 40 networks."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for c, label in enumerate(CLASSES):
        for i, split in enumerate(SPLITS):
            torch.manual_seed(100 * c + i)
            net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(3.0 if c else 0.3)
            path = directory / f"{label}-{i}.safetensors"
            graphs.save(net, path, torch.zeros(1, 4))
            out.append((path, label, split))
    return out


async def upload_checkpoints(client: httpx.AsyncClient, nets: list[tuple[Path, str, str]]
                             ) -> list[int]:
    ids = []
    for path, _, _ in nets:
        response = await client.post("/v1/checkpoints",
                                     files={"file": (path.name, path.read_bytes())})
        assert response.status_code in (200, 201), response.text
        ids.append(int(response.json()["id"]))
    return ids


async def create_zoo(client: httpx.AsyncClient, nets: list[tuple[Path, str, str]],
                     name: str = "scales") -> dict:
    """The zoo through the API (its own seeded, stratified split: 12/4/4 per class)."""
    ids = await upload_checkpoints(client, nets)
    response = await client.post("/v1/zoos", json={
        "name": name, "task": "classification", "classes": CLASSES,
        "split_fractions": {"train": 0.6, "val": 0.2, "test": 0.2},
        "items": [{"checkpoint_id": i, "label": label}
                  for i, (_, label, _) in zip(ids, nets, strict=True)]})
    assert response.status_code == 201, response.text
    zoo: dict = response.json()
    return zoo


async def insert_zoo(client: httpx.AsyncClient, database_url: str,
                     nets: list[tuple[Path, str, str]], name: str,
                     tenant_id: int = LOCAL_TENANT_ID) -> int:
    """Checkpoints uploaded over HTTP; the zoo and its items (with the nets' own splits)
    written straight to the database."""
    ids = await upload_checkpoints(client, nets)
    engine = create_db_engine(database_url)
    try:
        with session_scope(create_session_factory(engine)) as session:
            zoo = Zoo(tenant_id=tenant_id, name=name, task="classification", classes=CLASSES,
                      seed=0, split_fractions={"train": 0.6, "val": 0.2, "test": 0.2},
                      summary={"size": len(ids)})
            session.add(zoo)
            session.flush()
            for position, (checkpoint_id, (_, label, split)) in enumerate(
                    zip(ids, nets, strict=True)):
                session.add(ZooItem(zoo_id=zoo.id, position=position,
                                    checkpoint_id=checkpoint_id, label=label, split=split))
            return int(zoo.id)
    finally:
        engine.dispose()
