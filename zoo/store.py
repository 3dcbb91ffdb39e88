"""Writing and reading zoo checkpoints: self-describing safetensors via graphs, written atomically.

The zoo record (split, labels, hyperparameters, metrics) travels in the checkpoint's own
header metadata under RECORD_KEY, so a manifest can always be rebuilt from the files alone.
"""

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

import graphs

RECORD_KEY = "weightscope.zoo"


def save_checkpoint(
    module: nn.Module, path: Path, example_input: torch.Tensor, record: dict[str, Any]
) -> None:
    """Trace and write ``module`` to ``path`` via temp file + rename (never half-written)."""
    checkpoint = graphs.from_module(
        module.cpu().eval(), example_input.cpu(), {RECORD_KEY: json.dumps(record)}
    )
    data = graphs.checkpoint_bytes(checkpoint)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_record(path: Path) -> dict[str, Any]:
    """The zoo record of a checkpoint, from the header only (no tensor bytes are read)."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()[RECORD_KEY])


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
