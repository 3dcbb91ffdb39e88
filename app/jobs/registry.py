"""Job kinds by name: the built-in ones here, plugins through :func:`register`
(``app.jobs.plugins``); a remote worker resolves kinds through the same table."""

from __future__ import annotations

from app.jobs.inspect import INSPECT
from app.jobs.kind import JobKind
from app.merges.jobs import MERGE
from app.predictions.jobs import PREDICT

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (INSPECT, PREDICT, MERGE)}


def register(kind: JobKind) -> None:
    if kind.name in KINDS and KINDS[kind.name] is not kind:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown job kind {name!r}; known: {', '.join(sorted(KINDS))}") from None
