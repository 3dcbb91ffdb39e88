"""The bad-input corpus: every file here is generated, each one names the cause it must be
rejected for, and each is thrown both at the loader and at the upload endpoint."""

from __future__ import annotations

import io
import json
import os
import random
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from graphs.errors import CheckpointError
from graphs.safe_io import read_checkpoint, to_safetensors_bytes


@dataclass(frozen=True)
class BadInput:
    name: str
    build: Callable[[Path], bytes]  # gets a scratch dir (for side-effect markers)
    cause: str  # a fragment the problem's detail must contain


class RunsShellCommand:
    """Unpickling this with a full unpickler would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def safetensors_file(header: dict[str, object], body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def torch_bytes(obj: object, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def valid_safetensors() -> bytes:
    generator = torch.Generator().manual_seed(0)
    return to_safetensors_bytes(
        {"fc1.weight": torch.randn(4, 3, generator=generator), "fc1.bias": torch.zeros(4)}
    )


def marker_path(scratch: Path) -> Path:
    return scratch / "pickle-ran-code"


def pickle_that_runs_code(scratch: Path) -> bytes:
    return torch_bytes({"w": RunsShellCommand(f"touch {marker_path(scratch)}")})


def deflated_zip_bomb(_: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("archive/data.pkl")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as member:
            chunk = bytes(2**20)
            for _ in range(64):  # 64 MiB of zeros deflate to ~64 KiB
                member.write(chunk)
    return buffer.getvalue()


def huge_declared_size(_: Path) -> bytes:
    raw = bytearray(torch_bytes({"w": torch.ones(2)}))
    entry = raw.index(b"PK\x01\x02")  # first central directory record
    raw[entry + 20 : entry + 28] = struct.pack("<II", 2**31, 2**31)
    return bytes(raw)


def path_traversal_zip(_: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("../../etc/evil", b"x")
    return buffer.getvalue()


def random_bytes(_: Path) -> bytes:
    data = random.Random(7).randbytes(4096)
    assert data[:1] != b"\x80" and data[:2] != b"PK" and data[8:9] != b"{"
    return data


CORPUS = [
    BadInput("empty", lambda _: b"", "empty file"),
    BadInput("random-bytes", random_bytes, "unrecognised file format"),
    BadInput("truncated-data", lambda _: valid_safetensors()[:-9], "outside the"),
    BadInput("truncated-header", lambda _: valid_safetensors()[:40], "larger than the file"),
    BadInput(
        "header-length-beyond-file",
        lambda _: struct.pack("<Q", 1000) + b"{}",
        "header length 1000 is larger than the file",
    ),
    BadInput(
        "huge-header",
        lambda _: struct.pack("<Q", 9 * 2**20) + b"{" + b" " * 64,
        "exceeds the 8388608-byte limit",
    ),
    BadInput(
        "overlapping-offsets",
        lambda _: safetensors_file(
            {
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
            },
            bytes(24),
        ),
        "overlaps",
    ),
    BadInput(
        "unknown-dtype",
        lambda _: safetensors_file(
            {"a": {"dtype": "C64", "shape": [2], "data_offsets": [0, 16]}}, bytes(16)
        ),
        "dtype 'C64' is not allowed",
    ),
    BadInput(
        "rank-too-high",
        lambda _: safetensors_file(
            {"a": {"dtype": "U8", "shape": [1] * 9, "data_offsets": [0, 1]}}, bytes(1)
        ),
        "rank 9 exceeds",
    ),
    BadInput(
        "nan-weights",
        lambda _: to_safetensors_bytes({"fc1.weight": torch.tensor([1.0, float("nan")])}),
        "tensor 'fc1.weight' contains NaN",
    ),
    BadInput(
        "inf-weights-pt",
        lambda _: torch_bytes({"head.bias": torch.tensor([float("inf")])}),
        "tensor 'head.bias' contains NaN or infinite",
    ),
    BadInput("pickle-runs-code", pickle_that_runs_code, "rejected by the safe loader"),
    BadInput("zip-bomb-deflated", deflated_zip_bomb, "is compressed"),
    BadInput("zip-huge-declared-size", huge_declared_size, "beyond the end of the file"),
    BadInput("zip-path-traversal", path_traversal_zip, "not a safe relative path"),
    BadInput(
        "legacy-pt",
        lambda _: torch_bytes({"w": torch.ones(2)}, _use_new_zipfile_serialization=False),
        "legacy (non-zip) PyTorch format",
    ),
    BadInput(
        "nested-dict-pt",
        lambda _: torch_bytes({"block": {"w": torch.ones(2)}}),
        "expected a tensor (the dict must be flat)",
    ),
]


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
def test_loader_rejects_bad_input_naming_the_cause(case: BadInput, tmp_path: Path) -> None:
    data = case.build(tmp_path)
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(data)
    assert case.cause in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    assert not marker_path(tmp_path).exists()


@pytest.mark.anyio
@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
async def test_upload_rejects_bad_input_and_stores_nothing(
    case: BadInput, tmp_path: Path, client, stored_files, checkpoint_rows, assert_problem
) -> None:
    data = case.build(tmp_path)
    response = await client.post("/v1/checkpoints", files={"file": ("upload.pt", data)})
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code, case.cause)
    assert stored_files() == []
    assert checkpoint_rows() == 0
    assert not marker_path(tmp_path).exists()
