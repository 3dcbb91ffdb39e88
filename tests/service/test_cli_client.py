"""``weightscope predict|merge|history --server URL`` against a real HTTP server (uvicorn
on a loopback port, embedded worker): the same lines as local answers, ``--json``, piped
output and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from conftest import Files
from typer.testing import CliRunner

import graphs
from app.cli import app as cli
from app.formatting import prediction_line


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
    assert "interpolation A → B" in merged.output  # the same barrier table as a local merge
    assert graphs.load(out).architecture == graphs.load(files.net_a).architecture

    history = runner.invoke(cli, ["history", "--server", server])
    assert history.exit_code == 0, history.output
    assert "predictions" in history.output and "merges" in history.output
    assert "tiny-digits" in history.output
    assert len(httpx.get(f"{server}/v1/predictions").json()["items"]) == 1


def test_json_output_of_every_client_command(server: str, files: Files, tmp_path: Path) -> None:
    runner = CliRunner()
    predicted = runner.invoke(cli, ["predict", str(files.net_a), "--server", server, "--json"])
    assert predicted.exit_code == 0, predicted.stderr
    (answer,) = json.loads(predicted.stdout)
    assert answer["metanetwork"] == "tiny-digits" and answer["label"] in [str(d) for d in range(10)]
    assert prediction_line(answer) in runner.invoke(
        cli, ["predict", str(files.net_a), "--server", server]
    ).stdout

    merged = runner.invoke(
        cli,
        ["merge", str(files.net_a), str(files.net_b), "--server", server, "--data",
         str(files.dataset), "--json"],
    )  # fmt: skip
    assert merged.exit_code == 0, merged.stderr
    merge = json.loads(merged.stdout)
    assert merge["barrier"] <= merge["naive_barrier"] + 1e-6
    assert len(merge["curves"]["aligned"]["lambdas"]) == 11 and merge["result_checkpoint_id"]

    history = json.loads(runner.invoke(cli, ["history", "--server", server, "--json"]).stdout)
    assert len(history["predictions"]) == 2 and history["merges"][0]["id"] == merge["id"]

    graph = runner.invoke(cli, ["graph", str(files.net_a), "--json"])
    assert json.loads(graph.stdout)["architecture"]["num_parameters"] > 0


def test_piped_output_is_never_cut_and_progress_is_plain_lines(
    server: str, files: Files
) -> None:
    runner = CliRunner()  # not a terminal: the output is a pipe
    runner.invoke(cli, ["predict", str(files.net_a), "--server", server])
    merged = runner.invoke(
        cli,
        ["merge", str(files.net_a), str(files.net_b), "--server", server, "--data",
         str(files.dataset)],
        env={"COLUMNS": "40"},
    )  # fmt: skip
    assert merged.exit_code == 0, merged.output
    rows = [line for line in merged.stdout.splitlines() if line.lstrip("│ ").startswith("aligned")]
    assert rows and "…" not in merged.stdout
    cells = [cell.strip() for cell in rows[0].split("│") if cell.strip()]
    assert len(cells) == 10 and all(c[0].isdigit() or c[0] in "-" for c in cells[1:])
    history = runner.invoke(cli, ["history", "--server", server], env={"COLUMNS": "40"})
    assert "…" not in history.stdout and "tiny-digits" in history.stdout

    progress = [line for line in merged.stderr.splitlines() if line.startswith("merge:")]
    assert progress and progress[-1].startswith("merge: succeeded 100/100 (100%)")
    assert "\r" not in merged.stderr and "\x1b[" not in merged.stderr  # no bar, no escapes


def test_client_errors_are_one_line(server: str, files: Files) -> None:
    runner = CliRunner()
    unknown = runner.invoke(
        cli, ["predict", str(files.net_a), "--server", server, "--metanetwork", "nope"]
    )
    assert unknown.exit_code == 2
    assert unknown.stderr.strip().startswith("error: 404 Not Found: metanetwork 'nope'")
    assert len(unknown.stderr.strip().splitlines()) == 1
    outside = runner.invoke(cli, ["predict", str(files.other_io), "--server", server])
    assert outside.exit_code == 2 and "no metanetwork covers this checkpoint" in outside.stderr
    incompatible = runner.invoke(
        cli, ["merge", str(files.net_a), str(files.other_arch), "--server", server]
    )
    assert incompatible.exit_code == 2 and "different architectures" in incompatible.output
    down = runner.invoke(cli, ["history", "--server", "http://127.0.0.1:9"])
    assert down.exit_code == 2 and "cannot reach the server" in down.output
