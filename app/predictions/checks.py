"""What a prediction request can be refused for before any work is queued."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.metanetworks.catalog import find_card, summary_domain_issues, unknown_metanetwork
from app.models import Checkpoint
from app.problems import ProblemError
from app.settings import Settings

_CHECKPOINTS = Checkpoint.__table__
_ARCHITECTURE = select(_CHECKPOINTS.c.architecture).where(  # one column, not the whole row;
    _CHECKPOINTS.c.id == bindparam("id")  # built once (no cache key to walk per request)
)


def check_prediction(
    session: Session, settings: Settings, checkpoint_id: int, metanetwork: str, force: bool
) -> None:
    """404 for a missing checkpoint or metanetwork; 422 for a checkpoint without a known
    architecture, or outside the metanetwork's domain (unless ``force``)."""
    found = session.execute(_ARCHITECTURE, {"id": checkpoint_id}).first()
    if found is None:
        raise ProblemError(404, f"checkpoint {checkpoint_id} does not exist", slug="not-found")
    architecture = found[0]
    card = find_card(settings.metanetwork_dir, metanetwork)
    if card is None:
        raise ProblemError(
            404, unknown_metanetwork(settings.metanetwork_dir, metanetwork), slug="not-found"
        )
    if architecture is None:
        raise ProblemError(
            422,
            f"checkpoint {checkpoint_id} has no known architecture, so it has no parameter "
            "graph; upload it as a self-describing safetensors file (graphs.save) or in a "
            "layout the service can infer",
            slug="missing-architecture",
        )
    issues = summary_domain_issues(card.domain, architecture)
    if issues and not force:
        raise ProblemError(
            422,
            f"checkpoint {checkpoint_id} is outside the domain of metanetwork {metanetwork!r}: "
            f"{'; '.join(issues)} (send force=true for an answer flagged in_domain=false)",
            slug="out-of-domain",
        )
