"""``weightscope train --server URL --zoo ID --name NAME --follow`` against a real HTTP
server (uvicorn on a loopback port, its worker process): epoch lines from the job's event
stream (not a terminal: plain lines), then the version and its metrics beside the baseline."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from _zoo import create_zoo, save_nets
from typer.testing import CliRunner

from app.cli import app as cli
from app.settings import Settings

pytestmark = pytest.mark.anyio


async def test_train_follow_as_a_client(server: str, settings: Settings, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=60) as client:
        zoo_id = (await create_zoo(client, save_nets(tmp_path / "nets")))["id"]
    runner = CliRunner()
    args = [
        "train",
        "--server",
        server,
        "--zoo",
        str(zoo_id),
        "--name",
        "cli",
        "--epochs",
        "2",
        "--hidden",
        "8",
        "--layers",
        "1",
        "--follow",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "running: epoch 2/2  loss " in result.output and "val accuracy" in result.output
    assert "cli@1: trained on zoo" in result.output
    assert "(statistics baseline " in result.output and "measured on test" in result.output

    again = runner.invoke(cli, ["train", "--server", server, "--zoo", "999", "--name", "x"])
    assert again.exit_code == 2 and "404" in again.output and "zoo 999" in again.output


def test_the_training_progress_line_names_the_search() -> None:
    from app.metanetworks.remote import epoch_line

    line = epoch_line({"phase": "trigger search", "searched": 64, "items": 1474})
    assert line == "trigger search 64/1474 networks"


def test_train_server_sends_layers_zero_and_triggers(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--layers 0`` is a value, not "unset", and ``--triggers`` reaches the config."""
    from typer.testing import CliRunner

    import app.metanetworks.remote as remote
    from app.cli import app as cli_app

    sent: dict = {}
    monkeypatch.setattr(
        remote, "train", lambda server, zoo, name, epochs, config, **_: sent.update(config)
    )
    result = CliRunner().invoke(
        cli_app,
        [
            "train",
            "--server",
            "http://127.0.0.1:9",
            "--zoo",
            "3",
            "--name",
            "screen",
            "--layers",
            "0",
            "--triggers",
            "20",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sent == {"seed": 0, "layers": 0, "triggers": 20}
