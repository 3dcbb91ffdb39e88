"""The worker's graph cache keeps plain and scale-invariant graphs of one blob apart.

Two metanetworks in one folder, the same weights, one reading the canonical form: a blob
graphed for the plain one first must not be served from the cache to the invariant one,
which answers a ReLU-rescaled copy exactly as it answers the original.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

import graphs
from app.predictions.engine import PredictionEngine, Version
from graphs.canonical import random_rescaling
from models import GraphMetanet, MetanetConfig
from models.data import graph_of
from models.registry import domain_of, save_metanetwork
from tests.app.conftest import make_settings


def cnn() -> graphs.Checkpoint:
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(4, 5, 3, 2, 1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(5, 10))
    return graphs.from_module(module, torch.zeros(1, 1, 8, 8))


def ship(directory: Path, name: str, scale_invariant: bool, ckpt: graphs.Checkpoint) -> None:
    torch.manual_seed(0)
    model = GraphMetanet(MetanetConfig(hidden=16, edge_hidden=8, layers=2, fourier=4,
                                       scale_invariant=scale_invariant))
    g = graph_of(ckpt, scale_invariant=scale_invariant)
    model.fit_normalization([g])
    card = {"name": name, "version": "t", "task": "generalization",
            "domain": domain_of([ckpt], [g]),
            "conformal": {"half_width": 0.1, "coverage": 0.9}}
    save_metanetwork(model, card, directory)


def version(engine: PredictionEngine, nets: Path, name: str, row_id: int) -> Version:
    """The version record the service would hand the engine for a built-in."""
    card = json.loads((nets / f"{name}.json").read_text())
    weights = nets / f"{name}.safetensors"
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    return Version(row_id, card, weights, sha256, f"t+{sha256[:12]}")


def test_cache_is_keyed_by_the_scale_invariant_flag(tmp_path: Path) -> None:
    ckpt = cnn()
    copy = random_rescaling(ckpt, torch.Generator().manual_seed(1))
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    graphs.save_checkpoint(ckpt, blobs / "a.safetensors")
    graphs.save_checkpoint(copy, blobs / "b.safetensors")
    nets = tmp_path / "nets"
    ship(nets, "plain", False, ckpt)
    ship(nets, "si", True, ckpt)
    settings = make_settings(tmp_path / "data", "sqlite://", metanetwork_dir=nets)
    engine = PredictionEngine(settings)
    items = [(blobs / "a.safetensors", False), (blobs / "b.safetensors", False)]
    plain = engine.predict(version(engine, nets, "plain", 1), items)  # plain graphs first
    invariant = engine.predict(version(engine, nets, "si", 2), items)
    assert all(isinstance(o, dict) for o in plain + invariant), (plain, invariant)
    assert abs(plain[0]["value"] - plain[1]["value"]) > 1e-6
    assert abs(invariant[0]["value"] - invariant[1]["value"]) < 1e-6
