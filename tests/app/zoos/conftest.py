"""Zoo fixtures: tiny self-describing networks (graphs.save) and row counts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select
from torch import nn

import graphs
from app.db import SessionFactory
from app.models import Zoo, ZooItem

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def nets(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """48 tiny self-describing MLPs (distinct bytes), made once per session."""
    root = tmp_path_factory.mktemp("zoo-nets")
    out = []
    for seed in range(48):
        torch.manual_seed(seed)
        module = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        path = root / f"net{seed}.safetensors"
        graphs.save(module, path, torch.zeros(1, 4))
        out.append(path.read_bytes())
    return out


@pytest.fixture
def zoo_rows(session_factory: SessionFactory) -> Callable[[], tuple[int, int]]:
    """(zoos, zoo items) rows in the database."""

    def count() -> tuple[int, int]:
        with session_factory() as session:
            zoos = session.scalar(select(func.count()).select_from(Zoo)) or 0
            items = session.scalar(select(func.count()).select_from(ZooItem)) or 0
            return int(zoos), int(items)

    return count
