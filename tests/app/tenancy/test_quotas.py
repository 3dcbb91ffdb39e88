"""Quotas per tenant: stored bytes (413), jobs in flight (429 + Retry-After), training
time (the check training kinds call), the request rate per key (429 + Retry-After); each
per tenant, with overrides by tenant name, and exact under concurrent requests."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from _service_nets import mlp, save_net
from pydantic import ValidationError
from sqlalchemy import func, select

from app.models import Checkpoint, Job, JobStatus, utcnow
from app.problems import ProblemError
from app.quotas import check_training_time, quota_for, training_seconds_used
from app.settings import Settings
from tests.app.tenancy.conftest import Files, Tenant, serving

pytestmark = pytest.mark.anyio


def with_settings(settings: Settings, **overrides: Any) -> Settings:
    return Settings(_env_file=None, **(settings.model_dump() | overrides))  # type: ignore[call-arg]


async def post_file(
    client: httpx.AsyncClient, tenant: Tenant, path: Path, route: str = "/v1/checkpoints"
) -> httpx.Response:
    return await client.post(
        route, files={"file": (path.name, path.read_bytes())}, headers=tenant.headers
    )


def assert_refused(response: httpx.Response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith(slug), body
    return dict(body)


def same_size_nets(tmp_path: Path, count: int) -> list[Path]:
    """Distinct checkpoints of one size."""
    return [save_net(mlp(16, 100 + i), tmp_path / f"n{i}.safetensors") for i in range(count)]


async def test_stored_bytes_quota_is_413_and_stores_nothing(
    settings: Settings, files: Files, alice: Tenant, bob: Tenant, session_factory,
    stored_files,
) -> None:  # fmt: skip
    size = files.net_a.stat().st_size
    limited = with_settings(settings, quota_stored_bytes=size + 100)
    async with serving(limited) as (_, client):
        assert (await post_file(client, alice, files.net_a)).status_code == 201
        before = stored_files()
        body = assert_refused(await post_file(client, alice, files.net_b), 413, "quota-exceeded")
        assert str(size + 100) in body["detail"]
        refused_dataset = await post_file(client, alice, files.dataset, "/v1/datasets")
        assert_refused(refused_dataset, 413, "quota-exceeded")
        predicted = await client.post(
            "/v1/predictions", params={"metanetwork": "tiny-digits"},
            files={"file": ("b", files.net_b.read_bytes())}, headers=alice.headers,
        )  # fmt: skip
        assert_refused(predicted, 413, "quota-exceeded")
        assert stored_files() == before  # no blob, no temp file
        # the same bytes again store nothing more: answered as before
        assert (await post_file(client, alice, files.net_a)).status_code == 200
        # quotas are per tenant
        assert (await post_file(client, bob, files.net_b)).status_code == 201
    with session_factory() as session:
        owners = session.execute(select(Checkpoint.tenant_id)).scalars().all()
    assert sorted(owners) == sorted([alice.tenant_id, bob.tenant_id])


async def test_tenant_overrides_by_name(
    settings: Settings, files: Files, alice: Tenant, bob: Tenant
) -> None:
    limited = with_settings(
        settings,
        quota_stored_bytes=0,
        tenant_quotas={"bob": {"stored_bytes": None}, "alice": {"jobs_in_flight": 3}},
    )
    assert quota_for(limited, "alice").stored_bytes == 0  # not overridden: the default
    assert quota_for(limited, "alice").jobs_in_flight == 3
    async with serving(limited) as (_, client):
        assert_refused(await post_file(client, alice, files.net_a), 413, "quota-exceeded")
        assert (await post_file(client, bob, files.net_a)).status_code == 201  # no limit


async def test_concurrent_uploads_cannot_slip_under_the_quota(
    settings: Settings, alice: Tenant, tmp_path: Path
) -> None:
    nets = same_size_nets(tmp_path, 5)
    limited = with_settings(settings, quota_stored_bytes=2 * nets[0].stat().st_size)
    async with serving(limited) as (_, client):
        answers = await asyncio.gather(*(post_file(client, alice, net) for net in nets))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 201, 413, 413, 413], [a.text for a in answers]


async def test_jobs_in_flight_quota_is_429_with_retry_after(
    settings: Settings, files: Files, alice: Tenant, bob: Tenant
) -> None:
    limited = with_settings(settings, quota_jobs_in_flight=2, embedded_worker="off")
    async with serving(limited) as (_, client):
        mine = (await post_file(client, alice, files.net_a)).json()["id"]
        theirs = (await post_file(client, bob, files.net_a)).json()["id"]
        inspect = f"/v1/checkpoints/{mine}/inspect"
        jobs = [await client.post(inspect, headers=alice.headers) for _ in range(2)]
        assert [j.status_code for j in jobs] == [202, 202]
        refused = await client.post(inspect, headers=alice.headers)
        assert_refused(refused, 429, "too-many-jobs")
        assert int(refused.headers["retry-after"]) > 0
        via_jobs = await client.post(
            "/v1/jobs", json={"kind": "inspect", "params": {"checkpoint_id": mine}},
            headers=alice.headers,
        )  # fmt: skip
        assert_refused(via_jobs, 429, "too-many-jobs")
        # another tenant's jobs are not counted
        other = await client.post(f"/v1/checkpoints/{theirs}/inspect", headers=bob.headers)
        assert other.status_code == 202
        # once one ends, there is room again
        cancel = await client.post(f"/v1/jobs/{jobs[0].json()['id']}/cancel", headers=alice.headers)
        assert cancel.json()["status"] == "canceled"
        assert (await client.post(inspect, headers=alice.headers)).status_code == 202


async def test_concurrent_submissions_cannot_slip_under_the_jobs_quota(
    settings: Settings, files: Files, alice: Tenant
) -> None:
    limited = with_settings(settings, quota_jobs_in_flight=2, embedded_worker="off")
    async with serving(limited) as (_, client):
        mine = (await post_file(client, alice, files.net_a)).json()["id"]
        answers = await asyncio.gather(
            *(client.post(f"/v1/checkpoints/{mine}/inspect", headers=alice.headers)
              for _ in range(6))
        )  # fmt: skip
    assert sorted(a.status_code for a in answers) == [202, 202, 429, 429, 429, 429]


async def test_rate_limit_per_key_is_429_with_retry_after(
    settings: Settings, alice: Tenant, bob: Tenant, make_tenant
) -> None:
    carol = make_tenant("carol")
    limited = with_settings(
        settings, rate_limit="3/minute", tenant_quotas={"carol": {"rate_limit": None}}
    )
    async with serving(limited) as (_, client):
        for _ in range(3):
            assert (await client.get("/v1/checkpoints", headers=alice.headers)).status_code == 200
        refused = await client.get("/v1/checkpoints", headers=alice.headers)
        assert_refused(refused, 429, "rate-limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert (await client.get("/v1/checkpoints", headers=bob.headers)).status_code == 200
        for _ in range(5):  # carol's override: no limit
            assert (await client.get("/v1/checkpoints", headers=carol.headers)).status_code == 200
        # a request without a valid key is refused before it counts against anyone
        assert (await client.get("/v1/checkpoints")).status_code == 401


def _training_job(session, tenant_id: int, started_ago: float, ran: float | None) -> None:
    now = utcnow()
    started = now - dt.timedelta(hours=started_ago)
    session.add(
        Job(
            tenant_id=tenant_id, kind="train", params={}, max_attempts=1,
            status=JobStatus.running if ran is None else JobStatus.succeeded,
            started_at=started,
            finished_at=None if ran is None else started + dt.timedelta(hours=ran),
        )
    )  # fmt: skip


def test_training_time_counts_the_last_24_hours(
    settings: Settings, session_factory, alice: Tenant, bob: Tenant
) -> None:
    with session_factory() as session:
        _training_job(session, alice.tenant_id, started_ago=30, ran=1)  # outside the window
        _training_job(session, alice.tenant_id, started_ago=24.5, ran=1)  # half inside
        _training_job(session, alice.tenant_id, started_ago=3, ran=1)
        _training_job(session, alice.tenant_id, started_ago=0.5, ran=None)  # running: so far
        _training_job(session, bob.tenant_id, started_ago=3, ran=1)
        session.commit()
        used = training_seconds_used(session, alice.tenant_id, ["train"])
        assert used == pytest.approx(2 * 3600, abs=60)
        assert training_seconds_used(session, alice.tenant_id, ["other-kind"]) == 0

        limited = with_settings(settings, quota_training_seconds=2 * 3600 - 120)
        with pytest.raises(ProblemError) as refused:
            check_training_time(session, limited, alice.tenant_id, ["train"])
        assert refused.value.status == 429 and int(refused.value.headers["Retry-After"]) > 0
        check_training_time(session, limited, bob.tenant_id, ["train"])  # his own 1 h: fine
        session.rollback()
        roomy = with_settings(settings, quota_training_seconds=3 * 3600)
        check_training_time(session, roomy, alice.tenant_id, ["train"])
        unlimited = with_settings(settings, quota_training_seconds=None)
        check_training_time(session, unlimited, alice.tenant_id, ["train"])
        assert session.scalar(select(func.count()).select_from(Job)) == 5


@pytest.mark.parametrize(
    "values",
    [
        {"rate_limit": "lots"},
        {"tenant_quotas": {"acme": {"rate_limit": "fast"}}},
        {"tenant_quotas": {"acme": {"stored_gigabytes": 1}}},
        {"quota_stored_bytes": -1},
    ],
)
def test_bad_quota_settings_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_quota_overrides_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_TENANT_QUOTAS", '{"acme": {"jobs_in_flight": null}}')
    monkeypatch.setenv("WEIGHTSCOPE_QUOTA_STORED_BYTES", "null")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert quota_for(settings, "acme").jobs_in_flight is None
    assert quota_for(settings, "other").jobs_in_flight == settings.quota_jobs_in_flight
    assert quota_for(settings, "acme").stored_bytes is None
