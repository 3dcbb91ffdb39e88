"""The CLI as a client of a running service (``--server URL``): upload, queue, follow the
job's server-sent events with a progress bar, print the answer; problems are one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.formatting import history_tables, merge_lines, prediction_line

TERMINAL = ("succeeded", "failed", "canceled")


class ClientError(Exception):
    """A one-line reason the command failed (the service's problem detail, or I/O)."""


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        body: dict[str, Any] = response.json()
        return body
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise ClientError(f"{response.status_code} {response.reason_phrase}: {detail}")


def connect(server: str, timeout: float = 60.0) -> httpx.Client:
    return httpx.Client(base_url=server.rstrip("/"), timeout=timeout)


def upload(client: httpx.Client, path: str | Path, route: str = "/v1/checkpoints") -> dict:
    file = Path(path)
    try:
        content = file.read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read {file}: {exc.strerror}") from None
    return _check(client.post(route, files={"file": (file.name, content)}))


def follow(client: httpx.Client, job: dict[str, Any], console: Console) -> dict[str, Any]:
    """Show the job's progress from its event stream until it is finished; the last job."""
    label = f"job {job['id']} ({job['kind']})"
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"{label}: {job['status']}", total=1.0)
        while job["status"] not in TERMINAL:
            with client.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=None) as stream:
                if not stream.is_success:
                    stream.read()
                    _check(stream)
                for line in stream.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    job = json.loads(line.removeprefix("data: "))
                    progress.update(
                        task, completed=job["progress"], description=f"{label}: {job['status']}"
                    )
    if job["status"] != "succeeded":
        raise ClientError(f"job {job['id']} {job['status']}: {job['error']}")
    return job


def choose_metanetwork(client: httpx.Client, name: str | None) -> str:
    if name:
        return name
    names = [m["name"] for m in _check_list(client.get("/v1/metanetworks"))]
    if len(names) != 1:
        raise ClientError(
            f"the server has {len(names)} metanetworks ({', '.join(names) or 'none'}); "
            "choose one with --metanetwork"
        )
    return names[0]


def _check_list(response: httpx.Response) -> list[dict[str, Any]]:
    if not response.is_success:
        _check(response)
    body: list[dict[str, Any]] = response.json()
    return body


def predict(server: str, file: str, metanetwork: str | None, force: bool) -> str:
    console = Console(stderr=True)
    with connect(server) as client:
        name = choose_metanetwork(client, metanetwork)
        path = Path(file)
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror}") from None
        job = _check(
            client.post(
                "/v1/predictions",
                params={"metanetwork": name, "force": str(force).lower()},
                files={"file": (path.name, content)},
            )
        )
        return prediction_line(follow(client, job, console)["result"])


def merge(
    server: str,
    a: str,
    b: str,
    data: str | None,
    method: str,
    lam: float,
    out: str | None,
    canonical: bool = False,
) -> list[str]:
    console = Console(stderr=True)
    with connect(server) as client:
        ids = [upload(client, a)["id"], upload(client, b)["id"]]
        dataset_id = upload(client, data, "/v1/datasets")["id"] if data else None
        job = _check(
            client.post(
                "/v1/merges",
                json={"checkpoints": ids, "method": method, "lam": lam, "dataset_id": dataset_id,
                      "canonical": canonical},
            )
        )
        follow(client, job, console)
        (row,) = _check(client.get("/v1/merges", params={"job_id": job["id"]}))["items"]
        lines = [
            f"merge {row['id']}: checkpoints {ids} -> checkpoint {row['result_checkpoint_id']}",
            *merge_lines(row["result"]),
        ]
        if out:
            download = client.get(f"/v1/checkpoints/{row['result_checkpoint_id']}/file")
            _check_bytes(download)
            Path(out).write_bytes(download.content)
            lines.append(f"wrote {out}")
        return lines


def _check_bytes(response: httpx.Response) -> None:
    if not response.is_success:
        _check(response)


def history(server: str, limit: int) -> list[Table]:
    with connect(server) as client:
        predictions = _check(client.get("/v1/predictions", params={"limit": limit}))["items"]
        merges = _check(client.get("/v1/merges", params={"limit": limit}))["items"]
    return history_tables(predictions, merges)
