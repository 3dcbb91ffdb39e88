"""Reading untrusted checkpoint files without trusting them.

Two formats are accepted, recognised by their first bytes (never by file name):

* **safetensors**: the header is length-capped, parsed and checked here (dtypes, shapes,
  offsets) before a single tensor byte is interpreted; the safetensors library is only used
  for writing.
* **PyTorch zip** (``torch.save`` since 1.6, usually ``.pt``/``.pth``/``.bin``): the zip
  directory is checked first (stored members only, capped counts and sizes, no path
  tricks), then it is loaded with ``torch.load(weights_only=True)`` and nothing else, so a
  pickle can never run code. The legacy non-zip pickle format is refused outright.

  Training checkpoints pickle more than tensors (``args`` as an ``argparse.Namespace``, numpy
  scalars, a whole ``nn.Module``). Each such class or function the pickle names is replaced,
  for this one load, by an inert placeholder that runs no code and keeps no state (see
  :class:`_Opaque`), so the extras can be *ignored* instead of failing the whole file; the
  tensors are then found by :func:`graphs.layouts.find_state_dict` (bare, or nested under
  ``state_dict``/``model``/...; the rest reported in ``ignored_keys``). Blocklisted modules
  (``os``, ``sys``...) are still refused by torch. A file that *is* a pickled module is
  refused with a message saying how to save its weights.

Every tensor must hold finite values of an allowlisted dtype; a file without tensors is
refused; any problem raises :class:`graphs.errors.CheckpointError` with a one-line message
for the user.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import threading
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import torch
from safetensors.torch import save as _safetensors_save

from graphs.errors import CheckpointError
from graphs.layouts import NEST_KEYS, find_state_dict

__all__ = [
    "DTYPES",
    "Limits",
    "RawCheckpoint",
    "detect_format",
    "read_checkpoint",
    "to_safetensors_bytes",
]

# safetensors dtype name -> torch dtype; nothing outside this table is ever interpreted.
DTYPES: dict[str, torch.dtype] = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_ITEMSIZE = {name: torch.empty((), dtype=dtype).element_size() for name, dtype in DTYPES.items()}

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_OPCODE = 0x80


@dataclass(frozen=True)
class Limits:
    """Caps that keep a hostile file from exhausting memory or time."""

    max_header_bytes: int = 8 * 2**20
    max_tensors: int = 10_000
    max_rank: int = 8
    max_elements_per_tensor: int = 2**31
    max_total_bytes: int = 8 * 2**30
    max_zip_members: int = 10_000 + 16
    max_pickle_bytes: int = 64 * 2**20
    max_name_length: int = 1024


@dataclass
class RawCheckpoint:
    """Validated tensors (CPU, contiguous, owning their memory) and string metadata."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    format: Literal["safetensors", "pytorch"] = "safetensors"
    # PyTorch files only: the keys descended through to reach the state dict, and the
    # entries (dotted paths) left aside as training extras.
    nested_under: tuple[str, ...] = ()
    ignored_keys: tuple[str, ...] = ()


def detect_format(head: bytes) -> Literal["safetensors", "pytorch"]:
    """Tell the format from the first bytes (at least 9 for safetensors)."""
    if head.startswith(_ZIP_MAGIC):
        return "pytorch"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == bytes([_PICKLE_PROTOCOL_OPCODE]):
        raise CheckpointError(
            "legacy (non-zip) PyTorch format is not accepted; re-save it with torch.save "
            "from PyTorch >= 1.6 or as safetensors"
        )
    if not head:
        raise CheckpointError("empty file")
    raise CheckpointError("unrecognised file format: expected safetensors or a PyTorch zip")


def read_checkpoint(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    limits: Limits = Limits(),
) -> RawCheckpoint:
    """Load a checkpoint from bytes or a file path, validating everything first."""
    data = _read_source(source, limits)
    fmt = detect_format(bytes(data[:9]))
    if fmt == "pytorch":
        return _read_pytorch(data, limits)
    return _read_safetensors(data, limits)


