"""The op-graph JSON stays backward compatible: graphs written before the op registry (the
built-in metanetworks' samples) parse and serialise back to the same JSON."""

import json
from pathlib import Path

import pytest

import graphs
from graphs.safe_io import read_checkpoint

SAMPLES = sorted(Path(__file__).parents[2].glob("models/builtin/samples/*/*.safetensors"))


@pytest.mark.parametrize("path", SAMPLES[::6], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_existing_op_graphs_round_trip(path: Path) -> None:
    embedded = read_checkpoint(path).metadata[graphs.ARCH_KEY]
    arch = graphs.Architecture.from_json(embedded)
    assert json.loads(arch.to_json()) == json.loads(embedded)
    assert "ties" not in json.loads(arch.to_json())
