"""Same network, same bytes: the service deduplicates uploads by sha256."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load as safetensors_load
from torch import nn

import graphs
from graphs.io import canonical_json
from graphs.safe_io import read_checkpoint, to_safetensors_bytes

SAVE_SCRIPT = """
import sys, torch
from torch import nn
import graphs
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
metadata = {f"label{i}": str(i) for i in range(40)}
graphs.save(model, sys.argv[1], torch.randn(2, 3, 8, 8), metadata=metadata)
"""


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def header(data: bytes) -> tuple[bytes, dict]:
    (length,) = struct.unpack("<Q", data[:8])
    raw = data[8 : 8 + length]
    return raw, json.loads(raw)


def test_same_network_saved_twice_gives_identical_bytes(tmp_path: Path) -> None:
    x = torch.randn(2, 3, 8, 8)
    labels = [(f"label{i}", str(i)) for i in range(40)]
    paths = []
    for i, order in enumerate((labels, labels[::-1], labels[::-1], labels)):
        path = tmp_path / f"{i}.safetensors"
        graphs.save(model(), path, x, metadata=dict(order))  # insertion order differs too
        paths.append(path.read_bytes())
    assert len(set(paths)) == 1


def test_same_network_saved_in_two_processes_gives_identical_bytes(tmp_path: Path) -> None:
    """Another process has other hash seeds (Python's and the safetensors library's)."""
    digests = set()
    for i, seed in enumerate(("1", "2")):
        path = tmp_path / f"{i}.safetensors"
        root = Path(graphs.__file__).parent.parent
        subprocess.run([sys.executable, "-c", SAVE_SCRIPT, str(path)], check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": ""}, cwd=root)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_header_is_sorted_compact_json_padded_to_eight_bytes() -> None:
    tensors = {"b": torch.ones(3), "a": torch.zeros(2, dtype=torch.float64)}
    data = to_safetensors_bytes(tensors, {"z": "1", "m": "2", "a": "3"})
    raw, parsed = header(data)
    assert len(raw) % 8 == 0
    assert raw.rstrip(b" ").decode() == json.dumps(parsed, sort_keys=True, separators=(",", ":"))
    # both readers agree on the result: ours and the safetensors library's
    reference = safetensors_load(data)
    ours = read_checkpoint(data)
    assert ours.metadata == {"z": "1", "m": "2", "a": "3"}
    for name, tensor in tensors.items():
        assert torch.equal(reference[name], tensor) and torch.equal(ours.tensors[name], tensor)


def test_architecture_is_stored_as_canonical_json(tmp_path: Path) -> None:
    graphs.save(model(), tmp_path / "m.safetensors", torch.randn(2, 3, 8, 8))
    stored = read_checkpoint(tmp_path / "m.safetensors").metadata[graphs.ARCH_KEY]
    assert stored == canonical_json(json.loads(stored))
    assert graphs.Architecture.from_json(stored) == graphs.describe(model(),
                                                                  torch.randn(2, 3, 8, 8))


def test_a_loaded_checkpoint_saves_back_to_the_same_bytes(tmp_path: Path) -> None:
    graphs.save(model(), tmp_path / "m.safetensors", torch.randn(2, 3, 8, 8),
                metadata={"label": "cat"})
    original = (tmp_path / "m.safetensors").read_bytes()
    again = graphs.checkpoint_bytes(graphs.load(tmp_path / "m.safetensors"))
    assert again == original
