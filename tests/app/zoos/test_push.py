"""``weightscope zoo push`` against the real app on a loopback port (uvicorn)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import httpx
import pytest
from _zoo_files import sample_files
from typer.testing import CliRunner

import graphs
from app.cli import app as cli
from app.zoos.push import labels_csv


def zoo_folder(root: Path, name: str, task: str, rows: list[dict], files: dict[str, bytes],
               classes: list[str] | None = None) -> Path:
    """A folder as ``weightscope zoo build`` leaves it: zoo.json, manifest.jsonl, files."""
    root.mkdir()
    info = {"name": name, "task": task, "seed": 0, **({"classes": classes} if classes else {})}
    (root / "zoo.json").write_text(json.dumps(info))
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for file, data in files.items():
        (root / file).write_bytes(data)
    return root


def test_push_a_regression_zoo_of_the_shipped_samples(server, tmp_path) -> None:
    files = sample_files("digits-cnn-generalization")
    rows = [json.loads(graphs.load(f).metadata["weightscope.zoo"]) for f in files]
    folder = zoo_folder(tmp_path / "cnn", "digits-cnn", "generalization", rows,
                        {f.name: f.read_bytes() for f in files})
    result = CliRunner().invoke(cli, ["zoo", "push", str(folder), "--server", server])
    assert result.exit_code == 0, result.output
    zoo_id = int(result.stdout.strip().splitlines()[-1])
    assert "uploaded" in result.output and "(100%)" in result.output  # plain progress lines
    zoo = httpx.get(f"{server}/v1/zoos/{zoo_id}").json()
    assert zoo["name"] == "digits-cnn" and zoo["task"] == "regression" and zoo["size"] == 24
    items = httpx.get(f"{server}/v1/zoos/{zoo_id}/items", params={"limit": 100}).json()["items"]
    assert [i["target"] for i in items] == pytest.approx([r["target"] for r in rows])


def test_push_a_classification_zoo_with_named_classes_and_image_groups(server, tmp_path,
                                                                       nets) -> None:
    rows = [
        {"file": f"{i:06d}.safetensors", "split": "train", "target": i % 2,
         "labels": {"image": i // 2}, "arch": {"kind": "mlp"}, "metrics": {}}
        for i in range(40)
    ]
    folder = zoo_folder(tmp_path / "bd", "digits-backdoor", "classification", rows,
                        {r["file"]: nets[i] for i, r in enumerate(rows)},
                        classes=["clean", "backdoored"])
    _, task, text, _ = labels_csv(folder)
    assert task == "classification" and text.startswith("file,label,group\n")
    result = CliRunner().invoke(cli, ["zoo", "push", str(folder), "--server", server,
                                      "--name", "screening"])
    assert result.exit_code == 0, result.output
    zoo_id = int(result.stdout.strip().splitlines()[-1])
    zoo = httpx.get(f"{server}/v1/zoos/{zoo_id}").json()
    assert zoo["name"] == "screening"
    assert zoo["label_counts"] == {"backdoored": 20, "clean": 20}
    items = httpx.get(f"{server}/v1/zoos/{zoo_id}/items", params={"limit": 100}).json()["items"]
    split_of = {}
    for item in items:
        assert split_of.setdefault(item["group"], item["split"]) == item["split"]
    assert len(split_of) == 20

    again = CliRunner().invoke(cli, ["zoo", "push", str(folder), "--server", server,
                                     "--name", "screening"])
    assert again.exit_code == 2 and "409" in again.output and "exists already" in again.output


def test_push_refuses_a_folder_that_is_not_a_zoo(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["zoo", "push", str(tmp_path), "--server", "http://x"])
    assert result.exit_code == 2 and "not a zoo built by" in result.output


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(monkeypatch, capsys) -> None:
    from app.zoos import push

    with push.rich_or_plain_progress() as report:  # pytest's stderr is no terminal
        report(5, 10)
        report(10, 10)
    assert capsys.readouterr().err.splitlines() == [
        "uploaded 5 of 10 bytes (50%)", "uploaded 10 of 10 bytes (100%)"
    ]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with push.rich_or_plain_progress() as report:
        report(10, 10)
    assert "uploaded" not in terminal.getvalue()
    assert capsys.readouterr().out == ""  # the bar never writes to stdout
