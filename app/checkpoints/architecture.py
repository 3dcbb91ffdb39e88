"""The one place the service asks the graphs library for a checkpoint's architecture.

An upload without a known architecture is still accepted (it can be inspected and
downloaded, just not predicted on), so "none found" is stored as null. An architecture that
the file itself carries but that is malformed or disagrees with the tensors raises
``ArchitectureError``, and the upload is rejected with that reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from graphs.errors import MissingArchitectureError


def architecture_summary(path: Path) -> dict[str, Any] | None:
    """A JSON overview of the architecture (ops, counts, shapes), or None if unknown."""
    import graphs

    load = getattr(graphs, "load", None)
    if load is None:  # a graphs library without architecture support
        return None
    try:
        checkpoint = load(path)
    except MissingArchitectureError:
        return None
    architecture = checkpoint.architecture
    if callable(getattr(architecture, "summary", None)):
        return _plain(architecture.summary())
    return _plain(architecture.to_dict())


def _plain(value: object) -> dict[str, Any]:
    """Round-trip through JSON so only plain JSON types reach the database."""
    plain = json.loads(json.dumps(value, default=str))
    return plain if isinstance(plain, dict) else {"value": plain}
