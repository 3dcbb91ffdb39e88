"""Fixtures for tenancy tests: the service with authentication required (SQLite and
PostgreSQL), two tenants' keys, and small real networks, a dataset and a tiny metanetwork
so that every route (predictions and merges included) does its real work."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).parents[2] / "service"))

from _service_nets import METANETWORK, mlp, save_dataset, save_net, save_tiny_metanetwork

from app.db import SessionFactory, create_db_engine, create_session_factory
from app.keys import create_key
from app.migrate import upgrade
from app.settings import Settings
from tests.app.conftest import make_settings
from tests.app.metanetworks._zoo import save_nets

torch.set_num_threads(1)


@dataclass(frozen=True)
class Files:
    net_a: Path
    net_b: Path
    dataset: Path
    metanetworks: Path
    zoo_nets: list[tuple[Path, str, str]]  # (file, label, split): a 40-item zoo's networks


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("tenancy-files")
    nets = [save_net(mlp(16, seed), root / f"net{seed}.safetensors") for seed in (1, 2)]
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(40, 64, generator=generator)
    y = torch.randint(10, (40,), generator=generator)
    metanetworks = root / "metanetworks"
    save_tiny_metanetwork(metanetworks, nets)
    dataset = save_dataset(root / "data.safetensors", x, y)
    return Files(nets[0], nets[1], dataset, metanetworks, save_nets(root / "zoo"))


def tenancy_settings(data_dir: Path, database_url: str, files: Files, **overrides: object):
    values: dict[str, object] = {
        "auth": "required",
        "metanetwork_dir": files.metanetworks,
        "max_wait_ms": 0.0,
        "rate_limit": "",
        **overrides,
    }
    return make_settings(data_dir, database_url, **values)


@pytest.fixture
def settings(tmp_path: Path, any_database_url: str, files: Files) -> Settings:
    """Authentication required, on SQLite and on PostgreSQL."""
    settings = tenancy_settings(tmp_path / "data", any_database_url, files)
    upgrade(settings.database_url)
    return settings


@pytest.fixture
def session_factory(settings: Settings) -> Iterator[SessionFactory]:
    engine = create_db_engine(settings.database_url)
    yield create_session_factory(engine)
    engine.dispose()


@dataclass(frozen=True)
class Tenant:
    """One tenant's key, as the headers a client sends."""

    name: str
    key_id: int
    tenant_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_tenant(session_factory: SessionFactory) -> Callable[..., Tenant]:
    def make(name: str, admin: bool = False) -> Tenant:
        created = create_key(session_factory, f"{name}-key", name, admin)
        return Tenant(name, created.key_id, created.tenant_id, created.token)

    return make


@pytest.fixture
def alice(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant("alice")


@pytest.fixture
def bob(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant("bob")


@pytest.fixture
async def as_alice(client: httpx.AsyncClient, alice: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    """A client with alice's key (the same app as ``client``)."""
    async with _with_headers(client, alice.headers) as scoped:
        yield scoped


@pytest.fixture
async def as_bob(client: httpx.AsyncClient, bob: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with _with_headers(client, bob.headers) as scoped:
        yield scoped


def _with_headers(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=client._transport, base_url=client.base_url, headers=headers
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on these settings, started, with a client (no key of its own)."""
    from app.main import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield application, client


async def upload(client: httpx.AsyncClient, path: Path, route: str = "/v1/checkpoints") -> dict:
    response = await client.post(route, files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 201, response.text
    return dict(response.json())


__all__ = ["METANETWORK", "Files", "Tenant", "serving", "tenancy_settings", "upload"]
