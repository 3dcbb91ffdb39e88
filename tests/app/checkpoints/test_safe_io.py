"""graphs.safe_io: valid files load exactly; anything else is a CheckpointError, never worse."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphs.errors import CheckpointError
from graphs.safe_io import DTYPES, Limits, read_checkpoint, to_safetensors_bytes


def sample_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "conv.weight": torch.randn(2, 3, 3, 3, generator=generator),
        "conv.bias": torch.randn(2, generator=generator).to(torch.bfloat16),
        "bn.num_batches_tracked": torch.tensor(7),
        "mask": torch.tensor([True, False]),
        "empty": torch.zeros(0, 4, dtype=torch.float16),
    }


def torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, name
        assert torch.equal(actual[name], tensor), name


def test_safetensors_round_trip_keeps_tensors_and_metadata(tmp_path: Path) -> None:
    data = to_safetensors_bytes(sample_tensors(), {"architecture": "{}"})
    path = tmp_path / "model.bin"  # the name says nothing; content decides
    path.write_bytes(data)
    for source in (data, path, str(path)):
        checkpoint = read_checkpoint(source)
        assert checkpoint.format == "safetensors"
        assert checkpoint.metadata == {"architecture": "{}"}
        assert_same_tensors(checkpoint.tensors, sample_tensors())


def test_pytorch_state_dict_and_wrapper_load_as_plain_tensors() -> None:
    state = {
        name: torch.nn.Parameter(t, requires_grad=False) for name, t in sample_tensors().items()
    }
    for obj in (state, {"state_dict": state, "epoch": 3}):
        checkpoint = read_checkpoint(torch_bytes(obj))
        assert checkpoint.format == "pytorch"
        assert_same_tensors(checkpoint.tensors, sample_tensors())
        assert all(type(t) is torch.Tensor for t in checkpoint.tensors.values())


def test_shared_storage_converts_to_safetensors() -> None:
    weight = torch.randn(4, 4)
    checkpoint = read_checkpoint(torch_bytes({"a": weight, "b": weight[:2]}))
    again = read_checkpoint(to_safetensors_bytes(checkpoint.tensors))
    assert torch.equal(again.tensors["b"], weight[:2])


def test_every_allowed_dtype_loads() -> None:
    tensors = {name: torch.ones(3, dtype=dtype) for name, dtype in DTYPES.items()}
    assert_same_tensors(read_checkpoint(to_safetensors_bytes(tensors)).tensors, tensors)


def test_bytes_after_the_last_tensor_are_rejected() -> None:
    with pytest.raises(CheckpointError, match="not covered by any tensor"):
        read_checkpoint(to_safetensors_bytes({"a": torch.ones(2)}) + b"\0" * 8)


def test_gap_between_tensors_is_rejected() -> None:
    header = {
        "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
        "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]},
    }
    raw = json.dumps(header).encode()
    with pytest.raises(CheckpointError, match="gap of 2 bytes"):
        read_checkpoint(struct.pack("<Q", len(raw)) + raw + bytes(6))


def test_size_mismatch_names_the_tensor() -> None:
    raw = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode()
    with pytest.raises(CheckpointError, match=r"tensor 'w': data_offsets span 8 bytes"):
        read_checkpoint(struct.pack("<Q", len(raw)) + raw + bytes(8))


def test_limits_cap_tensor_count_and_elements() -> None:
    data = to_safetensors_bytes({f"t{i}": torch.ones(10) for i in range(3)})
    with pytest.raises(CheckpointError, match="3 tensors exceed the limit of 2"):
        read_checkpoint(data, Limits(max_tensors=2))
    with pytest.raises(CheckpointError, match="10 elements exceed the limit of 5"):
        read_checkpoint(data, Limits(max_elements_per_tensor=5))
    with pytest.raises(CheckpointError, match="3 tensors exceed"):
        read_checkpoint(
            torch_bytes({f"t{i}": torch.ones(1) for i in range(3)}), Limits(max_tensors=2)
        )


def test_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read checkpoint file"):
        read_checkpoint(tmp_path / "absent.safetensors")


VALID_SAFETENSORS = to_safetensors_bytes(sample_tensors(), {"k": "v"})
VALID_PYTORCH = torch_bytes({name: t for name, t in sample_tensors().items() if t.numel()})


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[position : position + draw(st.integers(1, 16))]
    return bytes(data)


def load_or_reject(data: bytes) -> None:
    try:
        checkpoint = read_checkpoint(data)
    except CheckpointError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for name, tensor in checkpoint.tensors.items():
        assert isinstance(name, str) and tensor.dtype in DTYPES.values()


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_checkpoint_error(data: bytes) -> None:
    load_or_reject(data)


@FUZZ
@given(mutated(VALID_SAFETENSORS))
def test_mutated_safetensors_only_raise_checkpoint_error(data: bytes) -> None:
    load_or_reject(data)


@FUZZ
@given(mutated(VALID_PYTORCH))
def test_mutated_pytorch_only_raise_checkpoint_error(data: bytes) -> None:
    load_or_reject(data)


@pytest.mark.parametrize("field_offset, value", [(6, 99), (10, 99)])
def test_zip_version_or_method_zipfile_lacks_is_a_checkpoint_error(
    field_offset: int, value: int
) -> None:
    """Central-directory 'version needed' 9.9 or an unknown compression method makes zipfile
    raise NotImplementedError; that must be a clear rejection, not a server error."""
    data = bytearray(VALID_PYTORCH)
    entry = data.index(b"PK\x01\x02")
    struct.pack_into("<H", data, entry + field_offset, value)
    with pytest.raises(CheckpointError, match=r"not a valid zip archive|compressed"):
        read_checkpoint(bytes(data))
