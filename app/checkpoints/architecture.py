"""The one place the service asks the graphs library for a checkpoint's architecture.

An upload without a known architecture is still accepted (it can be inspected and
downloaded, just not predicted on), so "none found" is stored as null.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from graphs.errors import MissingArchitectureError


def architecture_summary(path: Path) -> dict[str, Any] | None:
    """The architecture op graph as JSON, or None when none is attached or inferable.

    An architecture that is present but malformed raises ``ArchitectureError`` (the upload
    is rejected with the reason).
    """
    import graphs

    load = getattr(graphs, "load", None)
    if load is None:  # the graphs library predates architecture support
        return None
    try:
        checkpoint = load(path)
    except MissingArchitectureError:
        return None
    return _as_json(getattr(checkpoint, "architecture", None))


def _as_json(architecture: object) -> dict[str, Any] | None:
    if architecture is None:
        return None
    for method in ("to_dict", "to_json_dict", "model_dump"):
        if callable(getattr(architecture, method, None)):
            return _plain(getattr(architecture, method)())
    if callable(getattr(architecture, "to_json", None)):
        return _plain(json.loads(architecture.to_json()))  # type: ignore[attr-defined]
    if dataclasses.is_dataclass(architecture) and not isinstance(architecture, type):
        return _plain(dataclasses.asdict(architecture))
    if isinstance(architecture, dict):
        return _plain(architecture)
    raise TypeError(f"cannot serialise architecture of type {type(architecture).__name__}")


def _plain(value: object) -> dict[str, Any]:
    """Round-trip through JSON so only plain JSON types reach the database."""
    plain = json.loads(json.dumps(value, default=str))
    return plain if isinstance(plain, dict) else {"value": plain}
