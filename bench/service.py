"""Service throughput and latency for predictions: N concurrent HTTP clients.

Runs the real service as processes (``weightscope serve``, and ``weightscope worker`` for
scale-out) on a temporary data folder and prints, per configuration, predictions/s (jobs
finished per second of wall time), acceptance latency (POST /v1/predictions -> 202) and
end-to-end latency (POST -> job succeeded), p50 and p99:

* embedded default (SQLite, the worker process that ``serve`` supervises), without
  micro-batching (max_batch=1);
* the same with micro-batching (max_batch, max_wait_ms), and, for comparison, with the
  worker as a thread inside the API process (``WEIGHTSCOPE_EMBEDDED_WORKER=thread``);
* PostgreSQL + procrastinate with one and with two worker processes (skipped, with the
  reason, when PostgreSQL is not reachable).

Worker processes compute on the GPU when one is visible (a worker thread inside the API
process always uses the CPU). Checkpoints are small digits MLPs (64-16-10); the
metanetwork has the built-in classification size, read from ``models.fit.default_config``
(untrained: speed does not depend on the weights); ``--hidden/--edge-hidden/--layers``
override it, and ``--tiny`` (hidden=8, edge_hidden=4, layers=1) makes the forward nearly
free, so the figures show what the HTTP, database and job machinery alone can do. Targets:
>= 200 predictions/s on a 2-core CPU, p99 acceptance <= 100 ms.

    .venv/bin/python -m bench.service [--clients 16] [--requests 400] [--tiny]
        [--only embedded|postgres] [--skip-postgres] [--client raw|httpx]

The load generator is a minimal keep-alive HTTP/1.1 client (``Connection``): its CPU
shares the cores with the service, so it should cost as little as it can; ``--client
httpx`` runs the former httpx one for comparison with older figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import torch
from torch import nn

import graphs

if TYPE_CHECKING:
    from models.config import MetanetConfig

WEIGHTSCOPE = Path(sys.executable).parent / "weightscope"
NAME = "bench-digits"
Send = Callable[[str, str, bytes | None], Awaitable[tuple[int, bytes]]]


def make_checkpoints(root: Path, count: int) -> list[Path]:
    paths = []
    for seed in range(count):
        torch.manual_seed(seed)
        module = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
        path = root / f"net{seed}.safetensors"
        graphs.save(module, path, torch.zeros(1, 64))
        paths.append(path)
    return paths


def metanetwork_config(
    hidden: int | None, edge_hidden: int | None, layers: int | None
) -> MetanetConfig:
    """The built-in classification size (``models.fit.default_config``), with overrides."""
    from dataclasses import replace

    from models.fit import default_config

    config = default_config("classification")
    overrides = {"hidden": hidden, "edge_hidden": edge_hidden, "layers": layers}
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def make_metanetwork(directory: Path, nets: list[Path], config: MetanetConfig) -> None:
    from models.data import graph_of
    from models.metanet import GraphMetanet
    from models.registry import domain_of, save_metanetwork

    torch.manual_seed(0)
    checkpoints = [graphs.load(p) for p in nets]
    graph_list = [graph_of(c, config.max_kernel, config.scale_invariant) for c in checkpoints]
    model = GraphMetanet(config)
    model.fit_normalization(graph_list)
    card = {
        "name": NAME,
        "version": "bench",
        "task": "classification",
        "labels": [str(d) for d in range(10)],
        "domain": domain_of(checkpoints, graph_list),
        "metrics": {},
    }
    save_metanetwork(model, card, directory)


def forward_alone(directory: Path, nets: list[Path], batch: int) -> float:
    """The compute ceiling: the engine's cached-graph forward, with no service around it."""
    from app.device import configure_torch
    from app.predictions.engine import PredictionEngine, Version
    from app.settings import Settings

    settings = Settings(_env_file=None, metanetwork_dir=directory)
    configure_torch(settings, embedded=False)  # as a worker process would
    engine = PredictionEngine(settings)
    weights = directory / f"{NAME}.safetensors"
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    card = json.loads((directory / f"{NAME}.json").read_text())
    version = Version(1, card, weights, sha256, f"bench+{sha256[:12]}")  # as registered
    items = [(path, False) for path in nets][:batch]
    engine.predict(version, items)
    started = time.perf_counter()
    rounds = 3
    for _ in range(rounds):
        engine.predict(version, items)
    return rounds * len(items) / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Run:
    label: str
    env: dict[str, str]
    workers: int


