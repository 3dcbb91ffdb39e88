"""Metanetworks as the API sees them: their cards, read as JSON without loading a model.

The API process only reads ``<name>.json`` cards (next to ``<name>.safetensors`` weights)
from ``Settings.metanetwork_dir``; it never imports ``models``, so it never loads a model.
The request-time domain check (:func:`summary_domain_issues`) is the part of
``models.registry.domain_issues`` that a stored architecture summary can answer (ops and
input/output shapes), with the same rule and wording; the sizes (neurons, weights, depth)
need the parameter graph and are checked by the worker, with the library's full check
(``tests/app/test_domain_check.py`` holds the two to the same answers).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.problems import ProblemError
from graphs import io_fits, io_signature

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class MetanetworkCard:
    name: str
    task: str
    labels: list[str]
    domain: dict[str, Any]
    metrics: dict[str, Any]
    version: str
    card: dict[str, Any]


def list_cards(directory: Path) -> list[MetanetworkCard]:
    if not directory.is_dir():
        return []
    names = sorted(
        p.stem for p in directory.glob("*.json") if p.with_suffix(".safetensors").is_file()
    )
    cards = [find_card(directory, name) for name in names]
    return [card for card in cards if card is not None]


def find_card(directory: Path, name: str) -> MetanetworkCard | None:
    if not name or not set(name) <= NAME_CHARS or name.startswith("."):
        return None
    card_file, weights = directory / f"{name}.json", directory / f"{name}.safetensors"
    if not card_file.is_file() or not weights.is_file():
        return None
    stat = weights.stat()
    return _read(card_file, weights, card_file.stat().st_mtime_ns, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _read(card_file: Path, weights: Path, *_fingerprint: int) -> MetanetworkCard | None:
    """Cached per file fingerprint, so a replaced card or new weights are re-read."""
    try:
        card = json.loads(card_file.read_text())
    except (OSError, ValueError):
        return None
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    return MetanetworkCard(
        name=card_file.stem,
        task=str(card.get("task", "")),
        labels=list(card.get("labels") or []),
        domain=dict(card.get("domain") or {}),
        metrics=dict(card.get("metrics") or {}),
        version=f"{card.get('version', '0')}+{digest}",
        card=card,
    )


def summary_domain_issues(domain: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Why a checkpoint with this architecture summary is outside ``domain`` (empty when
    nothing the summary shows rules it out)."""
    issues = []
    if "ops" in domain:
        extra = sorted(set(summary.get("op_counts", {})) - set(domain["ops"]))
        if extra:
            issues.append(f"ops never seen in training: {', '.join(extra)}")
    if "io" in domain and not io_fits(summary, domain["io"]):
        issues.append(
            f"input/output shapes {io_signature(summary)} differ from the training zoo's "
            f"{', '.join(domain['io'])}"
        )
    return issues


def unknown_metanetwork(directory: Path, name: str) -> str:
    known = ", ".join(card.name for card in list_cards(directory)) or "none installed"
    return f"metanetwork {name!r} does not exist; available: {known}"


def require_card(directory: Path, name: str) -> MetanetworkCard:
    """The card, or a 404 problem naming the metanetworks there are."""
    card = find_card(directory, name)
    if card is None:
        raise ProblemError(404, unknown_metanetwork(directory, name), slug="not-found")
    return card
