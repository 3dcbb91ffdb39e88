"""Operations (issue 16): /metrics, request ids, trusted hosts and cross-site writes
(defect 9), the body read timeout and the start-up sweep of partial uploads (defect 5),
503 while the database is unreachable (defect 7), client disconnects logged once at INFO
(defect 10)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from app.blobs import TEMP_PREFIX, BlobStore
from app.main import create_app
from app.settings import Settings
from graphs.safe_io import to_safetensors_bytes

pytestmark = pytest.mark.anyio
CHECKPOINT = to_safetensors_bytes({"w": torch.ones(2, 3)})


def _metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_cover_requests_jobs_workers_and_blobs(client) -> None:
    uploaded = await client.post("/v1/checkpoints", files={"file": ("m.st", CHECKPOINT)})
    checkpoint = uploaded.json()["id"]
    accepted = await client.post(f"/v1/checkpoints/{checkpoint}/inspect")
    job = (await client.get(accepted.headers["location"], params={"wait": 30})).json()
    assert job["status"] == "succeeded"
    await client.get("/v1/jobs/999999")

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    metrics = _metrics(response.text)
    # by route template: the ids of the paths do not become labels
    latency = {
        labels: value
        for (name, labels), value in metrics.items()
        if name == "weightscope_http_request_duration_seconds_count"
    }
    assert latency[(("method", "GET"), ("route", "/v1/jobs/{job_id}"))] == 2
    assert latency[(("method", "POST"), ("route", "/v1/checkpoints"))] == 1
    assert metrics[
        ("weightscope_http_requests_total",
         (("method", "GET"), ("route", "/v1/jobs/{job_id}"), ("status", "4xx")))
    ] == 1
    assert metrics[("weightscope_jobs", (("kind", "inspect"), ("status", "succeeded")))] == 1
    assert metrics[("weightscope_queue_depth", (("queue", "jobs"),))] == 0
    durations = (("kind", "inspect"), ("status", "succeeded"))
    assert metrics[("weightscope_job_duration_seconds_count", durations)] == 1
    every = tuple(sorted((*durations, ("le", "+Inf"))))
    assert metrics[("weightscope_job_duration_seconds_bucket", every)] == 1
    assert metrics[("weightscope_workers_alive", ())] == 1
    assert metrics[("weightscope_database_up", ())] == 1
    assert metrics[("weightscope_blob_store_files", ())] == 1
    assert metrics[("weightscope_blob_store_bytes", ())] == len(CHECKPOINT)


async def test_request_id_is_returned_and_on_the_log_lines(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="weightscope.access")
    given = await client.get("/livez", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/livez", headers={"X-Request-ID": "bad\tid"})
    assert made.headers["x-request-id"] != "bad\tid" and len(made.headers["x-request-id"]) == 32
    ids = [record.request_id for record in caplog.records if record.name == "weightscope.access"]
    assert ids == ["abc-123", made.headers["x-request-id"]]


def test_log_lines_carry_the_job_id_and_the_text_format_shows_it(caplog) -> None:
    from app import logs

    caplog.set_level(logging.INFO)
    with logs.job_context("7,8"):
        logging.getLogger("app.jobs.runner").info("inside the job")
    logging.getLogger("app.jobs.runner").info("outside")
    inside, outside = caplog.records[-2:]
    assert inside.job_id == "7,8" and outside.job_id is None
    formatter = logs.TextFormatter("%(levelname)s %(message)s")
    assert formatter.format(inside) == "INFO inside the job [job_id=7,8]"
    assert formatter.format(outside) == "INFO outside"


async def test_untrusted_host_is_refused(client, assert_problem) -> None:
    refused = await client.get("/v1/checkpoints", headers={"Host": "attacker.example"})
    assert_problem(refused, 400, "attacker.example")
    assert (await client.get("/livez", headers={"Host": "localhost:8000"})).status_code == 200


async def test_default_trusted_hosts_are_loopback_and_the_bind_host(tmp_path: Path) -> None:
    from app.guards import default_trusted_hosts, host_name

    assert default_trusted_hosts("127.0.0.1") == ["localhost", "127.0.0.1", "::1"]
    assert default_trusted_hosts("api.example.org")[-1] == "api.example.org"
    assert default_trusted_hosts("0.0.0.0") == ["localhost", "127.0.0.1", "::1"]
    assert host_name("[::1]:8000") == "::1" and host_name("LocalHost:1") == "localhost"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.localhost"},
    ],
)
async def test_cross_site_upload_is_refused_and_leaves_nothing(
    client, headers, assert_problem, checkpoint_rows, stored_files
) -> None:
    refused = await client.post(
        "/v1/checkpoints", files={"file": ("m.st", CHECKPOINT)}, headers=headers
    )
    assert_problem(refused, 403, "cross-site")
    assert checkpoint_rows() == 0 and stored_files() == []
    assert "access-control-allow-origin" not in refused.headers


async def test_same_origin_and_programs_may_write(client) -> None:
    own = await client.post(
        "/v1/checkpoints",
        files={"file": ("m.st", CHECKPOINT)},
        headers={"Origin": "http://localhost:8000", "Host": "localhost:8000",
                 "Sec-Fetch-Site": "same-origin"},
    )
    assert own.status_code == 201
    assert (await client.get("/v1/checkpoints", headers={"Origin": "http://evil.example"})).json()


async def test_cors_is_closed_by_default_and_opens_per_setting(settings: Settings) -> None:
    allowed = "https://dashboard.example"
    for origins, expect in (([], None), ([allowed], allowed)):
        application = create_app(settings.model_copy(update={"cors_origins": origins}))
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://ws") as client:
                preflight = await client.options(
                    "/v1/checkpoints",
                    headers={"Origin": allowed, "Access-Control-Request-Method": "POST"},
                )
                assert preflight.headers.get("access-control-allow-origin") == expect
                posted = await client.post(
                    "/v1/checkpoints", files={"file": ("m.st", CHECKPOINT)},
                    headers={"Origin": allowed},
                )
                assert posted.status_code == (403 if expect is None else 201)


async def test_stalled_body_is_answered_408_and_leaves_no_temp_file(
    settings: Settings, stored_files, checkpoint_rows
) -> None:
    application = create_app(settings.model_copy(update={"body_read_timeout_seconds": 0.3}))
    messages: list[dict] = []

    async def receive() -> dict:
        if not messages:
            messages.append({})
            return {"type": "http.request", "body": CHECKPOINT[:10], "more_body": True}
        await asyncio.sleep(3600)  # the client stalls
        raise AssertionError("unreachable")

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/checkpoints", "raw_path": b"/v1/checkpoints",
        "query_string": b"", "root_path": "",
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/octet-stream")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
    }
    async with application.router.lifespan_context(application):
        await asyncio.wait_for(application(scope, receive, send), timeout=30)
    start = sent[0]
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert stored_files() == [] and checkpoint_rows() == 0


async def test_client_disconnect_mid_upload_is_one_info_line(
    app, stored_files, checkpoint_rows, caplog
) -> None:
    caplog.set_level(logging.INFO)
    chunks = [
        {"type": "http.request", "body": CHECKPOINT[:10], "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict:
        return chunks.pop(0)

    async def send(_: dict) -> None:
        pass

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/checkpoints", "raw_path": b"/v1/checkpoints",
        "query_string": b"", "root_path": "",
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/octet-stream")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    disconnects = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(disconnects) == 1 and disconnects[0].levelno == logging.INFO
    assert disconnects[0].exc_info is None
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert stored_files() == [] and checkpoint_rows() == 0


async def test_database_unreachable_is_503_with_retry_after(tmp_path: Path, assert_problem) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        database_url="postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2",
        embedded_worker="off",
        database_retry_after_seconds=7,
        auth="open",  # /metrics needs no key check then, so it answers during the outage
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            for response in (
                await client.get("/v1/checkpoints"),
                await client.post("/v1/checkpoints", files={"file": ("m.st", CHECKPOINT)}),
            ):
                assert_problem(response, 503, "database is unreachable or busy")
                assert response.headers["retry-after"] == "7"
            metrics = _metrics((await client.get("/metrics")).text)
            assert metrics[("weightscope_database_up", ())] == 0


def test_sweep_removes_abandoned_temp_files_and_keeps_live_ones(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    abandoned = blobs.root / f"{TEMP_PREFIX}abandoned"
    abandoned.write_bytes(b"partial")  # what a SIGKILLed upload leaves behind
    live = blobs.temp()  # an upload still being written (locked)
    live.write(b"streaming")
    finished = blobs.put_bytes(b"a blob")
    assert blobs.sweep_temp_files() == 1
    assert not abandoned.exists() and live.path.exists() and blobs.exists(finished)
    live.discard()


def test_configured_text_and_json_lines(capsys) -> None:
    import json

    from app import logs

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        for log_format in ("text", "json"):
            logs.configure_logging(log_format)
            with logs.job_context(5):
                logging.getLogger("app.jobs.runner").warning("it ran")
            line = capsys.readouterr().err.strip().splitlines()[-1]
            if log_format == "text":
                assert line.endswith("WARNING app.jobs.runner: it ran [job_id=5]"), line
            else:
                fields = json.loads(line)
                assert fields["level"] == "WARNING" and fields["message"] == "it ran"
                assert fields["job_id"] == "5" and fields["request_id"] is None
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_an_exhausted_connection_pool_counts_as_unreachable() -> None:
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from app.db import database_unreachable

    assert database_unreachable(PoolTimeout("QueuePool limit reached"))
    assert not database_unreachable(ValueError("bad input"))


def test_worker_metrics_port_and_gpu_memory_families() -> None:
    import socket

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    from app.metrics import gpu_families, gpu_memory, serve_worker_metrics

    assert gpu_memory() is None  # this process never initialised CUDA
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve_worker_metrics(port)
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert scraped.status_code == 200 and "process_resident_memory_bytes" in scraped.text

    memory = {"0": {"allocated": 1024.0, "total": 8192.0}}

    class Fixed(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            yield from gpu_families(memory, "w1")

    registry = CollectorRegistry()
    registry.register(Fixed())
    samples = _metrics(generate_latest(registry).decode())
    labels = (("device", "0"), ("kind", "allocated"), ("worker", "w1"))
    assert samples[("weightscope_worker_gpu_memory_bytes", labels)] == 1024.0
