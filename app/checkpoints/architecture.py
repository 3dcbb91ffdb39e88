"""The one place the service asks the graphs library for a checkpoint's architecture.

An upload without a known architecture is still accepted (it can be inspected and
downloaded, just not predicted on), so "none found" is stored as null. An architecture that
the file itself carries but that is malformed or disagrees with the tensors raises
``ArchitectureError``, and the upload is rejected with that reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from graphs.errors import MissingArchitectureError


def architecture_summary(path: Path) -> dict[str, Any] | None:
    """A JSON overview of the architecture (ops, counts, shapes), or None if unknown."""
    return describe_architecture(path)[0]


def describe_architecture(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The summary and the digest of the architecture, or (None, None) if unknown.

    The digest is the sha256 of the op graph's canonical JSON: two checkpoints can be
    aligned and merged only when their digests are equal, which a request can check
    without loading either file.
    """
    import graphs

    try:
        checkpoint = graphs.load(path)
    except MissingArchitectureError:
        return None, None
    return _plain(checkpoint.architecture.summary()), architecture_digest(checkpoint.architecture)


def architecture_digest(architecture: Any) -> str:
    return hashlib.sha256(architecture.to_json().encode()).hexdigest()


def _plain(value: object) -> dict[str, Any]:
    """Round-trip through JSON so only plain JSON types reach the database."""
    plain = json.loads(json.dumps(value, default=str))
    return plain if isinstance(plain, dict) else {"value": plain}
