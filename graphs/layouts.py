"""Where the state dict sits in the files people actually save, and the prefixes around it.

Training code rarely saves a bare ``model.state_dict()``. It saves a *training checkpoint*
(``{"model": state_dict, "optimizer": ..., "epoch": 12}``), an EMA copy next to it, or the
state dict of a wrapper (``module.`` from ``DataParallel``/``DistributedDataParallel``,
``_orig_mod.`` from ``torch.compile``, ``model.`` from Lightning-style wrappers). The rules
here find the tensors in those layouts without guessing silently: what was unwrapped, what
was ignored and which prefix was stripped is always returned, so the caller can say so.

The rules (pure functions on already-unpickled plain objects, so they are easy to test):

* a dict whose values are all tensors is the state dict;
* otherwise the first of :data:`NEST_KEYS` present (in that order) whose value is a dict
  holding tensors is descended into, up to :data:`MAX_DEPTH` levels; every sibling key is
  *ignored* and reported;
* otherwise a dict holding tensors plus entries that hold no tensors at all (an ``epoch``
  counter next to the weights) keeps the tensors and reports the rest as ignored;
* anything else (tensors nested under an unknown key, no tensors at all) is refused with a
  one-line message naming the keys it found.

A prefix of :data:`PREFIXES` is stripped only when *every* tensor name carries it (a
partial prefix is part of the architecture, not of a wrapper), repeatedly, so
``module._orig_mod.`` goes as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from graphs.errors import CheckpointError

__all__ = [
    "MAX_DEPTH",
    "NEST_KEYS",
    "PREFIXES",
    "Layout",
    "find_state_dict",
    "holds_tensors",
    "split_prefix",
    "strip_prefix",
]

# Priority order: the model itself before its EMA copy, the common names before rare ones.
NEST_KEYS: tuple[str, ...] = (
    "state_dict",
    "model_state_dict",
    "model",
    "module",
    "net",
    "network",
    "ema",
    "ema_state_dict",
    "state_dict_ema",
    "model_ema",
)
# Wrapper prefixes: DataParallel/DDP, torch.compile, Lightning-style ``self.model``.
PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.", "model.")
MAX_DEPTH = 3
_MAX_KEYS_SHOWN = 8
_PLAIN_KEY = re.compile(r"[\w.\-]{1,64}")  # shown as is in messages; others as repr()
_MAX_SCAN = 100_000  # bound on the containers walked when asking "does this hold tensors?"


@dataclass(frozen=True)
class Layout:
    """How the state dict was found: the keys descended through and the keys left aside."""

    nested_under: tuple[str, ...] = ()
    ignored_keys: tuple[str, ...] = ()


def find_state_dict(obj: object) -> tuple[Mapping[object, object], Layout]:
    """The mapping that holds the state dict inside an unpickled checkpoint, and how it was found.

    The returned mapping's values are not checked here beyond "tensor or not"; the caller
    validates names and tensors. Raises :class:`CheckpointError` when no rule applies.
    """
    path: list[str] = []
    ignored: list[str] = []
    for _ in range(MAX_DEPTH + 1):
        if not isinstance(obj, Mapping):
            raise CheckpointError(_not_a_dict(obj, path))
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, Layout(tuple(path), tuple(ignored))
        key = _nest_key(obj)
        if key is None or len(path) == MAX_DEPTH:
            tensors = _tensors_beside_extras(obj, path, ignored)
            return tensors, Layout(tuple(path), tuple(ignored))
        ignored.extend(_dotted([*path, str(k)]) for k in obj if k != key)
        path.append(key)
        obj = obj[key]
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _nest_key(obj: Mapping[object, object]) -> str | None:
    for key in NEST_KEYS:
        value = obj.get(key)
        if isinstance(value, Mapping) and holds_tensors(value):
            return key
    return None


def _tensors_beside_extras(
    obj: Mapping[object, object], path: list[str], ignored: list[str]
) -> Mapping[object, object]:
    """Tensors next to plain extras (``epoch``, ``config``) are the state dict; tensors nested
    under a key no rule knows are refused, because they might be half of the model."""
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for key, value in obj.items():
        if key in tensors:
            continue
        if holds_tensors(value):
            where = _dotted([*path, str(key)])
            raise CheckpointError(
                f"state dict entry {where!r} is a {type(value).__name__}, expected a tensor "
                f"(the dict must be flat); a nested state dict is read only under one of: "
                f"{', '.join(NEST_KEYS)}"
            )
    if not tensors:
        where = f" under {_dotted(path)!r}" if path else ""
        raise CheckpointError(
            f"PyTorch file holds no tensors{where} (keys: {_keys(obj)}); save the model's "
            "state_dict()"
        )
    ignored.extend(_dotted([*path, str(k)]) for k in obj if k not in tensors)
    return tensors


def holds_tensors(value: object) -> bool:
    """Whether a tensor is anywhere inside ``value`` (dicts, lists, tuples; bounded walk)."""
    stack, seen = [value], 0
    while stack and seen < _MAX_SCAN:
        item = stack.pop()
        seen += 1
        if isinstance(item, torch.Tensor):
            return True
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _not_a_dict(obj: object, path: list[str]) -> str:
    where = f" under {_dotted(path)!r}" if path else ""
    return f"PyTorch file holds a {type(obj).__name__}{where}, expected a dict of tensors"


def _keys(obj: Mapping[object, object]) -> str:
    names = [k if isinstance(k, str) and _PLAIN_KEY.fullmatch(k) else repr(k)
             for k in list(obj)[:_MAX_KEYS_SHOWN]]
    more = f" (+{len(obj) - _MAX_KEYS_SHOWN} more)" if len(obj) > _MAX_KEYS_SHOWN else ""
    return (", ".join(names) or "none") + more


def _dotted(path: list[str]) -> str:
    return ".".join(path)


# --- prefixes ------------------------------------------------------------------------


def split_prefix(names: Iterable[str]) -> str:
    """The wrapper prefix every name shares (possibly several stacked, e.g.
    ``module._orig_mod.``), or ``""``; a name that would become empty stops the stripping."""
    names = list(names)
    prefix = ""
    while names:
        found = next((p for p in PREFIXES
                      if all(n.startswith(p) and len(n) > len(p) for n in names)), None)
        if found is None:
            break
        prefix += found
        names = [n[len(found):] for n in names]
    return prefix


def strip_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``tensors`` with ``prefix`` removed from every name (every name must carry it)."""
    if not prefix:
        return dict(tensors)
    if not all(name.startswith(prefix) for name in tensors):
        raise ValueError(f"not every tensor name starts with {prefix!r}")
    return {name[len(prefix):]: tensor for name, tensor in tensors.items()}