def to_safetensors_bytes(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> bytes:
    """Serialise tensors as safetensors (each tensor copied, so shared storage is fine).

    The bytes are canonical: the same tensors and metadata always give the same bytes (the
    service deduplicates by sha256). The safetensors library lays out the data section
    deterministically but writes the metadata map in hash order, so the header is re-written
    here as sorted, compact JSON (same offsets, same 8-byte padding rule).
    """
    owned = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    data = _safetensors_save(owned, metadata=dict(metadata) if metadata else None)
    return _canonical_header(data)


def _canonical_header(data: bytes) -> bytes:
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    raw = text.encode("ascii")
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header with spaces to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + data[8 + header_len :]


# --- reading the source ----------------------------------------------------------------


def _read_source(
    source: bytes | bytearray | memoryview | str | os.PathLike[str], limits: Limits
) -> memoryview:
    if isinstance(source, bytes | bytearray | memoryview):
        data = memoryview(source).cast("B")
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > _max_file_bytes(limits):
                raise CheckpointError(f"file of {size} bytes exceeds the size limit")
            data = memoryview(path.read_bytes())
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint file: {exc.strerror}") from None
    if len(data) > _max_file_bytes(limits):
        raise CheckpointError(f"file of {len(data)} bytes exceeds the size limit")
    return data


def _max_file_bytes(limits: Limits) -> int:
    # Room for the header (safetensors) or the pickle and zip directory (PyTorch).
    return limits.max_total_bytes + max(limits.max_header_bytes, limits.max_pickle_bytes) + 2**20


# --- safetensors -----------------------------------------------------------------------


def _read_safetensors(data: memoryview, limits: Limits) -> RawCheckpoint:
    if len(data) < 8:
        raise CheckpointError("truncated safetensors file: shorter than its 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > limits.max_header_bytes:
        raise CheckpointError(
            f"safetensors header of {header_len} bytes exceeds the {limits.max_header_bytes}"
            "-byte limit"
        )
    if 8 + header_len > len(data):
        raise CheckpointError(
            f"safetensors header length {header_len} is larger than the file ({len(data)} bytes)"
        )
    header = _parse_header(bytes(data[8 : 8 + header_len]))
    metadata = _parse_metadata(header.pop("__metadata__", None))
    if not header:
        raise CheckpointError(
            "safetensors file holds no tensors; save the model's state_dict() "
            "(or graphs.save(model, path, example_input))"
        )
    body = data[8 + header_len :]
    entries = _check_entries(header, len(body), limits)
    tensors = {name: _tensor_from_buffer(name, body, *entry) for name, entry in entries.items()}
    return RawCheckpoint(tensors=tensors, metadata=metadata, format="safetensors")


def _parse_header(raw: bytes) -> dict[str, object]:
    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        result: dict[str, object] = {}
        for key, value in pairs:
            if key in result:
                raise CheckpointError(f"safetensors header repeats the key {key!r}")
            result[key] = value
        return result

    def no_constants(name: str) -> object:
        raise CheckpointError(f"safetensors header contains the non-JSON constant {name}")

    try:
        header = json.loads(
            raw.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constants
        )
    except UnicodeDecodeError:
        raise CheckpointError("safetensors header is not valid UTF-8") from None
    except RecursionError:
        raise CheckpointError("safetensors header is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"safetensors header is not valid JSON ({exc.msg})") from None
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header must be a JSON object")
    return header


def _parse_metadata(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise CheckpointError("safetensors __metadata__ must map strings to strings")
    return dict(raw)


def _check_entries(
    header: dict[str, object], body_len: int, limits: Limits
) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    """Validate every tensor entry; returns name -> (dtype, shape, begin, end)."""
    if len(header) > limits.max_tensors:
        raise CheckpointError(f"{len(header)} tensors exceed the limit of {limits.max_tensors}")
    entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
    total = 0
    for name, info in header.items():
        _check_name(name, limits)
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(
                f"tensor {name!r}: entry must have exactly dtype, shape and data_offsets"
            )
        dtype = info["dtype"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise CheckpointError(
                f"tensor {name!r}: dtype {dtype!r} is not allowed (allowed: {', '.join(DTYPES)})"
            )
        shape = _check_shape(name, info["shape"], limits)
        offsets = info["data_offsets"]
        if not (
            isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
        ):
            raise CheckpointError(f"tensor {name!r}: data_offsets must be two integers")
        begin, end = offsets
        if not 0 <= begin <= end <= body_len:
            raise CheckpointError(
                f"tensor {name!r}: data_offsets [{begin}, {end}] are outside the "
                f"{body_len}-byte data section"
            )
        expected = math.prod(shape) * _ITEMSIZE[dtype]
        if end - begin != expected:
            raise CheckpointError(
                f"tensor {name!r}: data_offsets span {end - begin} bytes but shape {list(shape)}"
                f" of {dtype} needs {expected}"
            )
        total += expected
        if total > limits.max_total_bytes:
            raise CheckpointError(f"tensors exceed the {limits.max_total_bytes}-byte limit")
        entries[name] = (dtype, shape, begin, end)
    _check_layout(entries, body_len)
    return entries


def _check_shape(name: str, shape: object, limits: Limits) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise CheckpointError(f"tensor {name!r}: shape must be a list of non-negative integers")
    if len(shape) > limits.max_rank:
        raise CheckpointError(
            f"tensor {name!r}: rank {len(shape)} exceeds the limit of {limits.max_rank}"
        )
    if math.prod(shape) > limits.max_elements_per_tensor:
        raise CheckpointError(
            f"tensor {name!r}: {math.prod(shape)} elements exceed the limit of "
            f"{limits.max_elements_per_tensor}"
        )
    return tuple(shape)


def _check_layout(entries: dict[str, tuple[str, tuple[int, ...], int, int]], body_len: int) -> None:
    """Tensors must tile the data section exactly: ordered, no overlap, no trailing bytes."""
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda e: (e[1][2], e[1][3])):
        if begin < position:
            raise CheckpointError(f"tensor {name!r}: data overlaps the previous tensor")
        if begin > position:
            raise CheckpointError(f"tensor {name!r}: gap of {begin - position} bytes before it")
        position = end
    if position != body_len:
        raise CheckpointError(
            f"data section has {body_len - position} bytes not covered by any tensor"
        )


def _tensor_from_buffer(
    name: str, body: memoryview, dtype: str, shape: tuple[int, ...], begin: int, end: int
) -> torch.Tensor:
    torch_dtype = DTYPES[dtype]
    if begin == end:
        tensor = torch.empty(shape, dtype=torch_dtype)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # read-only buffer: we clone before returning
            tensor = torch.frombuffer(body[begin:end], dtype=torch_dtype).reshape(shape).clone()
    _check_values(name, tensor)
    return tensor


# --- PyTorch zip -----------------------------------------------------------------------


def _read_pytorch(data: memoryview, limits: Limits) -> RawCheckpoint:
    raw = bytes(data)
    _check_zip(raw, limits)
    obj = _torch_load(raw)
    _refuse_pickled_objects(obj)
    found, layout = find_state_dict(obj)
    return RawCheckpoint(tensors=_state_dict(found, limits), metadata={}, format="pytorch",
                         nested_under=layout.nested_under, ignored_keys=layout.ignored_keys)


class _Opaque:
    """Stands in for a class or function a pickle names that ``weights_only`` does not allow.

    Creating, calling (``REDUCE``) or building (``BUILD``) it runs no code of the file and
    keeps nothing but one flag: whether the pickled state looked like an ``nn.Module``'s
    ``__dict__`` (``_parameters`` and ``_modules``), which is how a ``torch.save(model)``
    pickle is told apart from, say, an ``argparse.Namespace`` of training arguments.
    """

    __slots__ = ("looks_like_module",)
    global_name = "?"

    def __new__(cls, *args: object, **kwargs: object) -> _Opaque:
        inst = object.__new__(cls)
        inst.looks_like_module = False
        return inst

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state = state[0]  # (dict, slots) form
        self.looks_like_module = (
            isinstance(state, dict) and "_parameters" in state and "_modules" in state
        )


_BLOCKED_MODULES = ("os", "sys", "posix", "nt")  # torch refuses these itself; never stub them
_SAFE_GLOBALS_LOCK = threading.Lock()  # torch keeps the allowlist in one process-wide set
_GLOBAL_NAME = re.compile(r"[A-Za-z0-9_.]{1,200}")


def _torch_load(raw: bytes) -> object:
    """``torch.load(weights_only=True)``, with inert placeholders for unknown globals."""
    stubs: list[tuple[type, str]] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation chatter about hostile input
            stubs = _placeholders(raw)
            if not stubs:
                return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            with _SAFE_GLOBALS_LOCK, torch.serialization.safe_globals(stubs):
                return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # untrusted bytes: any failure inside torch.load means "bad file"
        raise CheckpointError(_load_failure(exc, stubs)) from None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NOT_REBUILT = re.compile(r"but got <class '([A-Za-z0-9_.]{1,200})'>")


def _load_failure(exc: BaseException, stubs: list[tuple[type, str]]) -> str:
    """One line for the user from a torch.load failure: torch's cause without its framing
    (ANSI codes, "re-run with weights_only=False", allowlisting advice nobody here can act
    on); an object only a full unpickler could rebuild (a ``defaultdict`` of training
    history, a placeholder used as a container) is named, with what to save instead."""
    reason = _torch_reason(exc)
    match = _NOT_REBUILT.search(reason)
    if match is None:
        return f"PyTorch file rejected by the safe loader: {reason}"
    name = match.group(1)
    if name.endswith(".Opaque"):
        name = ", ".join(n for _, n in stubs[:3]) + (", ..." if len(stubs) > 3 else "")
    return (f"PyTorch file rejected by the safe loader: it pickles objects only full "
            f"unpickling could rebuild ({name}); save the state dict alone: "
            "torch.save(model.state_dict(), path)")


def _torch_reason(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc))
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    framing = ("Weights only load failed", "Check the documentation of torch.load")
    paragraphs = [p for p in text.split("\n\n")
                  if p.strip() and not p.strip().startswith(framing)]
    text = paragraphs[0] if paragraphs else ""
    text = re.split(r"\s*Please use `torch\.serialization", text)[0]
    return _one_line(text) if text.strip() else type(exc).__name__


def _placeholders(raw: bytes) -> list[tuple[type, str]]:
    """One :class:`_Opaque` subclass per non-allowlisted global the pickle names (found by
    torch's static scan of the pickle opcodes, which executes nothing)."""
    names = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(raw))
    stubs: list[tuple[type, str]] = []
    for name in sorted(set(names)):
        if name.split(".", 1)[0] in _BLOCKED_MODULES:
            continue
        label = name if _GLOBAL_NAME.fullmatch(name) else "an unnamed class"
        stub = type("Opaque", (_Opaque,), {"__slots__": (), "global_name": label})
        stubs.append((stub, name))
    return stubs


def _refuse_pickled_objects(obj: object) -> None:
    """A pickled module (or other object) where the state dict should be is refused with
    advice the user can act on, never torch's own text."""
    candidates = [obj]
    if isinstance(obj, dict):
        candidates += [obj[key] for key in NEST_KEYS if key in obj]
    for value in candidates:
        if isinstance(value, _Opaque) and value.looks_like_module:
            raise CheckpointError(
                f"file holds a whole pickled module ({value.global_name}), not a state dict, "
                "and pickled code is never run: save its weights with "
                "torch.save(model.state_dict(), path) or graphs.save(model, path, example_input)"
            )
        if isinstance(value, _Opaque):
            raise CheckpointError(
                f"file holds a pickled {value.global_name} object, not a state dict; save "
                "only tensors: torch.save(model.state_dict(), path)"
            )


def _check_zip(raw: bytes, limits: Limits) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError, OSError,
            EOFError) as exc:  # NotImplementedError: a zip version or method zipfile lacks
        reason = _one_line(exc)
        raise CheckpointError(f"PyTorch file is not a valid zip archive: {reason}") from None
    if len(members) > limits.max_zip_members:
        raise CheckpointError(
            f"zip archive has {len(members)} members, more than the limit of "
            f"{limits.max_zip_members}"
        )
    if any(m.filename.endswith("/constants.pkl") or "/code/__torch__/" in m.filename
           for m in members):
        raise CheckpointError(
            "file is a TorchScript archive (torch.jit.save), which holds code; save the "
            "model's weights with torch.save(model.state_dict(), path) or "
            "graphs.save(model, path, example_input)"
        )
    names: set[str] = set()
    total = 0
    for member in members:
        name = member.filename
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or "\\" in name or ":" in name:
            raise CheckpointError(f"zip member name {name!r} is not a safe relative path")
        if name in names:
            raise CheckpointError(f"zip member {name!r} appears twice")
        names.add(name)
        if member.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"zip member {name!r} is compressed; torch.save writes stored (uncompressed) "
                "members only"
            )
        if member.file_size != member.compress_size:
            raise CheckpointError(f"zip member {name!r} declares inconsistent sizes")
        if member.header_offset + member.file_size > len(raw):
            raise CheckpointError(
                f"zip member {name!r} declares {member.file_size} bytes, beyond the end of the file"
            )
        total += member.file_size
        if total > limits.max_total_bytes + limits.max_pickle_bytes:
            raise CheckpointError("zip members declare more bytes than the size limit")
        if name.endswith("/data.pkl") and member.file_size > limits.max_pickle_bytes:
            raise CheckpointError(
                f"pickle of {member.file_size} bytes exceeds the "
                f"{limits.max_pickle_bytes}-byte limit"
            )
    if sum(1 for name in names if name.endswith("data.pkl")) != 1:
        raise CheckpointError("zip archive is not a torch.save file (needs exactly one data.pkl)")


