"""Built-in metanetworks become records at start-up: every ``<name>.json`` card with its
``<name>.safetensors`` weights in ``Settings.metanetwork_dir`` (``models/builtin`` by
default) is registered once. Their weights ship with the service and stay in that folder
(the blob store holds users' data only); the row records their sha256, which a worker
checks when it loads them. Idempotent: an unchanged card and weights register nothing;
changed ones become the next version."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from app.db import SessionFactory
from app.metanetworks import repository
from app.metanetworks.service import NAME_CHARS
from app.models import MetanetworkVersion

log = logging.getLogger(__name__)


def register_builtins(session_factory: SessionFactory, directory: Path) -> list[str]:
    """Register the folder's metanetworks; returns the names that got a new version."""
    if not directory.is_dir():
        return []
    added = []
    for card_file in sorted(directory.glob("*.json")):
        weights_file = card_file.with_suffix(".safetensors")
        name = card_file.stem
        if not weights_file.is_file() or not set(name) <= NAME_CHARS or name.startswith("."):
            continue
        try:
            card = json.loads(card_file.read_text())
        except (OSError, ValueError):
            log.warning("built-in metanetwork card %s is unreadable; skipped", card_file)
            continue
        if _register(session_factory, name, card, weights_file.read_bytes()):
            added.append(name)
    return added


def _register(session_factory: SessionFactory, name: str, card: dict, weights: bytes) -> bool:
    sha256 = hashlib.sha256(weights).hexdigest()
    card = {**card, "name": name, "builtin": True}
    with session_factory() as session:
        latest = repository.latest_builtin(session, name)
        if latest is not None and latest.weights_sha256 == sha256 and latest.card == card:
            return False
        number = latest.version if latest is not None else 0
        session.add(
            MetanetworkVersion(
                tenant_id=None,
                name=name,
                version=number + 1,
                task=str(card.get("task", "")),
                card=card,
                config=dict(card.get("config") or {}),
                weights_sha256=sha256,
                weights_size=len(weights),
            )
        )
        try:
            session.commit()
        except IntegrityError:  # another process registered it at the same moment
            session.rollback()
            return False
    return True

