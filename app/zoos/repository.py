"""Queries on zoos and their items. ``items_by_split`` is what training reads: keep its
shape stable."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Checkpoint, Zoo, ZooItem

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ZooItemRow:
    """One zoo item with what is needed to load its weights (the checkpoint's blob)."""

    position: int
    checkpoint_id: int
    blob_sha256: str
    architecture_digest: str | None
    label: str | None  # classification
    target: float | None  # regression
    group: str | None
    split: str  # "train" | "val" | "test"


def get_zoo(session: Session, zoo_id: int, tenant_id: int) -> Zoo | None:
    """The tenant's zoo, or None (another tenant's zoo does not exist for this caller)."""
    return session.scalar(select(Zoo).where(Zoo.id == zoo_id, Zoo.tenant_id == tenant_id))


def items_by_split(session: Session, zoo_id: int, tenant_id: int) -> dict[str, list[ZooItemRow]]:
    """The zoo's items by split ("train", "val", "test": all three keys always present), in
    item order; empty lists when the tenant has no such zoo."""
    rows = session.execute(
        select(ZooItem, Checkpoint.blob_sha256, Checkpoint.architecture_digest)
        .join(Zoo, Zoo.id == ZooItem.zoo_id)
        .join(Checkpoint, Checkpoint.id == ZooItem.checkpoint_id)
        .where(ZooItem.zoo_id == zoo_id, Zoo.tenant_id == tenant_id)
        .order_by(ZooItem.position)
    )
    splits: dict[str, list[ZooItemRow]] = {split: [] for split in SPLITS}
    for item, blob_sha256, digest in rows:
        splits[item.split].append(
            ZooItemRow(
                position=item.position,
                checkpoint_id=item.checkpoint_id,
                blob_sha256=blob_sha256,
                architecture_digest=digest,
                label=item.label,
                target=item.target,
                group=item.group_name,
                split=item.split,
            )
        )
    return splits
