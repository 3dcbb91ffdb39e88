"""``weightscope train --server URL``: ask a service to train a metanetwork on a zoo and
follow the job's event stream (a progress bar on a terminal, one line per epoch
otherwise). Plain HTTP, the same calls any client makes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

TERMINAL = ("succeeded", "failed", "canceled")


class RemoteError(Exception):
    """A one-line reason: the service's problem detail, or the job's error."""


def _client(server: str, api_key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60.0)


def _body(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        body: dict[str, Any] = response.json()
        return body
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise RemoteError(f"{response.status_code} {response.reason_phrase}: {detail}")


def events(client: httpx.Client, job_id: int) -> Iterator[dict[str, Any]]:
    """The job as each ``job`` event shows it, until it is terminal (reconnecting when the
    stream ends early)."""
    job: dict[str, Any] = {"status": "queued"}
    while job["status"] not in TERMINAL:
        with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=None) as stream:
            if not stream.is_success:
                stream.read()
                _body(stream)
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    job = json.loads(line.removeprefix("data: "))
                    yield job


def epoch_line(detail: dict[str, Any] | None) -> str:
    """``epoch 3/50  loss 0.4120  val accuracy 0.8750  eta 12s`` (what is known so far)."""
    if detail and detail.get("phase") == "trigger search":
        return f"trigger search {detail['searched']}/{detail['items']} networks"
    if not detail or "epoch" not in detail:
        return "starting"
    parts = [f"epoch {detail['epoch']}/{detail['epochs']}"]
    if "train_loss" in detail:
        parts.append(f"loss {detail['train_loss']:.4f}")
    if "val" in detail:
        parts.append(f"val {detail['val_metric']} {detail['val']:.4f}")
    if "eta_s" in detail:
        parts.append(f"eta {detail['eta_s']:.0f}s")
    if detail.get("resumed_from_epoch"):
        parts.append(f"(resumed at epoch {detail['resumed_from_epoch']})")
    return "  ".join(parts)


def summary(metanetwork: dict[str, Any]) -> list[str]:
    """The trained version's name and its test metrics beside the baseline's."""
    card = metanetwork["card"]
    test, baseline = card["metrics"]["test"], card["baseline"]["test"]
    keys = ["accuracy"] if "accuracy" in test else ["tau_b", "r2", "mae"]
    lines = [
        f"{metanetwork['name']}@{metanetwork['version_number']}: trained on zoo "
        f"{metanetwork['zoo_id']}, {card['epochs_run']} epochs (best {card['best_epoch']})"
    ]
    for key in keys:
        lines.append(f"  test {key}: {test[key]:.4f}  (statistics baseline {baseline[key]:.4f})")
    conformal = card.get("conformal") or {}
    if conformal:
        lines.append(
            f"  conformal: {conformal['coverage']:.0%} target, "
            f"{conformal['test_coverage']:.1%} measured on test"
        )
    return lines


def train(
    server: str,
    zoo_id: int,
    name: str,
    epochs: int | None = None,
    config: dict[str, Any] | None = None,
    time_budget_s: float | None = None,
    follow: bool = False,
    api_key: str | None = None,
    echo: Callable[[str], None] = print,
    console: Console | None = None,
) -> dict[str, Any]:
    """Queue the ``train`` job; with ``follow``, show its progress and return the trained
    metanetwork (raises :class:`RemoteError` when the job fails), else return the job."""
    request: dict[str, Any] = {"name": name, "zoo_id": zoo_id}
    if epochs is not None:
        request["epochs"] = epochs
    if time_budget_s is not None:
        request["time_budget_s"] = time_budget_s
    if config:
        request["config"] = config
    console = console or Console(stderr=True)
    with _client(server, api_key) as client:
        job = _body(client.post("/v1/metanetworks", json=request))
        echo(f"job {job['id']} (train {name} on zoo {zoo_id}): {job['status']}")
        if not follow:
            return job
        job = _follow(client, job, console, echo)
        if job["status"] != "succeeded":
            raise RemoteError(f"job {job['id']} {job['status']}: {job['error']}")
        ref = f"{name}@{job['result']['version']}"
        metanetwork = _body(client.get(f"/v1/metanetworks/{ref}"))
    for line in summary(metanetwork):
        echo(line)
    return metanetwork


def _follow(
    client: httpx.Client, job: dict[str, Any], console: Console, echo: Callable[[str], None]
) -> dict[str, Any]:
    job_id = job["id"]
    if not console.is_terminal:  # logs and pipes: one line per change
        last = ""
        for job in events(client, job_id):
            line = f"{job['status']}: {epoch_line(job.get('progress_detail'))}"
            if line != last:
                echo(line)
                last = line
        return job
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("queued", total=1.0)
        for job in events(client, job_id):
            bar.update(
                task, completed=job["progress"], description=epoch_line(job.get("progress_detail"))
            )
    return job
