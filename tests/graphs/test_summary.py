"""The text summary behind ``weightscope graph FILE``."""

from __future__ import annotations

from pathlib import Path

from _graph_models import family
from typer.testing import CliRunner

import graphs


def test_summary_text_reports_groups_and_graph_size(tmp_path: Path) -> None:
    model, x = family("resnet", 0, 0)
    path = tmp_path / "r.safetensors"
    graphs.save(model, path, x, metadata={"label": "cat"})
    ckpt = graphs.load(path)
    graph = graphs.to_graph(ckpt)
    text = graphs.summary_text(path)
    assert "conv2d×" in text and "residual" in text
    assert f"nodes: {graph.num_nodes:,}  edges: {graph.edge_index.shape[1]:,}" in text
    assert f"{graphs.graph_bytes(graph):,} bytes" in text
    assert "conv1: 3 hidden (permutable)" in text and "fc: 4 output (fixed)" in text
    assert "metadata: label=cat" in text
    shape = "×".join(map(str, x.shape[1:]))  # the input's whole per-sample shape
    assert f": input {shape} (fixed)" in text and " input (fixed)" not in text


def test_cli_graph_command(tmp_path: Path) -> None:
    from app.cli import app

    model, x = family("mlp", 0, 0)
    path = tmp_path / "m.safetensors"
    graphs.save(model, path, x)
    result = CliRunner().invoke(app, ["graph", str(path)])
    assert result.exit_code == 0 and "parameter graph" in result.output
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(app, ["graph", str(bad)])
    assert result.exit_code == 2 and "error:" in result.output