@dataclass
class Figures:
    throughput: float
    accept: list[float]
    e2e: list[float]
    failed: int
    device: str
    service_cpu_ms: float | None = None  # CPU time of the service's processes per prediction
    client_cpu_ms: float | None = None  # CPU time of this load generator per prediction
    batch: float = 0.0  # mean forward-pass batch size a prediction was part of


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its live descendants so far (Linux /proc;
    None elsewhere): the embedded worker is a child process of ``serve``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            total += cpu_seconds(int(child)) or 0.0
    return total


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Connection:
    """One keep-alive HTTP/1.1 connection that sends one request at a time.

    The load generator's CPU comes out of the same cores as the service's, and httpx spent
    5-12 ms of CPU per prediction (a POST and a long-poll GET): a third of a core at the
    targeted rates. This writes the request bytes itself and reads the status line, the
    headers it needs and the body (Content-Length or chunked), still real HTTP over TCP.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, target: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + (body or b""))
        status_and_headers = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = status_and_headers.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            data = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            data = await self._chunked(reader)
        else:
            raise RuntimeError(f"{method} {target}: response without length: {headers}")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, data

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are sent
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


async def load(
    url: str, ids: list[int], clients: int, requests: int, client_kind: str = "raw"
) -> Figures:
    accept: list[float] = []
    e2e: list[float] = []
    failed = 0
    devices: set[str] = set()
    batches: list[int] = []
    counter = iter(range(requests))
    bodies = [json.dumps({"checkpoint_id": i, "metanetwork": NAME}).encode() for i in ids]
    host, port = url.removeprefix("http://").rsplit(":", 1)
    limits = httpx.Limits(max_connections=clients * 2)

    async def one_client(send: Send) -> None:
        nonlocal failed
        for n in counter:
            started = time.perf_counter()
            status, data = await send("POST", "/v1/predictions", bodies[n % len(bodies)])
            accepted = time.perf_counter()
            if status not in (200, 202):
                raise RuntimeError(f"POST /v1/predictions: {status} {data[:500]!r}")
            job = json.loads(data)
            while job["status"] not in ("succeeded", "failed", "canceled"):
                status, data = await send("GET", f"/v1/jobs/{job['id']}?wait=30", None)
                job = json.loads(data)
            done = time.perf_counter()
            accept.append((accepted - started) * 1000)
            e2e.append((done - started) * 1000)
            if job["status"] != "succeeded":
                failed += 1
            else:
                devices.add(job["result"]["timings"]["device"])
                batches.append(job["result"]["timings"]["batch_size"])

    started = time.perf_counter()
    if client_kind == "httpx":  # the former load generator, to compare with older figures
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

            async def via_httpx(method: str, target: str, body: bytes | None) -> tuple[int, bytes]:
                headers = {"content-type": "application/json"} if body is not None else None
                response = await client.request(method, target, content=body, headers=headers)
                return response.status_code, response.content

            await asyncio.gather(*(one_client(via_httpx) for _ in range(clients)))
    else:
        connections = [Connection(host, int(port)) for _ in range(clients)]
        try:
            await asyncio.gather(*(one_client(c.request) for c in connections))
        finally:
            for connection in connections:
                await connection.close()
    wall = time.perf_counter() - started
    figures = Figures(requests / wall, accept, e2e, failed, ",".join(sorted(devices)) or "-")
    figures.batch = sum(batches) / max(len(batches), 1)
    return figures


def wait_ready(url: str, need_worker: bool, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/readyz" if need_worker else f"{url}/livez", timeout=2)
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"service at {url} not ready after {timeout:.0f} s")


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(
    run: Run, root: Path, nets: list[Path], clients: int, requests: int, client_kind: str
) -> Figures:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **run.env, "WEIGHTSCOPE_PORT": str(port)}
    log = (root / f"{uuid.uuid4().hex[:8]}.log").open("wb")
    processes = [
        subprocess.Popen([str(WEIGHTSCOPE), "serve"], env=env, stdout=log, stderr=log, cwd=root)
    ]
    try:
        wait_ready(url, need_worker=False)
        processes += [
            subprocess.Popen(
                [str(WEIGHTSCOPE), "worker"], env=env, stdout=log, stderr=log, cwd=root
            )
            for _ in range(run.workers)
        ]
        wait_ready(url, need_worker=True)
        with httpx.Client(base_url=url, timeout=60) as client:
            ids = []
            for path in nets:
                response = client.post(
                    "/v1/checkpoints", files={"file": (path.name, path.read_bytes())}
                )
                response.raise_for_status()
                ids.append(response.json()["id"])
            for _ in range(max(run.workers, 1) * 2):  # warm up: imports, resident model, caches
                warm = client.post(
                    "/v1/predictions?wait=60", json={"checkpoint_id": ids[0], "metanetwork": NAME}
                )
                if warm.json()["status"] != "succeeded":
                    raise RuntimeError(f"warm-up prediction failed: {warm.text}")
        before = [cpu_seconds(p.pid) for p in processes]
        client_before = time.process_time()
        figures = asyncio.run(load(url, ids, clients, requests, client_kind))
        client_cpu = time.process_time() - client_before
        after = [cpu_seconds(p.pid) for p in processes]
        if None not in before and None not in after:
            used = sum(a - b for a, b in zip(after, before, strict=True))  # type: ignore[operator]
            figures.service_cpu_ms = used * 1000 / requests
        figures.client_cpu_ms = client_cpu * 1000 / requests
        return figures
    finally:
        stop(processes)


def postgres_schema(base: str) -> tuple[str, str] | None:
    """A fresh schema in the bench database: (SQLAlchemy URL, schema), or None."""
    from sqlalchemy.engine import make_url

    url = make_url(base)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"ws_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        print(f"# PostgreSQL runs skipped: {str(exc).strip().splitlines()[0]}")
        return None
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def drop_schema(base: str, schema: str) -> None:
    from sqlalchemy.engine import make_url

    conninfo = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--checkpoints", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: raw keep-alive HTTP/1.1 (light) or httpx (the former one)",
    )
    parser.add_argument(
        "--hidden", type=int, default=None, help="metanetwork width (default: the built-in size)"
    )
    parser.add_argument("--edge-hidden", type=int, default=None, help="default: built-in size")
    parser.add_argument("--layers", type=int, default=None, help="default: built-in size")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="hidden=8, edge_hidden=4, layers=1: the service ceiling without the model cost",
    )
    parser.add_argument(
        "--only", choices=["embedded", "postgres"], default=None, help="run only these configs"
    )
    args = parser.parse_args()
    if args.tiny:
        args.hidden, args.edge_hidden, args.layers = 8, 4, 1
    config = metanetwork_config(args.hidden, args.edge_hidden, args.layers)
    size = f"hidden={config.hidden}, edge_hidden={config.edge_hidden}, layers={config.layers}"

    print(
        f"# {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}"
    )
    print(
        f"# {args.clients} clients, {args.requests} predictions per run, "
        f"{args.checkpoints} distinct checkpoints (64-16-10 MLPs), {args.client} client"
    )
    header = (
        f"{'configuration':<38} {'pred/s':>8} {'accept p50':>11} {'accept p99':>11} "
        f"{'e2e p50':>9} {'e2e p99':>9} {'failed':>6} {'cpu/pred':>9} {'client':>7} "
        f"{'batch':>5}  device"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        nets = make_checkpoints(root, args.checkpoints)
        make_metanetwork(root / "metanetworks", nets[:8], config)
        print(
            f"# metanetwork forward alone, in this process: "
            f"{forward_alone(root / 'metanetworks', nets, args.max_batch):.1f} predictions/s "
            f"(batches of {args.max_batch}, {size})"
        )
        common = {
            "WEIGHTSCOPE_METANETWORK_DIR": str(root / "metanetworks"),
            "WEIGHTSCOPE_WORKER_POLL_SECONDS": "0.05",
        }
        runs = []
        if args.only != "postgres":
            runs += [
                Run("embedded (SQLite), no micro-batching", {"WEIGHTSCOPE_MAX_BATCH": "1"}, 0),
                Run(
                    f"embedded (SQLite), max_batch={args.max_batch}",
                    {
                        "WEIGHTSCOPE_MAX_BATCH": str(args.max_batch),
                        "WEIGHTSCOPE_MAX_WAIT_MS": str(args.max_wait_ms),
                    },
                    0,
                ),
                Run(
                    "  the same, worker thread in the API",
                    {
                        "WEIGHTSCOPE_EMBEDDED_WORKER": "thread",
                        "WEIGHTSCOPE_MAX_BATCH": str(args.max_batch),
                        "WEIGHTSCOPE_MAX_WAIT_MS": str(args.max_wait_ms),
                    },
                    0,
                ),
            ]
        schemas = []
        for workers in (1, 2):
            if args.skip_postgres or args.only == "embedded":
                break
            made = postgres_schema(args.postgres)
            if made is None:
                break
            url, schema = made
            schemas.append(schema)
            runs.append(
                Run(
                    f"postgres+procrastinate, {workers} worker{'s' if workers > 1 else ''}",
                    {
                        "WEIGHTSCOPE_DATABASE_URL": url,
                        "WEIGHTSCOPE_QUEUE": "procrastinate",
                        "WEIGHTSCOPE_EMBEDDED_WORKER": "off",
                        "WEIGHTSCOPE_MAX_BATCH": str(args.max_batch),
                        "WEIGHTSCOPE_MAX_WAIT_MS": str(args.max_wait_ms),
                    },
                    workers,
                )
            )
        print(header)
        try:
            for index, run in enumerate(runs):
                data_dir = root / f"data{index}"
                run.env = {**common, **run.env, "WEIGHTSCOPE_DATA_DIR": str(data_dir)}
                figures = measure(run, root, nets, args.clients, args.requests, args.client)
                print(
                    f"{run.label:<38} {figures.throughput:>8.1f} "
                    f"{percentile(figures.accept, 0.5):>9.1f}ms "
                    f"{percentile(figures.accept, 0.99):>9.1f}ms "
                    f"{percentile(figures.e2e, 0.5):>7.1f}ms "
                    f"{percentile(figures.e2e, 0.99):>7.1f}ms "
                    f"{figures.failed:>6} {ms(figures.service_cpu_ms):>9} "
                    f"{ms(figures.client_cpu_ms):>7} {figures.batch:>5.1f}  {figures.device}",
                    flush=True,
                )
        finally:
            for schema in schemas:
                drop_schema(args.postgres, schema)
    print(
        json.dumps(
            {
                "note": "predictions/s = finished jobs / wall time of the run; cpu/pred = CPU "
                "time of the service processes (serve and workers, not PostgreSQL) per "
                "prediction during the run; client = the same for this load generator; "
                "batch = mean size of the forward pass a prediction was answered in"
            }
        )
    )


if __name__ == "__main__":
    main()
