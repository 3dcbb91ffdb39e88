"""Metanetworks as the API sees them: one catalog of records (built-ins and the caller's
trained ones), references ``name`` (the latest version) and ``name@N``, the request-time
checks of a training request, and deletion.

The API process never imports ``models``: it reads cards from the database. The
request-time domain check (:func:`summary_domain_issues`) is the part of
``models.registry.domain_issues`` that a stored architecture summary can answer (ops and
input/output shapes), with the same rule and wording; the sizes (neurons, weights, depth)
need the parameter graph and are checked by the worker, with the library's full check
(``tests/app/test_domain_check.py`` holds the two to the same answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.blobs import BlobStore
from app.metanetworks import repository
from app.models import MetanetworkVersion
from app.problems import ProblemError
from app.settings import Settings
from graphs import io_fits, io_signature

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"
SPLITS = ("train", "val", "test")
MIN_ITEMS = 20
MIN_PER_CLASS_PER_SPLIT = 2


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` or ``name@N`` -> (name, N or None); ValueError for anything else."""
    name, at, number = ref.partition("@")
    if not name or not set(name) <= NAME_CHARS or name.startswith(".") or len(name) > 128:
        raise ValueError(f"{ref!r} is not a metanetwork name (letters, digits, - _ .)")
    if not at:
        return name, None
    if not number.isdigit() or int(number) < 1:
        raise ValueError(f"{ref!r}: a version is name@N with N >= 1")
    return name, int(number)


def resolve(session: Session, ref: str, tenant_id: int) -> MetanetworkVersion | None:
    """The version ``ref`` names for this tenant, or None."""
    try:
        name, number = parse_ref(ref)
    except ValueError:
        return None
    rows = repository.versions(session, name, tenant_id)
    if number is None:
        return rows[-1] if rows else None
    return next((r for r in rows if r.version == number), None)


def unknown_metanetwork(session: Session, ref: str, tenant_id: int) -> str:
    known = ", ".join(r.name for r in repository.catalog(session, tenant_id)) or "none installed"
    return f"metanetwork {ref!r} does not exist; available: {known}"


def require(session: Session, ref: str, tenant_id: int) -> MetanetworkVersion:
    """The version, or a 404 problem naming the metanetworks there are."""
    row = resolve(session, ref, tenant_id)
    if row is None:
        raise ProblemError(404, unknown_metanetwork(session, ref, tenant_id), slug="not-found")
    return row


def version_label(row: MetanetworkVersion) -> str:
    """What predictions record as ``metanetwork_version``: the card's version and the
    weights' sha256 prefix."""
    return f"{row.card.get('version', row.version)}+{row.weights_sha256[:12]}"


def weights_path(row: MetanetworkVersion, settings: Settings) -> Path:
    """A built-in's weights file in the built-ins folder, or a trained one's blob."""
    if row.tenant_id is None:
        return settings.metanetwork_dir / f"{row.name}.safetensors"
    return BlobStore(settings.blob_dir).path(row.weights_sha256)


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


def check_split(task: str, targets: dict[str, Sequence[Any]], labels: Sequence[str]) -> None:
    """Refuse (ValueError naming the cause) a zoo too small to train and measure on: fewer
    than ``MIN_ITEMS`` items, an empty split, a class with fewer than
    ``MIN_PER_CLASS_PER_SPLIT`` items in a split, regression targets outside [0, 1].
    ``targets`` are labels (classification) or numbers (regression) per split."""
    total = sum(len(targets.get(s, ())) for s in SPLITS)
    if total < MIN_ITEMS:
        raise ValueError(f"the zoo has {total} items; training needs at least {MIN_ITEMS}")
    for split in SPLITS:
        if not targets.get(split):
            raise ValueError(f"the zoo's {split} split is empty")
    if task == "classification":
        if len(labels) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, the zoo has {len(labels)}")
        for split in SPLITS:
            for label in labels:
                n = sum(1 for t in targets[split] if t == label)
                if n < MIN_PER_CLASS_PER_SPLIT:
                    raise ValueError(
                        f"class {label!r} has {n} item(s) in the {split} split; every class "
                        f"needs at least {MIN_PER_CLASS_PER_SPLIT} per split"
                    )
        return
    outside = [t for s in SPLITS for t in targets[s] if t is None or not 0.0 <= float(t) <= 1.0]
    if outside:
        raise ValueError(
            f"{len(outside)} target(s) missing or outside [0, 1] (e.g. {outside[0]}); a "
            "regression metanetwork predicts accuracies in [0, 1]"
        )


# --- deletion ----------------------------------------------------------------------------


def delete(session: Session, blobs: BlobStore, ref: str, tenant_id: int) -> list[int]:
    """Delete the tenant's metanetwork (every version) or one version (``name@N``);
    404 for names it does not own, 409 for built-ins. Weights blobs no other row uses are
    removed once the deletion has committed. Returns the deleted version numbers."""
    try:
        name, number = parse_ref(ref)
    except ValueError as exc:
        raise ProblemError(404, str(exc), slug="not-found") from None
    rows = repository.versions(session, name, tenant_id)
    if rows and rows[0].tenant_id is None:
        raise ProblemError(
            409,
            f"metanetwork {name!r} is a built-in; built-ins cannot be deleted",
            slug="builtin",
        )
    doomed = [r for r in rows if number is None or r.version == number]
    if not doomed:
        raise ProblemError(404, unknown_metanetwork(session, ref, tenant_id), slug="not-found")
    shas = {r.weights_sha256 for r in doomed}
    for row in doomed:
        session.delete(row)
    session.flush()
    unused = [sha for sha in shas if not repository.weights_in_use(session, sha)]

    def remove(_: Session) -> None:
        for sha in unused:
            blobs.delete(sha)

    event.listen(session, "after_commit", remove, once=True)
    session.commit()
    return sorted(r.version for r in doomed)
