"""The one place the service asks the graphs library for a checkpoint's architecture.

An upload without a known architecture is still accepted (it can be inspected and
downloaded, just not predicted on or merged), so "none found" is stored as null. An
architecture that the file carries but that is malformed or disagrees with the tensors
raises ``ArchitectureError``, and the upload is rejected with that reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import graphs
from graphs import MissingArchitectureError


def find_architecture(path: Path) -> graphs.Architecture | None:
    try:
        return graphs.load(path).architecture
    except MissingArchitectureError:
        return None


def architecture_digest(architecture: graphs.Architecture) -> str:
    """sha256 of the op graph's canonical JSON: checkpoints can be aligned and merged only
    when their digests are equal, which a request can check without loading either file."""
    return hashlib.sha256(architecture.to_json().encode()).hexdigest()


def architecture_summary(architecture: graphs.Architecture) -> dict[str, Any]:
    """A JSON overview (ops, counts, shapes), round-tripped so only plain JSON is stored."""
    plain = json.loads(json.dumps(architecture.summary(), default=str))
    return plain if isinstance(plain, dict) else {"value": plain}
