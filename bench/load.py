"""Load bench: many concurrent clients (locust) against the embedded default, then a check
that the service kept its word.

Starts ``weightscope serve`` on a temporary data folder (SQLite, the embedded worker
process, the built-in metanetworks), uploads the built-in samples of the metanetwork, and
runs ``--clients`` locust users for ``--seconds``. Each user mixes uploads of fresh
checkpoints (new bytes every time), predictions (202, job polled later) and reads (lists,
one checkpoint, one job). It prints errors, requests/s and latency percentiles per request
type, then waits for every accepted job to be terminal and checks every blob against its
sha256 (files on disk, and each uploaded checkpoint downloaded again).

    .venv/bin/python -m bench.load [--clients 150] [--seconds 60] [--api-key KEY]
        [--url http://127.0.0.1:8000]   # an already running service instead

``--api-key`` sends ``Authorization: Bearer KEY`` with every request (a service with
auth on).
"""

# ruff: noqa: I001 (locust is imported first: it patches the standard library for gevent)
from __future__ import annotations

from locust import HttpUser, between, task  # first: locust patches the standard library

import argparse
import hashlib
import io
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar

import gevent
import httpx
import numpy as np
from locust.env import Environment
from locust.stats import StatsEntry
from safetensors.numpy import save

WEIGHTSCOPE = Path(sys.executable).parent / "weightscope"
ROOT = Path(__file__).resolve().parent.parent
METANETWORK = "digits-cnn-generalization"
TERMINAL = {"succeeded", "failed", "canceled"}


class Shared:
    """What the users share: auth headers, in-domain checkpoint ids, accepted jobs."""

    headers: ClassVar[dict[str, str]] = {}
    sample_ids: ClassVar[list[int]] = []
    uploaded: ClassVar[dict[int, str]] = {}  # checkpoint id -> sha256 the service answered
    jobs: ClassVar[list[int]] = []
    lock = threading.Lock()


def fresh_checkpoint(rng: random.Random) -> bytes:
    """A small ``nn.Sequential`` MLP (inferred layout) with new weights: new bytes."""
    gen = np.random.default_rng(rng.getrandbits(32))
    tensors = {
        "0.weight": gen.standard_normal((16, 64), dtype=np.float32),
        "0.bias": gen.standard_normal(16, dtype=np.float32),
        "2.weight": gen.standard_normal((10, 16), dtype=np.float32),
        "2.bias": gen.standard_normal(10, dtype=np.float32),
    }
    return save(tensors)


