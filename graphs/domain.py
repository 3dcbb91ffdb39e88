"""Inputs and outputs of an architecture summary as metanetwork domains record them.

One definition for the library (``models.registry``) and the service (which checks a
request against a card without loading the model).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["io_fits", "io_signature"]


def io_signature(summary: Mapping[str, Any]) -> str:
    """The summary's input and output shapes, in the form domain cards record them."""
    return json.dumps({"inputs": sorted(summary["inputs"].values(), key=str),
                       "outputs": sorted(summary["outputs"].values(), key=str)})


def io_fits(summary: Mapping[str, Any], signatures: Iterable[str]) -> bool:
    """Whether the summary's inputs/outputs are one of ``signatures``.

    An input size recorded as unknown (``None``: no weight depends on it, as in a conv
    stack that pools globally, so inference could not read it) fits any size there.
    """
    mine = json.loads(io_signature(summary))
    for signature in signatures:
        other = json.loads(signature)
        if other["outputs"] == mine["outputs"] and _inputs_fit(mine["inputs"], other["inputs"]):
            return True
    return False


def _inputs_fit(mine: list[list[int | None]], known: list[list[int]]) -> bool:
    if len(mine) != len(known):
        return False
    return all(len(a) == len(b) and all(x is None or x == y for x, y in zip(a, b, strict=True))
               for a, b in zip(mine, known, strict=True))
