"""``weightscope predict|merge|history --server URL`` against a real HTTP server (uvicorn
on a loopback port, embedded worker)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import Files
from typer.testing import CliRunner

import graphs
from app.cli import app as cli
from app.main import create_app
from app.settings import Settings


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield url
    instance.should_exit = True
    thread.join(10)


def test_predict_merge_history_as_a_client(server: str, files: Files, tmp_path: Path) -> None:
    runner = CliRunner()
    predicted = runner.invoke(cli, ["predict", str(files.net_a), "--server", server])
    assert predicted.exit_code == 0, predicted.output
    assert "tiny-digits (test+" in predicted.output and "label " in predicted.output

    out = tmp_path / "merged.safetensors"
    merged = runner.invoke(
        cli,
        [
            "merge",
            str(files.net_a),
            str(files.net_b),
            "--server",
            server,
            "--data",
            str(files.dataset),
            "--out",
            str(out),
        ],
    )
    assert merged.exit_code == 0, merged.output
    assert "loss barrier: naive" in merged.output and f"wrote {out}" in merged.output
    assert graphs.load(out).architecture == graphs.load(files.net_a).architecture

    history = runner.invoke(cli, ["history", "--server", server])
    assert history.exit_code == 0, history.output
    assert "predictions" in history.output and "merges" in history.output
    assert "tiny-digits" in history.output
    assert len(httpx.get(f"{server}/v1/predictions").json()["items"]) == 1


def test_client_errors_are_one_line(server: str, files: Files) -> None:
    runner = CliRunner()
    unknown = runner.invoke(
        cli, ["predict", str(files.net_a), "--server", server, "--metanetwork", "nope"]
    )
    assert unknown.exit_code == 2
    assert unknown.output.strip().startswith("error: 404 Not Found: metanetwork 'nope'")
    assert len(unknown.output.strip().splitlines()) == 1
    incompatible = runner.invoke(
        cli, ["merge", str(files.net_a), str(files.other_arch), "--server", server]
    )
    assert incompatible.exit_code == 2 and "different architectures" in incompatible.output
    down = runner.invoke(cli, ["history", "--server", "http://127.0.0.1:9"])
    assert down.exit_code == 2 and "cannot reach the server" in down.output