class ServiceUser(HttpUser):
    wait_time = between(1.0, 3.0)  # a person or script between calls: ~75 requests/s offered

    def on_start(self) -> None:
        self.client.headers.update(Shared.headers)
        self.rng = random.Random(id(self))

    @task(2)
    def upload(self) -> None:
        data = fresh_checkpoint(self.rng)
        with self.client.post(
            "/v1/checkpoints",
            files={"file": ("net.safetensors", io.BytesIO(data))},
            name="POST /v1/checkpoints",
            catch_response=True,
        ) as response:
            if response.status_code not in (200, 201):
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            body = response.json()
            if body["sha256"] != hashlib.sha256(data).hexdigest():
                response.failure("the answered sha256 is not the upload's")
            with Shared.lock:
                Shared.uploaded[body["id"]] = body["sha256"]

    @task(3)
    def predict(self) -> None:
        checkpoint = self.rng.choice(Shared.sample_ids)
        with self.client.post(
            "/v1/predictions",
            json={"checkpoint_id": checkpoint, "metanetwork": METANETWORK},
            name="POST /v1/predictions",
            catch_response=True,
        ) as response:
            if response.status_code != 202:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            with Shared.lock:
                Shared.jobs.append(response.json()["id"])

    @task(2)
    def list_checkpoints(self) -> None:
        self.client.get("/v1/checkpoints?limit=20", name="GET /v1/checkpoints")

    @task(1)
    def read_checkpoint(self) -> None:
        checkpoint = self.rng.choice(Shared.sample_ids)
        self.client.get(f"/v1/checkpoints/{checkpoint}", name="GET /v1/checkpoints/{id}")

    @task(2)
    def read_job(self) -> None:
        with Shared.lock:
            job = self.rng.choice(Shared.jobs) if Shared.jobs else None
        if job is not None:
            self.client.get(f"/v1/jobs/{job}", name="GET /v1/jobs/{id}")

    @task(1)
    def list_predictions(self) -> None:
        self.client.get("/v1/predictions?limit=20", name="GET /v1/predictions")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_service(data_dir: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "WEIGHTSCOPE_DATA_DIR": str(data_dir),
        "WEIGHTSCOPE_PORT": str(port),
    }
    log = (data_dir.parent / "serve.log").open("wb")
    return subprocess.Popen(
        [str(WEIGHTSCOPE), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(client: httpx.Client, process: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit("weightscope serve exited; see serve.log")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the service did not become ready")


def upload_samples(client: httpx.Client) -> list[int]:
    ids = []
    for path in sorted((ROOT / "models" / "builtin" / "samples" / METANETWORK).glob("*")):
        response = client.post("/v1/checkpoints", files={"file": (path.name, path.read_bytes())})
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def run_load(url: str, clients: int, seconds: float, spawn_rate: float) -> Environment:
    env = Environment(user_classes=[ServiceUser], host=url)
    runner = env.create_local_runner()
    runner.start(clients, spawn_rate=spawn_rate)
    gevent.spawn_later(seconds, runner.quit)
    runner.greenlet.join()
    return env


def print_stats(env: Environment, seconds: float) -> int:
    print(f"{'request':32} {'count':>7} {'errors':>6} {'req/s':>7} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    rows: list[StatsEntry] = sorted(env.stats.entries.values(), key=lambda e: e.name)
    for entry in [*rows, env.stats.total]:
        name = "all" if entry is env.stats.total else entry.name
        print(
            f"{name:32} {entry.num_requests:>7} {entry.num_failures:>6} "
            f"{entry.num_requests / seconds:>7.1f} "
            f"{entry.get_response_time_percentile(0.5):>7.0f} "
            f"{entry.get_response_time_percentile(0.95):>7.0f} "
            f"{entry.get_response_time_percentile(0.99):>7.0f} {entry.max_response_time:>7.0f}"
        )
    for error in env.stats.errors.values():
        print(f"  error x{error.occurrences}: {error.method} {error.name}: {error.error}")
    return int(env.stats.total.num_failures)


def check_jobs(client: httpx.Client, jobs: list[int]) -> tuple[int, int, float]:
    """Waits for every accepted job; returns (not terminal, failed, seconds waited)."""
    started = time.monotonic()
    pending = set(jobs)
    failed = 0
    deadline = started + 600
    while pending and time.monotonic() < deadline:
        for job in list(pending):
            status = client.get(f"/v1/jobs/{job}", params={"wait": 5}).json()["status"]
            if status in TERMINAL:
                pending.discard(job)
                failed += status != "succeeded"
    return len(pending), failed, time.monotonic() - started


def check_blobs(client: httpx.Client, uploaded: dict[int, str], data_dir: Path | None) -> int:
    """Blobs whose bytes do not match their sha256: on disk, and as downloaded."""
    bad = 0
    if data_dir is not None:
        for path in (data_dir / "blobs").rglob("*"):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                bad += digest != path.parent.name + path.name
    for checkpoint, sha256 in uploaded.items():
        response = client.get(f"/v1/checkpoints/{checkpoint}/file")
        bad += response.status_code != 200 or hashlib.sha256(response.content).hexdigest() != sha256
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--spawn-rate", type=float, default=50.0, help="users started per s")
    parser.add_argument("--api-key", default=None, help="sent as Authorization: Bearer KEY")
    parser.add_argument("--url", default=None, help="a running service (default: start one)")
    args = parser.parse_args()
    if args.api_key:
        Shared.headers = {"Authorization": f"Bearer {args.api_key}"}

    process = None
    data_dir = None
    url = args.url
    if url is None:
        data_dir = Path(tempfile.mkdtemp(prefix="ws-load-")) / "data"
        data_dir.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = start_service(data_dir, port)
    try:
        with httpx.Client(base_url=url, headers=Shared.headers, timeout=60) as client:
            wait_ready(client, process)
            Shared.sample_ids = upload_samples(client)
            print(f"# {args.clients} clients for {args.seconds:g} s against {url}"
                  f" ({'service started here' if process else 'running service'})")
            env = run_load(url, args.clients, args.seconds, args.spawn_rate)
            errors = print_stats(env, args.seconds)
            pending, failed, waited = check_jobs(client, Shared.jobs)
            print(f"# jobs accepted: {len(Shared.jobs)}; not terminal: {pending}; failed: "
                  f"{failed} (all terminal {waited:.1f} s after the load)")
            bad = check_blobs(client, Shared.uploaded, data_dir)
            print(f"# checkpoints uploaded: {len(Shared.uploaded)}; blobs not matching their "
                  f"sha256: {bad}")
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
    sys.exit(1 if errors or pending or bad else 0)


if __name__ == "__main__":
    main()