def _state_dict(obj: Mapping[object, object], limits: Limits) -> dict[str, torch.Tensor]:
    if len(obj) > limits.max_tensors:
        raise CheckpointError(f"{len(obj)} tensors exceed the limit of {limits.max_tensors}")
    tensors: dict[str, torch.Tensor] = {}
    total = 0
    for name, value in obj.items():
        if not isinstance(name, str):
            raise CheckpointError(f"state dict key {name!r} is not a string")
        _check_name(name, limits)
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"state dict entry {name!r} is a {type(value).__name__}, expected a tensor "
                "(the dict must be flat)"
            )
        tensor = _check_torch_tensor(name, value, limits)
        total += tensor.numel() * tensor.element_size()
        if total > limits.max_total_bytes:
            raise CheckpointError(f"tensors exceed the {limits.max_total_bytes}-byte limit")
        tensors[name] = tensor
    return tensors


def _check_torch_tensor(name: str, value: torch.Tensor, limits: Limits) -> torch.Tensor:
    value = value.detach()  # nn.Parameter and requires_grad tensors become plain tensors
    if value.is_meta or value.device.type != "cpu":  # map_location="cpu" leaves meta as meta
        raise CheckpointError(
            f"tensor {name!r} is on the {value.device.type!r} device and holds no values "
            "(a model built with device='meta' has shapes only); save the weights of a "
            "materialized model: torch.save(model.state_dict(), path)"
        )
    if value.layout != torch.strided or value.is_quantized:
        raise CheckpointError(f"tensor {name!r}: only dense tensors are accepted")
    if value.dtype not in _DTYPE_NAMES:
        raise CheckpointError(
            f"tensor {name!r}: dtype {value.dtype} is not allowed (allowed: {', '.join(DTYPES)})"
        )
    _check_shape(name, list(value.shape), limits)
    tensor = value.contiguous().clone()
    _check_values(name, tensor)
    return tensor


# --- shared ----------------------------------------------------------------------------


def _check_name(name: str, limits: Limits) -> None:
    if not name or len(name) > limits.max_name_length:
        raise CheckpointError(
            f"tensor name must have 1 to {limits.max_name_length} characters, got {len(name)}"
        )


def _check_values(name: str, tensor: torch.Tensor) -> None:
    if tensor.numel() == 0:
        return
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"tensor {name!r} contains NaN or infinite values")
    if tensor.dtype == torch.bool and int(tensor.view(torch.uint8).max()) > 1:
        raise CheckpointError(f"tensor {name!r}: BOOL values must be 0 or 1")


def _one_line(exc: BaseException | str) -> str:
    text = " ".join(_ANSI.sub("", str(exc)).split())
    if not text:
        text = type(exc).__name__ if isinstance(exc, BaseException) else "unknown error"
    return text[:300]
